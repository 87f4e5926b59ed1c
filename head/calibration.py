"""Calibration on the validation split: temperature scaling, or Platt scaling where it fits better.

Both act on each Monte Carlo sample's logit margin before the samples are averaged, so the spread
across samples (the doubt) is kept. ECE uses 15 equal-width bins of the predicted class's confidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_EPS = 1e-7


@dataclass
class Calibrator:
    """P(AI) = sigmoid(slope * margin + intercept); temperature scaling is slope = 1/T, intercept = 0."""

    method: str = "none"
    slope: float = 1.0
    intercept: float = 0.0

    @property
    def temperature(self) -> float:
        return 1.0 / self.slope if self.slope else float("inf")

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """(S, N, 2) logits -> (S, N) calibrated P(AI)."""
        margin = (logits[..., 1] - logits[..., 0]).astype(np.float64)
        return _sigmoid(self.slope * margin + self.intercept)

    def torch_p_ai(self, margin):
        """The same formula on a torch tensor of logit margins, differentiable (for gradient maps)."""
        import torch

        return torch.sigmoid(torch.clamp(self.slope * margin + self.intercept, -60, 60))

    def describe(self) -> dict:
        return {**asdict(self), "temperature": self.temperature}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def nll(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over confidence bins, weighted by bin size."""
    p, y = np.asarray(p, np.float64), np.asarray(y)
    predicted = (p >= 0.5).astype(int)
    confidence = np.where(predicted == 1, p, 1 - p)
    correct = (predicted == y).astype(float)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def fit_calibrator(logits: np.ndarray, y: np.ndarray) -> tuple[Calibrator, dict]:
    """Fit both methods on validation logits (S, N, 2); keep the one with the lower validation NLL.

    Platt's extra parameter must earn its place: it wins only if it lowers the NLL by 0.002 or more.
    """
    from scipy.optimize import minimize

    y = np.asarray(y, dtype=np.float64)
    margin = (logits[..., 1] - logits[..., 0]).astype(np.float64)

    def loss(params: np.ndarray) -> float:
        slope, intercept = params if len(params) == 2 else (params[0], 0.0)
        return nll(_sigmoid(slope * margin + intercept).mean(axis=0), y)

    uncalibrated = Calibrator()
    temperature = minimize(lambda v: loss(np.array([np.exp(v[0])])), x0=[0.0], method="Nelder-Mead")
    temp_cal = Calibrator("temperature", float(np.exp(temperature.x[0])), 0.0)
    platt = minimize(loss, x0=[temp_cal.slope, 0.0], method="Nelder-Mead")
    platt_cal = Calibrator("platt", float(platt.x[0]), float(platt.x[1]))
    chosen = platt_cal if platt.fun < temperature.fun - 0.002 else temp_cal

    def summary(cal: Calibrator) -> dict:
        p = cal(logits).mean(axis=0)
        return {"nll": nll(p, y), "ece": expected_calibration_error(p, y)}

    report = {
        "method": chosen.method,
        "before": summary(uncalibrated),
        "temperature": summary(temp_cal),
        "platt": summary(platt_cal),
        "after": summary(chosen),
    }
    return chosen, report
