"""The `uncertain` band and the verdicts it gives.

    p_ai >= ai_threshold     -> ai_generated
    p_ai <= real_threshold   -> real
    otherwise                -> uncertain (reason "band")
    OOD score > ood          -> uncertain (reason "ood"), whatever P(AI) says

Thresholds are chosen on validation data: the widest confident region (highest coverage) in which, among
confidently judged real faces, at most `max_real_called_ai` are called AI-generated (a false accusation
costs a real person), and among confidently judged AI faces at most `max_ai_called_real` pass as real.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

VERDICTS = ("ai_generated", "real", "uncertain", "unreadable")


@dataclass(frozen=True)
class Bounds:
    """The error shares a verdict may carry, on seen sources and on a source never trained on."""

    real_called_ai: float = 0.01
    ai_called_real: float = 0.05
    unseen_real_called_ai: float = 0.02
    unseen_ai_called_real: float = 0.10

    def describe(self) -> dict:
        return asdict(self)


@dataclass
class Thresholds:
    ai: float = 0.5
    real: float = 0.5
    ood: float = float("inf")
    max_real_called_ai: float = Bounds.real_called_ai
    max_ai_called_real: float = Bounds.ai_called_real

    def describe(self) -> dict:
        return asdict(self)


def decide(p_ai: np.ndarray, ood_score: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """One verdict per row."""
    verdict = np.full(len(p_ai), "uncertain", dtype=object)
    verdict[p_ai >= thresholds.ai] = "ai_generated"
    verdict[p_ai <= thresholds.real] = "real"
    verdict[ood_score > thresholds.ood] = "uncertain"
    return verdict


def uncertain_reason(p_ai: np.ndarray, ood_score: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """Why each `uncertain` verdict is one: 'ood' (unlike the images the model knows: its P(AI) is not
    trusted) or 'band' (P(AI) between the thresholds); '' for confident verdicts."""
    reason = np.full(len(p_ai), "", dtype=object)
    reason[(p_ai < thresholds.ai) & (p_ai > thresholds.real)] = "band"
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


def choose_thresholds(
    p_ai: np.ndarray,
    y: np.ndarray,
    ood_score: np.ndarray,
    ood_threshold: float,
    max_real_called_ai: float = Bounds.real_called_ai,
    max_ai_called_real: float = Bounds.ai_called_real,
) -> tuple[Thresholds, dict]:
    """Search threshold pairs on validation predictions; return the one with the highest coverage."""
    candidates = np.unique(np.concatenate([np.quantile(p_ai, np.linspace(0, 1, 201)), [0.5]]))
    ai_options = np.append(candidates[candidates >= 0.5], 1.0 + 1e-9)
    real_options = np.insert(candidates[candidates <= 0.5], 0, -1e-9)
    best: tuple[float, Thresholds, dict] | None = None
    for t_ai in ai_options:
        for t_real in real_options:
            t = Thresholds(float(t_ai), float(t_real), ood_threshold, max_real_called_ai, max_ai_called_real)
            r = rates(decide(p_ai, ood_score, t), y)
            allowed = (
                r["real_called_ai_rate"] <= max_real_called_ai
                and r["ai_called_real_rate"] <= max_ai_called_real
            )
            if allowed and (best is None or r["coverage"] > best[0]):
                best = (r["coverage"], t, r)
    if best is None:  # nothing satisfies both: abstain on everything rather than break a promise
        t = Thresholds(1.0 + 1e-9, -1e-9, ood_threshold, max_real_called_ai, max_ai_called_real)
        return t, rates(decide(p_ai, ood_score, t), y)
    return best[1], best[2]
