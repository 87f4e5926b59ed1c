"""The uncertain band and the OOD threshold, fitted against sources the model has not seen.

Thresholds chosen on validation images of the training sources know nothing of a new generator or a
new camera, and that is where a detector fails: it waves an unseen generator's faces through as real.
So the band is chosen on leave-one-source-out predictions as well: for each source, a model trained
on the other sources judged that source's images. A choice is allowed only if

- in every such fold, the held-out source's AI faces are called real at most `unseen_ai_called_real`
  of the time and its real faces are called AI at most `unseen_real_called_ai` (shares of all of that
  source's faces of the class: abstaining is allowed, a wrong verdict is not), and
- on the model's own validation images, among confident verdicts, at most `real_called_ai` of real
  faces are called AI and at most `ai_called_real` of AI faces pass as real;

and among the allowed choices the one with the highest coverage (the mean of the validation coverage
and the folds' mean coverage) wins. The OOD score is normalised per model (1.0 is a high percentile
of its own training vectors' distances), so one threshold carries from the fold models to the final one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from head.thresholds import Bounds, Thresholds, decide


@dataclass
class Judged:
    """One model's view of a set of images: calibrated P(AI), normalised OOD score, true labels."""

    p_ai: np.ndarray
    ood: np.ndarray
    y: np.ndarray


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


def choose_abstention(
    seen: Judged, unseen: Sequence[Judged], bounds: Bounds | None = None, grid: int = 100
) -> tuple[Thresholds, dict]:
    """The (ai, real, ood) thresholds of highest coverage that keep every bound; see the module's text.

    With no allowed choice, everything is `uncertain` (a broken promise is worse than no answer).
    """
    bounds = bounds or Bounds()
    pooled_p = np.concatenate([seen.p_ai, *(u.p_ai for u in unseen)])
    pooled_ood = np.concatenate([seen.ood, *(u.ood for u in unseen)])
    quantiles = np.quantile(pooled_p, np.linspace(0, 1, 2 * grid + 1))
    ai_options = np.unique(np.append(quantiles[quantiles > 0.5], [0.5 + 1e-9, 1.0 + 1e-9]))
    real_options = np.unique(np.append(quantiles[quantiles <= 0.5], [-1e-9, 0.5]))
    ood_options = np.unique(np.append(np.quantile(pooled_ood, np.linspace(0.3, 1.0, 36)), [1.0, np.inf]))
    found = []  # (coverage, t_ood, t_ai, t_real) of the best allowed choice per OOD threshold
    for t_ood in ood_options:
        allowed, coverage = _search(seen, unseen, bounds, ai_options, real_options, t_ood)
        if allowed.any():
            score = np.where(allowed, coverage, -1.0)
            a, r = np.unravel_index(np.argmax(score), score.shape)
            found.append((float(score[a, r]), float(t_ood), float(ai_options[a]), float(real_options[r])))
    thresholds = Thresholds(1.0 + 1e-9, -1e-9, float("inf"))
    if found:
        top = max(f[0] for f in found)
        tied = [f for f in found if f[0] >= top - 1e-9]
        _, t_ood, t_ai, t_real = _middle(tied)
        thresholds = Thresholds(t_ai, t_real, t_ood)
    thresholds.max_real_called_ai = bounds.real_called_ai
    thresholds.max_ai_called_real = bounds.ai_called_real
    report = {
        "bounds": bounds.describe(),
        "found": bool(found),
        "validation": verdict_rates(decide(seen.p_ai, seen.ood, thresholds), seen.y),
        "unseen_folds": [verdict_rates(decide(u.p_ai, u.ood, thresholds), u.y) for u in unseen],
    }
    return thresholds, report


def _middle(tied: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
    """Among OOD thresholds that do equally well, the usual 1.0 if it is one of them, else the one in
    the middle of their range (the widest margin on both sides), never an unbounded one."""
    for choice in tied:
        if choice[1] == 1.0:
            return choice
    finite = [c for c in tied if np.isfinite(c[1])] or tied
    low, high = finite[0][1], finite[-1][1]
    middle = np.sqrt(max(low, 1e-12) * high)
    return min(finite, key=lambda c: abs(np.log(max(c[1], 1e-12)) - np.log(middle)))


def _counts(p: np.ndarray, ai_options: np.ndarray, real_options: np.ndarray) -> tuple[np.ndarray, ...]:
    """How many of `p` each AI threshold calls AI, and each real threshold calls real."""
    ordered = np.sort(p)
    called_ai = len(ordered) - np.searchsorted(ordered, ai_options, side="left")
    called_real = np.searchsorted(ordered, real_options, side="right")
    return called_ai, called_real


def _search(
    seen: Judged,
    unseen: Sequence[Judged],
    bounds: Bounds,
    ai_options: np.ndarray,
    real_options: np.ndarray,
    t_ood: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(allowed, coverage) over the grid of (ai, real) thresholds, for one OOD threshold."""
    shape = (len(ai_options), len(real_options))
    allowed = np.ones(shape, dtype=bool)
    inside = seen.ood <= t_ood
    real_ai, real_real = _counts(seen.p_ai[inside & (seen.y == 0)], ai_options, real_options)
    ai_ai, ai_real = _counts(seen.p_ai[inside & (seen.y == 1)], ai_options, real_options)
    confident_real = real_ai[:, None] + real_real[None, :]
    confident_ai = ai_ai[:, None] + ai_real[None, :]
    allowed &= real_ai[:, None] <= bounds.real_called_ai * confident_real
    allowed &= ai_real[None, :] <= bounds.ai_called_real * confident_ai
    seen_coverage = (confident_real + confident_ai) / max(len(seen.y), 1)
    if not unseen:
        return allowed, seen_coverage
    fold_coverage = np.zeros(shape)
    for fold in unseen:
        inside = fold.ood <= t_ood
        real_ai, real_real = _counts(fold.p_ai[inside & (fold.y == 0)], ai_options, real_options)
        ai_ai, ai_real = _counts(fold.p_ai[inside & (fold.y == 1)], ai_options, real_options)
        allowed &= (real_ai <= bounds.unseen_real_called_ai * (fold.y == 0).sum())[:, None]
        allowed &= (ai_real <= bounds.unseen_ai_called_real * (fold.y == 1).sum())[None, :]
        fold_coverage += ((real_ai + ai_ai)[:, None] + (real_real + ai_real)[None, :]) / max(len(fold.y), 1)
    return allowed, 0.5 * seen_coverage + 0.5 * fold_coverage / len(unseen)
