"""What both heads share: scikit-learn's estimator shape, input standardisation, vectorised sampling.

A head is fitted on stored vectors and answers `predict(X, n_samples)` with a `Prediction`. Subclasses
only say how to train (`_fit`) and how to draw logits from many sampled networks at once
(`_sample_logits`). The same `seed` gives the same sampled networks, so an image's prediction never
depends on which other images share its batch.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from faceaudit.head.uncertainty import DEFAULT_SAMPLES, Prediction, summarize

HeadKind = Literal["mc-dropout", "pyro-vi"]  # the `kind` of each Head subclass
DEFAULT_HEAD = "mc-dropout"

# Rows per block when sampling: bounds memory at n_samples x block x width floats.
_BLOCK = 256


class Head:
    """Base class; hyperparameters in __init__, learned state ends in '_'."""

    kind = "base"

    def get_params(self) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    @classmethod
    def _param_names(cls) -> list[str]:
        import inspect

        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def fit(
        self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None
    ) -> Head:
        """Train on (X, y); the validation pair drives early stopping where a head uses it."""
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be (n, dim) with one label per row; got {X.shape} and {y.shape}")
        if set(np.unique(y)) - {0, 1}:
            raise ValueError("labels must be 0 (real) and 1 (AI-generated)")
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0) + 1e-6
        self.n_features_in_ = X.shape[1]
        val = None
        if X_val is not None and y_val is not None and len(y_val):
            val = (self._standardize(X_val), np.asarray(y_val, dtype=np.int64))
        self.history_: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        self._fit(self._standardize(X), y, val)
        return self

    def _standardize(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_).astype(np.float32)

    def sample_logits(self, X: np.ndarray, n_samples: int = DEFAULT_SAMPLES, seed: int = 0) -> np.ndarray:
        """(n_samples, n_rows, 2) logits, one slice per sampled network."""
        import torch

        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"the head expects vectors of {self.n_features_in_}, got {X.shape[1]}")
        Z = self._standardize(X)
        out = np.empty((n_samples, len(Z), 2), dtype=np.float32)
        networks = self._draw_networks(n_samples, seed)
        with torch.inference_mode():
            for start in range(0, len(Z), _BLOCK):
                block = torch.from_numpy(Z[start : start + _BLOCK])
                out[:, start : start + len(block)] = self._sample_logits(block, networks).numpy()
        return out

    def predict(
        self, X: np.ndarray, n_samples: int = DEFAULT_SAMPLES, seed: int = 0, calibrate=None
    ) -> Prediction:
        """Mean P(AI), its spread, entropy and mutual information over `n_samples` sampled networks.

        `calibrate` maps logits to calibrated P(AI) per sample (see head.calibration).
        """
        logits = self.sample_logits(np.asarray(X, dtype=np.float32), n_samples, seed)
        if calibrate is None:
            margin = logits[..., 1] - logits[..., 0]
            probs = 1.0 / (1.0 + np.exp(-margin.astype(np.float64)))
        else:
            probs = calibrate(logits)
        return summarize(probs)

    def mean_logits(self, X):
        """(n, 2) logits of the head's mean network, differentiable in torch (for gradient maps)."""
        import torch

        Z = (X - torch.from_numpy(self.mean_)) / torch.from_numpy(self.scale_)
        return self._mean_logits(Z)

    # ---- for subclasses -------------------------------------------------------------------------

    def _mean_logits(self, Z):
        raise NotImplementedError

    def _fit(self, Z: np.ndarray, y: np.ndarray, val: tuple[np.ndarray, np.ndarray] | None) -> None:
        raise NotImplementedError

    def _draw_networks(self, n_samples: int, seed: int):
        raise NotImplementedError

    def _sample_logits(self, Z, networks):
        raise NotImplementedError

    def state_tensors(self) -> dict[str, np.ndarray]:
        """Everything learned, as named arrays (saved with safetensors): the input scaling, then the
        subclass's `weights_`."""
        return {"mean": self.mean_, "scale": self.scale_, **self.weights_}

    def load_state_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        self.mean_, self.scale_ = tensors["mean"], tensors["scale"]
        self.n_features_in_ = len(self.mean_)
        self.weights_ = {k: v for k, v in tensors.items() if k not in ("mean", "scale")}
