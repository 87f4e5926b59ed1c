"""Left-out folds: how the recipe judges a generator family, a real collection or a source it never saw.

That is where detectors fail, so it is measured, never assumed. For each fold a model of the same
recipe is trained without the images left out, its band fitted on its own validation split exactly as
the shipped model's is (head/thresholds.py), and it judges every image left out. Nothing about the left-
out images chooses anything: the figures are what a user would see on a family nobody trained on.

Three ways to leave out (data/families.py names the families and collections):

- `family`: every AI image of one generator family (a StyleGAN source left out alone still has three
  StyleGAN cousins in training; the family is the real question); the rates read "AI called real";
- `collection`: every real photo of one real collection; the rates read "real called AI";
- `source`: one source folder, both classes.

The worst fold is the headline: a mean hides the family a detector misses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from faceaudit.embed.spec import EmbeddingSpec
from faceaudit.flows.labelled import LabelledSet
from faceaudit.flows.orchestration import call
from faceaudit.head.fit import fit_model
from faceaudit.head.thresholds import Bounds, verdict_rates

FoldKind = Literal["family", "collection", "source"]
FOLD_KINDS: dict[str, str] = {
    "family": "leave_one_family_out",
    "collection": "leave_one_real_collection_out",
    "source": "leave_one_source_out",
}


def texture_columns_of(spec: EmbeddingSpec) -> list[int] | None:
    """What the AI verdict's second opinion reads: the texture columns (head/probe.py); None, the whole
    vector, for a pooling without them."""
    return spec.pooling.columns_of("std", spec.backbone.hidden_size) or None


def fit_within(
    data: LabelledSet,
    within: np.ndarray,
    head: str,
    params: dict,
    bounds: Bounds,
    samples: int,
    info: dict | None = None,
    texture_columns: list[int] | None = None,
    directions: int = 0,
):
    """The recipe trained on the training rows in `within` (views included), calibrated and banded on
    their validation originals: (model, report), or None when either split lacks a class. `directions`
    view directions are projected out first (head/projection.py), when there are views."""
    train = within & (data.splits == "train")
    val = within & data.originals_in("val")
    if len(np.unique(data.y[train])) < 2 or len(np.unique(data.y[val])) < 2:
        return None
    return fit_model(
        data.X[train],
        data.y[train],
        data.X[val],
        data.y[val],
        head,
        params,
        bounds,
        samples,
        info,
        train_images=data.image_ids()[train],
        train_groups=data.group_names()[train],
        val_sources=data.groups[val],
        group_families=data.group_families(),
        texture_columns=texture_columns,
        train_views=data.view[train],
        directions=directions,
    )


def left_out_mask(data: LabelledSet, kind: str, name: str) -> np.ndarray:
    """The rows (views included) a fold of `kind` named `name` leaves out."""
    if kind == "source":
        return data.groups == name
    family = np.asarray(data.family_names())
    return (family == name) & (data.y == (1 if kind == "family" else 0))


def fold_names(data: LabelledSet, kind: str) -> list[str]:
    if kind == "source":
        return sorted({str(g) for g in data.groups})
    family = np.asarray(data.family_names())
    return sorted({str(f) for f in family[data.y == (1 if kind == "family" else 0)]})


@dataclass
class Fold:
    """One fold: what was left out, and how the model trained without it judged those images."""

    kind: str
    name: str
    sources: list[str]
    rates: dict
    ood_scores: np.ndarray  # of the images left out, under the model trained without them


@task(name="fit-fold", cache_policy=NO_CACHE, task_run_name="leave out {kind} {name}")
def fit_fold(
    data: LabelledSet,
    kind: str,
    name: str,
    head: str,
    params: dict,
    bounds: Bounds,
    samples: int,
    texture_columns: list[int] | None = None,
    directions: int = 0,
) -> Fold | None:
    """Train without fold `name`; None when the rest lacks a class in train or validation."""
    from sklearn.metrics import roc_auc_score

    held = left_out_mask(data, kind, name)
    fitted = fit_within(
        data, ~held, head, params, bounds, samples, texture_columns=texture_columns, directions=directions
    )
    if fitted is None:
        return None
    model = fitted[0]
    judged = held & (data.view == 0)
    scores = model.score(data.X[judged])
    y = data.y[judged]
    rates = verdict_rates(scores.verdict, y)
    rates["roc_auc"] = float(roc_auc_score(y, scores.prediction.p_ai)) if len(np.unique(y)) == 2 else None
    rates["ood_flagged"] = float((scores.reason == "ood").mean())
    rates["thresholds"] = {k: model.thresholds.describe()[k] for k in ("ai", "real", "ood")}
    sources = sorted({str(g) for g in data.groups[judged]})
    return Fold(kind, name, sources, rates, scores.ood_score)


def run_folds(
    data: LabelledSet,
    kind: str,
    head: str,
    params: dict,
    bounds: Bounds,
    samples: int,
    texture_columns: list[int] | None = None,
    directions: int = 0,
) -> dict | None:
    """Every fold of `kind` that can be left out (the rest must keep both classes), with a summary;
    None when there are fewer than two to choose from."""
    names = fold_names(data, kind)
    if len(names) < 2 and kind == "source":
        return None
    folds = [
        call(fit_fold, data, kind, name, head, params, bounds, samples, texture_columns, directions)
        for name in names
    ]
    folds = [fold for fold in folds if fold is not None]
    if not folds:
        return None
    report: dict = {"kind": kind, "bounds": bounds.describe(), "folds": {}}
    for fold in folds:
        report["folds"][fold.name] = {"sources": fold.sources, **fold.rates}
    report["summary"] = summarise_folds(report["folds"])
    # How unusual faces never trained on look (OOD scores are normalised per model, so they pool):
    # `train` keeps its OOD threshold above this, for faces, however new, are not what OOD is for.
    report["summary"]["left_out_ood_p99"] = float(
        np.quantile(np.concatenate([f.ood_scores for f in folds]), 0.99)
    )
    return report


def worst_folds(summary: dict) -> list[str]:
    """The headline in words: the worst fold's share for each class the folds judged, named."""
    phrases = []
    for key, what in (
        ("worst_ai_called_real", "AI faces called real"),
        ("worst_real_called_ai", "real photos called AI"),
    ):
        if summary[key] is not None:
            phrases.append(f"{what} {100 * summary[key]:.1f}% at worst ({summary[key + '_fold']})")
    return phrases


def summarise_folds(folds: dict) -> dict:
    """The worst fold (the headline) and the mean over folds, of the figures users care about."""

    def values(pick) -> list[tuple[str, float]]:
        return [(name, v) for name, v in ((n, pick(f)) for n, f in folds.items()) if v is not None]

    real_called_ai = values(lambda f: f["real"]["ai_generated"] if f["real"] else None)
    ai_called_real = values(lambda f: f["ai"]["real"] if f["ai"] else None)
    coverage = [v for _, v in values(lambda f: f["coverage"])]
    auc = [v for _, v in values(lambda f: f["roc_auc"])]

    def mean(xs: list[float]) -> float | None:
        return float(np.mean(xs)) if xs else None

    def worst(pairs: list[tuple[str, float]]) -> tuple[float | None, str | None]:
        if not pairs:
            return None, None
        name, value = max(pairs, key=lambda pair: pair[1])
        return value, name

    worst_real, worst_real_fold = worst(real_called_ai)
    worst_ai, worst_ai_fold = worst(ai_called_real)
    return {
        "folds": len(folds),
        "worst_real_called_ai": worst_real,
        "worst_real_called_ai_fold": worst_real_fold,
        "worst_ai_called_real": worst_ai,
        "worst_ai_called_real_fold": worst_ai_fold,
        "mean_real_called_ai": mean([v for _, v in real_called_ai]),
        "mean_ai_called_real": mean([v for _, v in ai_called_real]),
        "mean_coverage": mean(coverage),
        "mean_roc_auc": mean(auc),
    }
