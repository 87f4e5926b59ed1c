"""Leave one source out: how a model judges a source of faces it was never trained on.

For each source (the folder above the class folders), a model of the same recipe is trained on the
other sources and judges every image of the one left out. Those judgements do two jobs:

- `train` fits the uncertain band and the OOD threshold against them (head/abstention.py), so that
  the shipped model abstains on a new generator or camera instead of guessing;
- the report below judges each fold with thresholds chosen on the *other* folds only, so its figures
  are an honest estimate of what happens on a source nobody has seen, not a fit to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.labelled import LabelledSet
from flows.orchestration import call
from head.abstention import Bounds, Judged, choose_abstention, verdict_rates
from head.fit import fit_model
from head.thresholds import decide


@dataclass
class Fold:
    """One source left out: its images as the model trained without it judged them, and that model's
    judgement of its own validation images."""

    source: str
    held_out: Judged
    seen: Judged


def judged(model, X: np.ndarray, y: np.ndarray, samples: int | None = None) -> Judged:
    scores = model.score(X, samples)
    return Judged(scores.prediction.p_ai, scores.ood_score, y)


def fit_within(
    data: LabelledSet,
    within: np.ndarray,
    head: str,
    params: dict,
    bounds: Bounds,
    samples: int,
    info: dict | None = None,
):
    """The recipe trained on the training rows in `within` (views included) and calibrated on their
    validation originals: (model, report), or None when either split lacks a class."""
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
        bounds.real_called_ai,
        bounds.ai_called_real,
        samples,
        info,
        train_images=data.image_ids()[train],
    )


@task(name="fit-fold", cache_policy=NO_CACHE, task_run_name="leave out {source}")
def fit_fold(
    data: LabelledSet, source: str, head: str, params: dict, bounds: Bounds, samples: int
) -> Fold | None:
    """Train on every source but `source`; None when the rest lacks a class in train or validation."""
    others = data.groups != source
    fitted = fit_within(data, others, head, params, bounds, samples)
    if fitted is None:
        return None
    model = fitted[0]
    held = (data.groups == source) & (data.view == 0)
    val = others & data.originals_in("val")
    return Fold(source, judged(model, data.X[held], data.y[held]), judged(model, data.X[val], data.y[val]))


def run_folds(data: LabelledSet, head: str, params: dict, bounds: Bounds, samples: int) -> list[Fold]:
    """One fold per source that can be left out (the others must still hold both classes)."""
    sources = sorted({str(g) for g in data.groups})
    if len(sources) < 2:
        return []
    folds = [call(fit_fold, data, source, head, params, bounds, samples) for source in sources]
    return [fold for fold in folds if fold is not None]


def unseen_report(folds: list[Fold], bounds: Bounds) -> dict:
    """Each fold judged with thresholds chosen without it, then the mean and worst over folds."""
    from sklearn.metrics import roc_auc_score

    report: dict = {"bounds": bounds.describe(), "folds": {}}
    for i, fold in enumerate(folds):
        others = [other.held_out for j, other in enumerate(folds) if j != i]
        thresholds, _ = choose_abstention(fold.seen, others, bounds)
        held = fold.held_out
        rates = verdict_rates(decide(held.p_ai, held.ood, thresholds), held.y)
        both = len(np.unique(held.y)) == 2
        rates["roc_auc"] = float(roc_auc_score(held.y, held.p_ai)) if both else None
        rates["ood_flagged"] = float((held.ood > thresholds.ood).mean())
        rates["thresholds"] = {k: thresholds.describe()[k] for k in ("ai", "real", "ood")}
        report["folds"][fold.source] = rates
    report["summary"] = summarise_folds(report["folds"])
    return report


def summarise_folds(folds: dict) -> dict:
    """Mean over folds, and the worst fold, of the figures the bounds are about."""

    def values(pick) -> list[float]:
        return [v for v in (pick(f) for f in folds.values()) if v is not None]

    real_called_ai = values(lambda f: f["real"]["ai_generated"] if f["real"] else None)
    ai_called_real = values(lambda f: f["ai"]["real"] if f["ai"] else None)
    coverage = values(lambda f: f["coverage"])
    auc = values(lambda f: f["roc_auc"])

    def mean(xs: list[float]) -> float | None:
        return float(np.mean(xs)) if xs else None

    return {
        "folds": len(folds),
        "mean_coverage": mean(coverage),
        "mean_real_called_ai": mean(real_called_ai),
        "worst_real_called_ai": max(real_called_ai, default=None),
        "mean_ai_called_real": mean(ai_called_real),
        "worst_ai_called_real": max(ai_called_real, default=None),
        "mean_roc_auc": mean(auc),
    }
