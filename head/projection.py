"""The directions along which a face's own copies move its vector, removed before anything is fitted or
judged.

A face halved, re-encoded, blurred or restyled is the same face, and its verdict should not follow the
copy. The training views (embed/augment.py) show how copies move a vector: the differences between each
view and its own image span a few directions that carry the copy, not the face. Removing the strongest
`k` of them from every vector (nuisance attribute projection, as speaker verification removes channel
directions: Solomonoff et al., "Advances in channel compensation for SVM speaker recognition", 2005)
leaves the head, the probe, the OOD detector and the nearest-source classifier nothing of them to learn.

Measured on the built-in recipe at five head seeds (docs/features.md, "Halved faces"), 64 directions
keep 89.3-93.4% of ffhq-stylegan's verdicts on halved copies (69.1-86.8% without) and accuse none of the
demo's real portraits at any of seven sizes (4 of 14 without). But the band's coverage falls under 80%
at four seeds of five (with the exact SVD of the first version, the per-source floor broke at two),
and a generator family left out of training passes as real far more often (the text-to-image tiles
46% against 19%): what copies change carries part of what tells an unseen generator from a photo. So
it is off by default (`DEFAULT_DIRECTIONS`); `train --view-directions 64` asks for it.

Columns are compared in units of their spread over the training images (not the views), so that no
block of the vector outweighs the others by its scale. The basis is stored as int8 with one scale per
direction (a quarter of float32: 64 x 6912 is 0.4 MB) and used as stored from the start, so
the fitted model and the loaded one project alike.
"""

from __future__ import annotations

import numpy as np

DEFAULT_DIRECTIONS = 0  # see above: 64 is the measured choice when asked for


class ViewProjection:
    """x -> x minus its part along `basis`, measured in units of `spread`."""

    def __init__(self, spread: np.ndarray, basis: np.ndarray, basis_scale: np.ndarray) -> None:
        self.spread = np.asarray(spread, np.float32)
        self.basis_q = np.asarray(basis, np.int8)
        self.basis_scale = np.asarray(basis_scale, np.float32)
        self._basis = self.basis_q.astype(np.float32) * self.basis_scale[:, None]

    @property
    def directions(self) -> int:
        return len(self._basis)

    @classmethod
    def fit(cls, X: np.ndarray, images: np.ndarray, views: np.ndarray, k: int) -> ViewProjection:
        """Fit on training rows: `images` names each row's image, `views` is 0 for the image itself and
        1.. for its augmented views. Fewer than k directions when there are fewer views than k, and
        never more than a quarter of the vector's columns: the face must keep most of its vector."""
        X = np.asarray(X, np.float32)
        originals = np.flatnonzero(views == 0)
        row_of = {images[i]: i for i in originals}
        copies = np.array([i for i in np.flatnonzero(views > 0) if images[i] in row_of], dtype=int)
        k = min(k, len(copies), X.shape[1] // 4)
        if k < 1:
            raise ValueError("view directions need augmented views of the training images; there are none")
        spread = X[originals].std(0) + 1e-6
        moves = (X[copies] - X[[row_of[images[i]] for i in copies]]) / spread
        basis = _top_directions(moves, k)
        scale = np.abs(basis).max(1) / 127.0
        return cls(spread, np.round(basis / scale[:, None]), scale)

    def apply(self, X: np.ndarray) -> np.ndarray:
        return _remove(np.asarray(X, np.float32), self.spread, self._basis).astype(np.float32)

    def torch_apply(self, pooled):
        """The same map on torch vectors, differentiable (gradient maps go through it)."""
        import torch

        return _remove(
            pooled, torch.from_numpy(self.spread).to(pooled), torch.from_numpy(self._basis).to(pooled)
        )

    def state_tensors(self) -> dict[str, np.ndarray]:
        return {"spread": self.spread, "basis": self.basis_q, "basis_scale": self.basis_scale}

    @classmethod
    def load(cls, tensors: dict[str, np.ndarray]) -> ViewProjection:
        return cls(tensors["spread"], tensors["basis"], tensors["basis_scale"])

    def describe(self) -> dict:
        return {"kind": "view-directions", "directions": self.directions, "fitted_on": "training views"}


def _top_directions(moves: np.ndarray, k: int) -> np.ndarray:
    """The k strongest right singular vectors of `moves`, (k, columns).

    A full SVD of the default training views' moves (9,188 x 6,912) takes 134 s here; the randomized
    one with 128 extra probe vectors and 8 power iterations takes 5 s and gives the same 64 directions
    (smallest principal cosine 1.00000, projected test vectors equal to 1e-5 of their largest value,
    far below what storing the basis as int8 changes)."""
    from sklearn.utils.extmath import randomized_svd

    extra = 128
    if k + extra >= min(moves.shape):  # a small matrix: the exact SVD is as cheap
        return np.linalg.svd(moves, full_matrices=False)[2][:k]
    return randomized_svd(moves, k, n_oversamples=extra, n_iter=8, random_state=0)[2]


def _remove(X, spread, basis):
    """X minus its part along `basis`, in units of `spread`: numpy arrays or torch tensors alike."""
    Z = X / spread
    return (Z - (Z @ basis.T) @ basis) * spread
