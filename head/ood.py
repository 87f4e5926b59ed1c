"""Out-of-distribution score: Mahalanobis distance to the training vectors under a shrunk covariance.

The covariance is probabilistic PCA's: the top k directions of the training vectors keep their own
variance, every other direction shares the mean leftover variance. That is the full covariance shrunk
towards an isotropic one, small enough to ship (k x dim numbers) and well-conditioned with fewer
images than dimensions.

The score is the distance divided by a high percentile (`percentile`) of the training vectors' own
distances, measured out of fold so that in-sample optimism does not make ordinary test images look
unusual: 1.0 means "as far out as the furthest training images", whatever the model. That makes one
OOD threshold meaningful across models.
"""

from __future__ import annotations

import numpy as np


class MahalanobisOOD:
    def __init__(
        self, n_components: int = 64, percentile: float = 99.5, folds: int = 5, seed: int = 0
    ) -> None:
        self.n_components = n_components
        self.percentile = percentile
        self.folds = folds
        self.seed = seed

    def fit(self, X: np.ndarray, groups: np.ndarray | None = None) -> MahalanobisOOD:
        """`groups` names the image each row comes from: augmented views of one image share a fold, or
        an image's views would vouch for each other and make every new image look unusual."""
        X = np.asarray(X, dtype=np.float64)
        rng = np.random.default_rng(self.seed)
        if groups is None:
            fold_of = rng.integers(0, self.folds, len(X))
        else:
            _, group_index = np.unique(np.asarray(groups), return_inverse=True)
            fold_of = rng.integers(0, self.folds, group_index.max() + 1)[group_index]
        held_out = np.empty(len(X))
        for fold in range(self.folds):
            inside = fold_of != fold
            held_out[~inside] = _Fitted.fit(X[inside], self.n_components).distance(X[~inside])
        fitted = _Fitted.fit(X, self.n_components)
        self.mean_, self.components_, self.variances_, self.noise_variance_ = (
            fitted.mean,
            fitted.components,
            fitted.variances,
            np.array(fitted.noise_variance),
        )
        self.scale_ = float(np.percentile(held_out, self.percentile))
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        """Normalised distance: above 1.0 is further out than all but the farthest training images."""
        fitted = _Fitted(self.mean_, self.components_, self.variances_, float(self.noise_variance_))
        return fitted.distance(np.asarray(X, dtype=np.float64)) / self.scale_

    def whiten(self, X: np.ndarray) -> np.ndarray:
        """Coordinates along the top principal directions, each scaled to unit training variance: a
        small, well-conditioned view of a vector for classifiers that live beside this detector."""
        centred = np.asarray(X, dtype=np.float64) - self.mean_
        return (centred @ self.components_.T) / np.sqrt(self.variances_)

    def state_tensors(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean_.astype(np.float32),
            "components": self.components_.astype(np.float32),
            "variances": self.variances_.astype(np.float64),
            "noise_variance": np.atleast_1d(self.noise_variance_).astype(np.float64),
        }

    def load_state_tensors(self, tensors: dict[str, np.ndarray], scale: float) -> None:
        self.mean_ = tensors["mean"].astype(np.float64)
        self.components_ = tensors["components"].astype(np.float64)
        self.variances_ = tensors["variances"]
        self.noise_variance_ = float(tensors["noise_variance"][0])
        self.scale_ = scale


class _Fitted:
    def __init__(self, mean, components, variances, noise_variance: float) -> None:
        self.mean, self.components, self.variances, self.noise_variance = (
            mean,
            components,
            variances,
            noise_variance,
        )

    @classmethod
    def fit(cls, X: np.ndarray, k: int) -> _Fitted:
        from sklearn.utils.extmath import randomized_svd

        mean = X.mean(axis=0)
        centred = X - mean
        k = max(1, min(k, min(X.shape) - 1))
        # Only the top k directions are needed: a randomised SVD finds them in a few matrix products
        # (a full SVD of 10,000 x 3,456 vectors took ~30 s; this takes about one).
        _, singular, vt = randomized_svd(centred.astype(np.float32), k, n_iter=6, random_state=0)
        singular, vt = singular.astype(np.float64), vt.astype(np.float64)
        eigen = singular**2 / max(len(X) - 1, 1)
        rest = X.shape[1] - k
        noise = max(float((np.sum(centred**2) / max(len(X) - 1, 1) - eigen.sum()) / rest), 1e-12)
        return cls(mean, vt, eigen, noise)

    def distance(self, X: np.ndarray) -> np.ndarray:
        """sqrt of the Mahalanobis d^2 per dimension (about 1 for a typical training vector)."""
        centred = X - self.mean
        projected = centred @ self.components.T
        residual = np.sum(centred**2, axis=1) - np.sum(projected**2, axis=1)
        d2 = np.sum(projected**2 / self.variances, axis=1) + np.maximum(residual, 0) / self.noise_variance
        return np.sqrt(d2 / X.shape[1])
