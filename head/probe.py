"""A plain linear probe beside the head: the second opinion an `ai_generated` verdict needs.

The MLP head can learn a style where a linear reader does not. An accusation costs a real person, so it
needs both readers to agree: the probe must give at least `Thresholds.probe_agrees`, set so that only a
small share of the validation AI faces (`Bounds.ai_held_back`) is held back by it.

The train flow gives the probe only the texture columns (the patch tokens' spread, `std`, of every
layer and pass; `Pooling.columns_of`): the CLS and mean tokens describe the person, the styling and the
backdrop, and learn "polished portrait = AI" from Generated Photos and studio-style diffusion faces,
where the spread of the patch tokens carries the generator's traces and little of the style (issue 19's
measurements, docs/features.md). A texture probe that disagrees holds back the head's accusations of
polished real portraits: in docs/features.md's comparison, on the demo's two official White House
portraits cropped to the face, the head said P(AI) 0.99 for both, a probe on the whole vector 0.53
and 0.94, the texture probe 0.49 and 0.13. It is a thin guard: the texture probe's answer on those
portraits moves with the file's size (README, "What the built-in model does today").
"""

from __future__ import annotations

import numpy as np

PROBE_READS = ("all", "texture")  # what a probe was given: the whole vector, or its texture columns


def logistic_regression(
    Z: np.ndarray, y: np.ndarray, C: float = 0.1, weight: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression, scikit-learn's objective (C times the summed loss plus half the
    squared weights), by full-batch L-BFGS in torch: seconds where scikit-learn's lbfgs takes minutes
    on ten thousand vectors of a few thousand numbers."""
    import torch

    Zt = torch.tensor(Z, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    wt = torch.ones(len(y)) if weight is None else torch.tensor(weight, dtype=torch.float32)
    w = torch.zeros(Z.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [w, b], lr=1, max_iter=500, history_size=20, line_search_fn="strong_wolfe", tolerance_grad=1e-7
    )
    penalty = 1.0 / (C * float(wt.sum()))

    def closure():
        optimiser.zero_grad()
        losses = torch.nn.functional.binary_cross_entropy_with_logits(Zt @ w + b, yt, reduction="none")
        loss = (losses * wt).sum() / wt.sum() + 0.5 * penalty * (w * w).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return w.detach().double().numpy(), float(b.detach()[0])


class LinearProbe:
    """Standardised inputs, logistic regression; P(AI) per row."""

    def __init__(self, C: float = 0.1, reads: str = "all") -> None:
        self.C = C
        self.reads = reads  # "all" or "texture": what it was given, said on the model card

    def fit(self, X: np.ndarray, y: np.ndarray, columns: list[int] | None = None) -> LinearProbe:
        """Fitted on `columns` of X only (all when None); the others get weight 0, so a saved probe
        is read the same way whatever it was given."""
        X = np.asarray(X, dtype=np.float64)
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0) + 1e-6
        read = np.arange(X.shape[1]) if columns is None else np.asarray(columns)
        weights, self.intercept_ = logistic_regression(
            (X[:, read] - self.mean_[read]) / self.scale_[read], np.asarray(y), self.C
        )
        self.coef_ = np.zeros(X.shape[1])
        self.coef_[read] = weights
        return self

    def p_ai(self, X: np.ndarray) -> np.ndarray:
        margin = ((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-np.clip(margin, -500, 500)))

    def state_tensors(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean_.astype(np.float32),
            "scale": self.scale_.astype(np.float32),
            "coef": self.coef_.astype(np.float32),
            "intercept": np.array([self.intercept_], dtype=np.float64),
        }

    @classmethod
    def load(cls, C: float, tensors: dict[str, np.ndarray], reads: str = "all") -> LinearProbe:
        probe = cls(C, reads)
        probe.mean_ = tensors["mean"].astype(np.float64)
        probe.scale_ = tensors["scale"].astype(np.float64)
        probe.coef_ = tensors["coef"].astype(np.float64)
        probe.intercept_ = float(tensors["intercept"][0])
        if not probe.mean_.shape == probe.scale_.shape == probe.coef_.shape:
            raise ValueError("the linear probe's weights do not fit together")
        return probe
