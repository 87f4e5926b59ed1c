"""The `train` flow: a labelled folder in, a complete model folder out (weights, card, metrics, plots).

Steps: embed what is missing (and the augmented views of the training images), train the head on the
training split, calibrate, fit the OOD threshold, the nearest-source classifier and the uncertain band on
validation. Then the same recipe is trained once per generator family and once per real collection left
out (flows/folds.py), each judged on what it never saw; the OOD threshold is raised, if need be, so that
those never-seen faces are rarely flagged (OOD is for what is not a face photo). The test split is scored
last, and its rescaled copies (how much a verdict follows the file's size). All of it goes into
metrics.json, and the model card is written from metrics.json alone, so a retrain rewrites every figure.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from faceaudit.data.atomic import write_text
from faceaudit.data.version import code_version
from faceaudit.embed.augment import DEFAULT_VIEWS, Augmentation
from faceaudit.embed.default_backbone import DEFAULT_BACKBONE
from faceaudit.embed.pooling import PoolingKind
from faceaudit.embed.preprocess import PreprocessMode
from faceaudit.embed.spec import DEFAULT_POOLING, DEFAULT_PREPROCESS, make_spec
from faceaudit.flows.defaults import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
from faceaudit.flows.folds import FOLD_KINDS, fit_within, run_folds, texture_columns_of
from faceaudit.flows.labelled import DataError, LabelledSet, load_labelled
from faceaudit.flows.model_card import write_model_card
from faceaudit.flows.orchestration import call
from faceaudit.flows.params import BatchSize, Directions, Rate, Samples, ViewCount, Workers
from faceaudit.flows.perturb import ROBUSTNESS, perturbation_metrics
from faceaudit.head.base import DEFAULT_HEAD, HeadKind
from faceaudit.head.fit import fit_band
from faceaudit.head.metrics import metrics_by_group
from faceaudit.head.model import check_head_params
from faceaudit.head.plots import write_folds_plot, write_plots
from faceaudit.head.projection import DEFAULT_DIRECTIONS
from faceaudit.head.thresholds import Bounds
from faceaudit.head.uncertainty import DEFAULT_SAMPLES


@task(name="fit-head", cache_policy=NO_CACHE)
def fit_head(
    data: LabelledSet,
    head: str,
    params: dict,
    bounds: Bounds,
    samples: int,
    info: dict,
    texture_columns: list[int] | None,
    directions: int,
):
    """The model itself: trained on the training split, calibrated on validation."""
    everything = np.ones(len(data.y), dtype=bool)
    fitted = fit_within(data, everything, head, params, bounds, samples, info, texture_columns, directions)
    if fitted is None:
        raise DataError("the train and validation splits each need both classes; add more images")
    return fitted


def linear_probe(model, data: LabelledSet) -> dict:
    """The model's own linear probe (logistic regression on the texture columns of the same vectors and
    training split, the second opinion its AI verdicts need) on the test split: a baseline the head
    should beat."""
    from faceaudit.head.thresholds import Thresholds, decide
    from faceaudit.head.uncertainty import Prediction

    test = data.originals_in("test")
    p = model.probe.p_ai(model.project(data.X[test]))
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
    max_real_called_ai_per_source: Rate = Bounds.real_called_ai_per_source,
    max_ood_flagged: Rate = Bounds.ood_flagged,
    max_real_held_back: Rate = Bounds.real_held_back,
    max_ai_held_back: Rate = Bounds.ai_held_back,
    samples: Samples = DEFAULT_SAMPLES,
    head_params: dict | None = None,
    augment: bool = True,
    views: ViewCount = DEFAULT_VIEWS,
    view_directions: Directions = DEFAULT_DIRECTIONS,
    folds: bool = True,
    robustness: bool = True,
) -> dict:
    """Embed what is missing, split by hash, train, calibrate, set thresholds, test, measure the
    left-out folds, write the model.

    Args:
        data_dir: Labelled folder: real*/ and ai*/fake*/ subfolders per source.
        model_out: Folder to write the model into.
        store_dir: Feature store; images already in it are not embedded again.
        head: 'mc-dropout' (MC-dropout MLP) or 'pyro-vi' (Pyro SVI).
        backbone: 'dinov2-s14' (built in), a local transformers folder, or a hub id.
        preprocess: 'scale', 'crop', 'resize', 'face' or 'scale-face'.
        pooling: 'cls', 'mean', 'cls+mean', 'cls+mean+std', 'cls+mean+std+texture' or
            'cls+mean+std+zoom' (the default).
        layers: Layers to pool; empty for 1/3, 1/2 and 2/3 of the depth.
        batch_size: Images per forward pass of the backbone.
        workers: Processes decoding images ahead of the backbone.
        max_real_called_ai: Bound on the share of validation real faces called AI.
        max_ai_called_real: Bound on the share of validation AI faces called real.
        max_real_called_ai_per_source: The same bound within any one real source.
        max_ood_flagged: Share of validation images the OOD threshold may flag.
        max_real_held_back: Share of validation real photos a `real` verdict may be refused for looking
            like none of the known real collections.
        max_ai_held_back: Share of validation AI faces an `ai_generated` verdict may be refused for the
            linear probe disagreeing.
        samples: Monte Carlo samples per prediction.
        head_params: Hyperparameters of the head, over its defaults.
        augment: Train on augmented (restyled, rescaled, re-encoded) views too.
        views: Augmented views per training image.
        view_directions: Directions the augmented views move vectors along, projected out of every
            vector before anything is fitted (head/projection.py); 0, or no views, for none.
        folds: Also train once per family and per real collection left out, and report how each is judged.
        robustness: Also judge rescaled copies of the test split and report how often verdicts hold.
    """
    check_head_params(head, head_params or {})
    spec = make_spec(backbone, preprocess, pooling, tuple(layers or ()))
    augmentation = Augmentation() if augment and views > 0 else None
    data = load_labelled(data_dir, spec, store_dir, batch_size, workers, augmentation, views)
    bounds = Bounds(
        real_called_ai=max_real_called_ai,
        ai_called_real=max_ai_called_real,
        real_called_ai_per_source=max_real_called_ai_per_source,
        ood_flagged=max_ood_flagged,
        real_held_back=max_real_held_back,
        ai_held_back=max_ai_held_back,
    )

    info = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "faceaudit_version": code_version(),
        "embedding": {**spec.provenance(), "describe": spec.describe()},
        "training_data": {
            "folder": str(data_dir),
            "sha256": data.data_hash(),
            "counts": data.counts(),
            "families": data.describe_families(),
        },
        "augmentation": {"spec": augmentation.describe(), "views": views} if augmentation else None,
        "abstention": {"fitted_on": "validation", "bounds": bounds.describe()},
    }
    params = head_params or {}
    reads = texture_columns_of(spec)
    model, report = call(fit_head, data, head, params, bounds, samples, info, reads, view_directions)
    left_out = {}
    if folds:
        for kind, key in FOLD_KINDS.items():
            if kind == "source":
                continue  # families and collections answer the user's question; `evaluate` has sources
            fold_report = run_folds(data, kind, head, params, bounds, samples, reads, model.view_directions)
            if fold_report is not None:
                left_out[key] = fold_report
    if left_out:
        # The OOD threshold is for what is not a face photo: faces of a family or collection never
        # trained on (the folds' left-out images) are flagged at most 1% of the time.
        floor = max(block["summary"]["left_out_ood_p99"] for block in left_out.values())
        val = data.originals_in("val")
        report["uncertain_band_on_validation"] = fit_band(
            model, data.X[val], data.y[val], data.groups[val], bounds, floor
        )
        report["ood_floor_from_folds"] = floor
    test = data.originals_in("test")
    scores = model.score(data.X[test])
    metrics = {
        "split": "test",
        **metrics_by_group(data.y[test], scores.prediction, scores.verdict, data.groups[test]),
        "linear_probe": linear_probe(model, data),
        "validation": report,
        "families": data.describe_families(),
        **left_out,
    }
    if robustness:
        metrics["perturbations"] = perturbation_metrics(
            model, spec, data.subset(test), scores.verdict, ROBUSTNESS, batch_size
        )
    model.info["metrics"] = _headline(metrics)
    out = Path(model_out)
    model.save(out)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    write_model_card(out, json.loads((out / "model.json").read_text()), metrics, data_dir)
    write_plots(out / "plots", data.y[test], scores.prediction, scores.verdict, model.head.history_, "(test)")
    for key in FOLD_KINDS.values():
        if key in metrics:
            write_folds_plot(out / "plots", metrics[key], key)
    return {"model": str(out), "metrics": model.info["metrics"], "unreadable": data.embed_summary.unreadable}


def _headline(metrics: dict) -> dict:
    keys = (
        "accuracy",
        "roc_auc",
        "ece",
        "coverage",
        "selective_accuracy",
        "real_called_ai_rate",
        "ai_called_real_rate",
        "mutual_info_auroc_wrong",
    )
    out = {k: metrics[k] for k in keys}
    out["groups"] = {g: {k: m[k] for k in ("accuracy", "roc_auc", "n")} for g, m in metrics["groups"].items()}
    out["linear_probe_accuracy"] = metrics["linear_probe"]["accuracy"]
    for key in FOLD_KINDS.values():
        if key in metrics:
            out[key] = metrics[key]["summary"]
    return out
