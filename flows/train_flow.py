"""The `train` flow: a labelled folder in, a complete model folder out (weights, card, metrics, plots).

Steps: embed what is missing (and the augmented views of the training images), train the head on the
training split, calibrate on validation, then (with two sources or more) train the same recipe once per
source left out and fit the uncertain band and OOD threshold against how those models judged the
source they never saw. The test split is scored last, and the leave-one-source-out figures, each fold
judged by thresholds chosen without it, go into metrics.json and the model card.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from data.atomic import write_text
from data.version import code_version
from embed.augment import DEFAULT_VIEWS, Augmentation
from embed.default_backbone import DEFAULT_BACKBONE
from embed.pooling import PoolingKind
from embed.preprocess import PreprocessMode
from embed.spec import DEFAULT_POOLING, DEFAULT_PREPROCESS, make_spec
from flows.defaults import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
from flows.labelled import DataError, LabelledSet, load_labelled
from flows.loso import fit_within, judged, run_folds, unseen_report
from flows.model_card import write_model_card
from flows.orchestration import call
from flows.params import BatchSize, Rate, Samples, ViewCount, Workers
from head.abstention import Bounds, choose_abstention
from head.base import DEFAULT_HEAD, HeadKind
from head.metrics import metrics_by_group
from head.plots import write_plots, write_unseen_plot
from head.uncertainty import DEFAULT_SAMPLES


@task(name="fit-head", cache_policy=NO_CACHE)
def fit_head(data: LabelledSet, head: str, params: dict, bounds: Bounds, samples: int, info: dict):
    """The model itself: trained on the training split, calibrated on validation."""
    fitted = fit_within(data, np.ones(len(data.y), dtype=bool), head, params, bounds, samples, info)
    if fitted is None:
        raise DataError("the train and validation splits each need both classes; add more images")
    return fitted


def linear_probe(data: LabelledSet) -> dict:
    """Logistic regression on the same vectors and splits: the baseline the Bayesian head must beat."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from head.thresholds import Thresholds, decide
    from head.uncertainty import Prediction

    train, test = data.splits == "train", data.originals_in("test")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
    probe.fit(data.X[train], data.y[train])
    p = probe.predict_proba(data.X[test])[:, 1]
    zeros = np.zeros_like(p)
    prediction = Prediction(p, zeros, zeros, zeros)
    verdict = decide(p, zeros, Thresholds())
    return metrics_by_group(data.y[test], prediction, verdict, data.groups[test])


@flow(name="train", log_prints=True)
def train_flow(
    data_dir: str,
    model_out: str,
    store_dir: str,
    head: HeadKind = DEFAULT_HEAD,
    backbone: str = DEFAULT_BACKBONE,
    preprocess: PreprocessMode = DEFAULT_PREPROCESS,
    pooling: PoolingKind = DEFAULT_POOLING,
    layers: list[int] | None = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    workers: Workers = DEFAULT_WORKERS,
    max_real_called_ai: Rate = Bounds.real_called_ai,
    max_ai_called_real: Rate = Bounds.ai_called_real,
    samples: Samples = DEFAULT_SAMPLES,
    head_params: dict | None = None,
    augment: bool = True,
    views: ViewCount = DEFAULT_VIEWS,
    unseen_sources: bool = True,
    max_unseen_real_called_ai: Rate = Bounds.unseen_real_called_ai,
    max_unseen_ai_called_real: Rate = Bounds.unseen_ai_called_real,
) -> dict:
    """Embed what is missing, split by hash, train, calibrate, set thresholds, test, write the model."""
    spec = make_spec(backbone, preprocess, pooling, tuple(layers or ()))
    augmentation = Augmentation() if augment and views > 0 else None
    data = load_labelled(data_dir, spec, store_dir, batch_size, workers, augmentation, views)
    bounds = Bounds(
        max_real_called_ai, max_ai_called_real, max_unseen_real_called_ai, max_unseen_ai_called_real
    )
    info = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "faceaudit_version": code_version(),
        "embedding": {**spec.provenance(), "describe": spec.describe()},
        "training_data": {"folder": str(data_dir), "sha256": data.data_hash(), "counts": data.counts()},
        "augmentation": {"spec": augmentation.describe(), "views": views} if augmentation else None,
    }
    model, report = call(fit_head, data, head, head_params or {}, bounds, samples, info)
    unseen = None
    folds = run_folds(data, head, head_params or {}, bounds, samples) if unseen_sources else []
    if folds:
        # The shipped band: its own validation images plus every fold's unseen source.
        val = data.originals_in("val")
        seen = judged(model, data.X[val], data.y[val])
        model.thresholds, report["abstention_in_sample"] = choose_abstention(
            seen, [fold.held_out for fold in folds], bounds
        )
        report["abstention_in_sample"]["sources"] = [fold.source for fold in folds]
        unseen = unseen_report(folds, bounds)
    model.info["abstention"] = {
        "fitted_on": "validation and leave-one-source-out folds" if folds else "validation",
        "bounds": bounds.describe(),
        "sources_left_out": [fold.source for fold in folds],
    }
    test = data.originals_in("test")
    scores = model.score(data.X[test])
    metrics = {
        "split": "test",
        **metrics_by_group(data.y[test], scores.prediction, scores.verdict, data.groups[test]),
        "linear_probe": linear_probe(data),
        "validation": report,
    }
    if unseen is not None:
        metrics["leave_one_source_out"] = unseen
    model.info["metrics"] = _headline(metrics)
    out = Path(model_out)
    model.save(out)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    write_model_card(out, json.loads((out / "model.json").read_text()), metrics, data_dir)
    write_plots(out / "plots", data.y[test], scores.prediction, scores.verdict, model.head.history_, "(test)")
    if unseen is not None:
        write_unseen_plot(out / "plots", unseen)
    return {"model": str(out), "metrics": model.info["metrics"], "unreadable": data.embed_summary.unreadable}


def _headline(metrics: dict) -> dict:
    keys = (
        "accuracy",
        "roc_auc",
        "ece",
        "coverage",
        "selective_accuracy",
        "real_called_ai_rate",
        "mutual_info_auroc_wrong",
    )
    out = {k: metrics[k] for k in keys}
    out["groups"] = {g: {k: m[k] for k in ("accuracy", "roc_auc", "n")} for g, m in metrics["groups"].items()}
    out["linear_probe_accuracy"] = metrics["linear_probe"]["accuracy"]
    if "leave_one_source_out" in metrics:
        out["leave_one_source_out"] = metrics["leave_one_source_out"]["summary"]
    return out
