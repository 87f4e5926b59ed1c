"""Which training family and source an image looks most like: the verdict explained in the terms of
what the model knows.

A verdict alone does not say whether "called AI" means "carries a generator's traces" or "looks like the
studio portraits that one generator makes". Naming the nearest training source lets an auditor judge a
studio photo for what it is: "called AI: looks like genphotos/ai (stylegan), 0.83".

A small multinomial logistic regression on the OOD detector's whitened principal coordinates (the 64
directions the training vectors vary most along, each scaled to unit variance) predicts the training
group (source/class) of a vector. The similarity reported is the summed probability of the nearest
family; the source is the likeliest group within it.
"""

from __future__ import annotations

import numpy as np


class NearestSource:
    """Training groups ("source/class"), their families, and a classifier over them."""

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, Z: np.ndarray, groups: np.ndarray, families: dict[str, str]) -> NearestSource:
        """`Z`: whitened coordinates of the training vectors; `groups`: their "source/class" names;
        `families`: group -> family name."""
        from sklearn.linear_model import LogisticRegression

        self.groups_ = sorted({str(g) for g in groups})
        self.families_ = [families[g] for g in self.groups_]
        if len(self.groups_) == 1:
            self.coef_ = np.zeros((1, Z.shape[1]))
            self.intercept_ = np.zeros(1)
            return self
        index = np.searchsorted(self.groups_, np.asarray(groups, dtype=str))
        model = LogisticRegression(C=self.C, max_iter=2000).fit(Z, index)
        coef, intercept = model.coef_, model.intercept_
        if len(self.groups_) == 2:  # scikit-learn keeps one row for two classes
            coef, intercept = np.vstack([-coef, coef]) / 2, np.array([-intercept[0], intercept[0]]) / 2
        self.coef_, self.intercept_ = coef.astype(np.float64), intercept.astype(np.float64)
        return self

    def probabilities(self, Z: np.ndarray) -> np.ndarray:
        logits = Z @ self.coef_.T + self.intercept_
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def looks_real(self, Z: np.ndarray) -> np.ndarray:
        """Per row, the probability that it belongs to one of the real training groups ("x/real")."""
        real = np.array([g.endswith("/real") for g in self.groups_], dtype=float)
        return self.probabilities(Z) @ real

    def nearest(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(family, source group, similarity) per row: the family of highest summed probability, its
        likeliest group, and that family's probability."""
        p = self.probabilities(Z)
        names = sorted(set(self.families_))
        member = np.array([[f == name for f in self.families_] for name in names], dtype=float)
        by_family = p @ member.T
        best = by_family.argmax(axis=1)
        within = np.where(member[best].astype(bool), p, -1.0).argmax(axis=1)
        return (
            np.array(names, dtype=object)[best],
            np.array(self.groups_, dtype=object)[within],
            by_family[np.arange(len(p)), best],
        )

    def state_tensors(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef_.astype(np.float32), "intercept": self.intercept_.astype(np.float32)}

    def describe(self) -> dict:
        return {"groups": self.groups_, "families": self.families_, "C": self.C}

    @classmethod
    def load(cls, described: dict, tensors: dict[str, np.ndarray]) -> NearestSource:
        nearest = cls(float(described.get("C", 1.0)))
        nearest.groups_ = [str(g) for g in described["groups"]]
        nearest.families_ = [str(f) for f in described["families"]]
        nearest.coef_ = tensors["coef"].astype(np.float64)
        nearest.intercept_ = tensors["intercept"].astype(np.float64)
        if nearest.coef_.shape[0] != len(nearest.groups_) or len(nearest.families_) != len(nearest.groups_):
            raise ValueError("the nearest-source classifier's weights do not match its groups")
        return nearest
