"""The `uncertain` band and the verdicts it gives.

    p_ai >= ai_threshold     -> ai_generated, if a plain linear probe agrees (else uncertain, reason
                                "disagree")
    p_ai <= real_threshold   -> real, if the face looks like a known real collection (else
                                uncertain, reason "unlike_real")
    otherwise                -> uncertain (reason "band")
    OOD score > ood          -> uncertain (reason "ood"), whatever P(AI) says

A `real` verdict needs a second opinion: the nearest-source classifier (head/nearest.py) must give the
real collections the model was trained on together at least `looks_real` of its probability. A family of
generators the model never saw has no class of its own, and the binary head often waves it through as
real; it rarely looks like any real collection as much as real photos do. `looks_real` is set so that
only a small share of new real photos like the validation ones (`Bounds.real_held_back`) is held back
by it (`held_back_cut`). An `ai_generated` verdict needs one too: a linear probe on the texture columns
of the vector (head/probe.py) must give at least `probe_agrees`, set the same way on the validation AI
faces (`Bounds.ai_held_back`).

All three thresholds are chosen on the validation split of the training sources, the images the model
knows. The OOD threshold flags a small share of them (`Bounds.ood_flagged`): it is there for what is not
a face photo at all, not for faces of an unfamiliar style. Then the band is the widest confident region
(highest coverage) in which

- at most `real_called_ai` of the real faces are called AI-generated, pooled over every real source, and
  at most `real_called_ai_per_source` within any one real source (a false accusation costs a real
  person, and a pooled bound alone lets one collection carry all of them);
- at most `ai_called_real` of the AI faces pass as real, pooled.

Each share counts every validation face of its class, judged or not: abstaining is allowed, a wrong
verdict is not. (A share among confident verdicts only would tie the two thresholds together: with few
faces called AI, hardly any could be called real.)

A share is a promise about new images. The widest band with k errors among n validation faces stops
just short of the next one, and on new faces it makes about (k + 1) / (n + 1) of them, more than the k / n
it showed (tests/test_heads.py measures it). So the errors are counted as conformal risk
control counts them (Angelopoulos et al., "Conformal Risk Control", 2022): k errors among n faces keep
a bound of `share` only if (k + 1) / (n + 1) <= share, which bounds the expected share on new images of
the same kind. Among 480 validation real faces that allows 3 accusations, not 4; a real source of 110
allows 1, not 2; a source too small to certify its bound at all (under 1 / share - 1 faces) is allowed
none.

Sources and families the model never saw are measured (leave one family or real collection out, see
flows/folds.py) and reported beside the band, never used to fit it: no threshold on these features keeps
an unseen family in check without giving up nearly every verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

VERDICTS = ("ai_generated", "real", "uncertain", "unreadable")


@dataclass(frozen=True)
class Bounds:
    """On validation images: the error shares the verdicts may carry (of every face of the class), the
    share of images the OOD threshold may flag, and the shares of real photos the looks-real check, and
    of AI faces the probe's check, may hold back."""

    real_called_ai: float = 0.01
    ai_called_real: float = 0.05
    real_called_ai_per_source: float = 0.02
    ood_flagged: float = 0.01
    real_held_back: float = 0.05
    # 10%: with the texture probe (head/probe.py) the band judged most validation faces there (85.6%,
    # against 84.1% at 5% and 83.6% at 20%; docs/features.md).
    ai_held_back: float = 0.10

    def describe(self) -> dict:
        return asdict(self)


@dataclass
class Thresholds:
    ai: float = 0.5
    real: float = 0.5
    ood: float = float("inf")
    looks_real: float = 0.0
    probe_agrees: float = 0.0
    max_real_called_ai: float = Bounds.real_called_ai
    max_ai_called_real: float = Bounds.ai_called_real

    def describe(self) -> dict:
        return asdict(self)


def decide(
    p_ai: np.ndarray,
    ood_score: np.ndarray,
    thresholds: Thresholds,
    ai_gate: np.ndarray | None = None,
    real_gate: np.ndarray | None = None,
) -> np.ndarray:
    """One verdict per row. `ai_gate` and `real_gate`, when given, mark the rows an AI (or real) verdict
    is allowed for: a second opinion that must agree. A row past a threshold whose gate is shut is
    `uncertain`."""
    verdict = np.full(len(p_ai), "uncertain", dtype=object)
    called_ai, called_real = p_ai >= thresholds.ai, p_ai <= thresholds.real
    verdict[called_ai if ai_gate is None else called_ai & ai_gate] = "ai_generated"
    verdict[called_real if real_gate is None else called_real & real_gate] = "real"
    verdict[ood_score > thresholds.ood] = "uncertain"
    return verdict


def uncertain_reason(
    p_ai: np.ndarray,
    ood_score: np.ndarray,
    thresholds: Thresholds,
    ai_gate: np.ndarray | None = None,
    real_gate: np.ndarray | None = None,
) -> np.ndarray:
    """Why each `uncertain` verdict is one: 'ood' (unlike the images the model knows: its P(AI) is not
    trusted), 'unlike_real' (P(AI) low, but the face looks like none of the real collections the model
    knows), 'disagree' (P(AI) high, but the second opinion does not agree) or 'band' (P(AI) between
    the thresholds); '' for confident verdicts."""
    reason = np.full(len(p_ai), "", dtype=object)
    reason[(p_ai < thresholds.ai) & (p_ai > thresholds.real)] = "band"
    if real_gate is not None:
        reason[(p_ai <= thresholds.real) & ~real_gate] = "unlike_real"
    if ai_gate is not None:
        reason[(p_ai >= thresholds.ai) & ~ai_gate] = "disagree"
    reason[ood_score > thresholds.ood] = "ood"
    return reason


def rates(verdict: np.ndarray, y: np.ndarray) -> dict:
    """Coverage and the two error shares among confident verdicts."""
    confident = verdict != "uncertain"
    real, ai = (y == 0) & confident, (y == 1) & confident
    real_called_ai = float(np.sum(real & (verdict == "ai_generated")) / max(real.sum(), 1))
    ai_called_real = float(np.sum(ai & (verdict == "real")) / max(ai.sum(), 1))
    correct = ((verdict == "ai_generated") & (y == 1)) | ((verdict == "real") & (y == 0))
    return {
        "coverage": float(confident.mean()) if len(y) else 0.0,
        "selective_accuracy": float(correct[confident].mean()) if confident.any() else float("nan"),
        "real_called_ai_rate": real_called_ai,
        "ai_called_real_rate": ai_called_real,
    }


def verdict_rates(verdict: np.ndarray, y: np.ndarray) -> dict:
    """Share of each verdict among the real and among the AI images, and the coverage."""
    out: dict = {"n": len(y), "coverage": float((verdict != "uncertain").mean()) if len(y) else None}
    for label, name in ((0, "real"), (1, "ai")):
        mask = y == label
        out[name] = (
            {v: float((verdict[mask] == v).mean()) for v in ("ai_generated", "real", "uncertain")}
            | {"n": int(mask.sum())}
            if mask.any()
            else None
        )
    return out


def ood_cut(ood_score: np.ndarray, share: float) -> float:
    """The OOD threshold that flags `share` of these (validation) images: the highest scores only."""
    if not len(ood_score):
        return float("inf")
    return float(np.quantile(ood_score, 1.0 - share, method="higher"))


def choose_thresholds(
    p_ai: np.ndarray,
    y: np.ndarray,
    ood_score: np.ndarray,
    ood_threshold: float,
    bounds: Bounds | None = None,
    groups: np.ndarray | None = None,
    ai_gate: np.ndarray | None = None,
    real_gate: np.ndarray | None = None,
) -> tuple[Thresholds, dict]:
    """The (AI, real) thresholds of highest coverage on validation predictions that keep `bounds`.

    `groups` names each row's source; every real source is held to `bounds.real_called_ai_per_source`.
    `ai_gate` and `real_gate` mark the rows an AI (real) verdict is allowed for (see `decide`).
    With no allowed choice, everything is `uncertain` (a broken promise is worse than no answer).
    """
    bounds = bounds or Bounds()
    p_ai, y = np.asarray(p_ai, dtype=np.float64), np.asarray(y)
    inside = np.asarray(ood_score) <= ood_threshold
    candidates = np.unique(np.concatenate([p_ai, [0.5]]))
    ai_options = np.append(candidates[candidates >= 0.5], 1.0 + 1e-9)
    real_options = np.insert(candidates[candidates < 0.5], 0, -1e-9)
    # A row a gate shuts can never get that verdict: its P(AI) counts as beyond every such threshold.
    p_for_ai = p_ai if ai_gate is None else np.where(ai_gate, p_ai, -np.inf)
    p_for_real = p_ai if real_gate is None else np.where(real_gate, p_ai, np.inf)
    real_ai, real_real = _counts(p_for_ai, p_for_real, inside & (y == 0), ai_options, real_options)
    ai_ai, ai_real = _counts(p_for_ai, p_for_real, inside & (y == 1), ai_options, real_options)
    allowed = np.ones((len(ai_options), len(real_options)), dtype=bool)
    allowed &= (real_ai <= allowed_errors(bounds.real_called_ai, np.sum(y == 0)))[:, None]
    allowed &= (ai_real <= allowed_errors(bounds.ai_called_real, np.sum(y == 1)))[None, :]
    if groups is not None:
        groups = np.asarray(groups)
        for group in np.unique(groups[y == 0]):
            mine = (y == 0) & (groups == group)
            called_ai, _ = _counts(p_for_ai, p_for_real, inside & mine, ai_options, real_options)
            allowed &= (called_ai <= allowed_errors(bounds.real_called_ai_per_source, mine.sum()))[:, None]
    coverage = np.where(allowed, (real_ai + ai_ai)[:, None] + (real_real + ai_real)[None, :], -1)
    limits = {"max_real_called_ai": bounds.real_called_ai, "max_ai_called_real": bounds.ai_called_real}
    if coverage.max() < 0:
        t = Thresholds(1.0 + 1e-9, -1e-9, ood_threshold, **limits)
    else:
        a, r = np.unravel_index(np.argmax(coverage), coverage.shape)
        t_ai, t_real = float(ai_options[a]), float(real_options[r])
        # Midway to the next candidate: the same verdicts here, a margin for images just beside them.
        t_ai = _midway(t_ai, candidates[candidates < t_ai], low_side=True)
        t_real = _midway(t_real, candidates[candidates > t_real], low_side=False)
        t = Thresholds(t_ai, t_real, ood_threshold, **limits)
    verdict = decide(p_ai, np.asarray(ood_score), t, ai_gate, real_gate)
    return t, {**rates(verdict, y), "verdicts": verdict_rates(verdict, y)}


def _rank_bound(share: float, n: int) -> int:
    """The largest k with k / (n + 1) <= share: a new face like `n` validation ones ranks among their
    k lowest with probability k / (n + 1)."""
    return int(np.floor(share * (n + 1) + 1e-9))


def allowed_errors(share: float, n: int) -> int:
    """The most errors among `n` validation faces that still bound the expected `share` on new faces
    like them: the largest k with (k + 1) / (n + 1) <= share, and never below 0 (see the module)."""
    return max(_rank_bound(share, n) - 1, 0)


def held_back_cut(scores: np.ndarray, share: float) -> float:
    """The lowest score a check lets through so that it holds back at most `share` of new faces like
    these validation ones, in expectation: the k-th smallest score, k = `_rank_bound`. 0.0, holding
    back nothing, when k is 0: on a handful of faces a quantile would hold back far more than `share`
    of new ones."""
    k = _rank_bound(share, len(scores))
    return float(np.sort(scores)[k - 1]) if k > 0 else 0.0


def _midway(threshold: float, beyond: np.ndarray, low_side: bool) -> float:
    """Half-way between a threshold found on a candidate and the nearest candidate outside it."""
    if not len(beyond) or not 0.0 <= threshold <= 1.0:
        return threshold
    neighbour = beyond.max() if low_side else beyond.min()
    if (neighbour < 0.5) if low_side else (neighbour > 0.5):
        return threshold
    return float((threshold + neighbour) / 2)


def _counts(
    p_for_ai: np.ndarray,
    p_for_real: np.ndarray,
    rows: np.ndarray,
    ai_options: np.ndarray,
    real_options: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """How many of `rows` each AI threshold calls AI, and each real threshold calls real."""
    for_ai, for_real = np.sort(p_for_ai[rows]), np.sort(p_for_real[rows])
    called_ai = len(for_ai) - np.searchsorted(for_ai, ai_options, side="left")
    called_real = np.searchsorted(for_real, real_options, side="right")
    return called_ai, called_real
