"""The `evaluate` flow: a model on any labelled folder, overall and per group, under perturbations, and
its recipe retrained once per generator family, real collection or source left out, judged on what it
left out (flows/folds.py)."""

import json
from pathlib import Path

from prefect import flow

from faceaudit.data.atomic import write_text
from faceaudit.embed.augment import Augmentation
from faceaudit.flows.defaults import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, EvalSplit
from faceaudit.flows.folds import FOLD_KINDS, run_folds, texture_columns_of
from faceaudit.flows.labelled import DataError, LabelledSet, load_labelled
from faceaudit.flows.models import resolve_model, spec_of
from faceaudit.flows.params import BatchSize, Samples, Workers
from faceaudit.flows.perturb import parse_perturbations, perturbation_metrics
from faceaudit.head.metrics import metrics_by_group
from faceaudit.head.model import FaceauditModel
from faceaudit.head.plots import write_folds_plot, write_plots
from faceaudit.head.thresholds import Bounds


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    data_dir: str,
    out_dir: str,
    store_dir: str,
    model_dir: str | None = None,
    split: EvalSplit = "all",
    perturb: str | None = None,
    samples: Samples | None = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    workers: Workers = DEFAULT_WORKERS,
    leave_one_source_out: bool = False,
    leave_one_family_out: bool = False,
    leave_one_real_collection_out: bool = False,
) -> dict:
    """Score every labelled image (or one hash split) and write metrics.json and plots into `out_dir`;
    with a leave-one-out choice, retrain the model's recipe per fold instead.

    Args:
        data_dir: Labelled folder to evaluate on.
        out_dir: Folder for metrics.json and plots.
        store_dir: Feature store; images already in it are not embedded again.
        model_dir: Model folder; empty for the built-in model.
        split: 'all', or only one hash split: 'train', 'val', 'test'.
        perturb: Also evaluate perturbed copies, e.g. jpeg:75,resize:0.5,blur:1.
        samples: Monte Carlo samples per image; empty for the model's own number.
        batch_size: Images per forward pass of the backbone.
        workers: Processes decoding images ahead of the backbone.
        leave_one_source_out: Retrain the recipe once per source left out and judge that source.
        leave_one_family_out: Retrain once per generator family left out and judge that family.
        leave_one_real_collection_out: Retrain once per real collection left out and judge it.
    """
    perturbations = parse_perturbations(perturb)
    model = FaceauditModel.load(resolve_model(model_dir))
    spec = spec_of(model)
    kinds = [
        kind
        for kind, asked in (
            ("family", leave_one_family_out),
            ("collection", leave_one_real_collection_out),
            ("source", leave_one_source_out),
        )
        if asked
    ]
    if kinds:
        return _left_out(
            model, str(resolve_model(model_dir)), data_dir, out_dir, store_dir, kinds, batch_size, workers
        )
    data = load_labelled(data_dir, spec, store_dir, batch_size, workers)
    if split != "all":
        data = data.subset(data.splits == split)
        if len(data.y) == 0:
            raise DataError(f"no labelled images of {data_dir} fall in the {split!r} split")
    scores = model.score(data.X, samples)
    metrics = {
        "model": str(resolve_model(model_dir)),
        "split": split,
        **metrics_by_group(data.y, scores.prediction, scores.verdict, data.groups),
    }
    out = Path(out_dir)
    write_plots(out / "plots", data.y, scores.prediction, scores.verdict, title=f"({split})")
    if perturbations:
        metrics["perturbations"] = perturbation_metrics(
            model, spec, data, scores.verdict, perturbations, batch_size, samples
        )
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return {
        "out": str(out),
        "accuracy": metrics["accuracy"],
        "n": metrics["n"],
        "groups": {g: m["accuracy"] for g, m in metrics["groups"].items()},
        "perturbations": {k: v["accuracy"] for k, v in metrics.get("perturbations", {}).items()},
    }


def _left_out(
    model: FaceauditModel,
    model_path: str,
    data_dir: str,
    out_dir: str,
    store_dir: str,
    kinds: list[str],
    batch_size: int,
    workers: int,
) -> dict:
    """Retrain the model's recipe (head, embedding, augmentation, projection, bounds) once per fold of
    each kind."""
    recipe = model.info.get("augmentation") or {}
    augmentation = Augmentation.from_description(recipe["spec"]) if recipe else None
    spec = spec_of(model)
    data: LabelledSet = load_labelled(
        data_dir, spec, store_dir, batch_size, workers, augmentation, int(recipe.get("views", 0))
    )
    bounds = Bounds(**(model.info.get("abstention") or {}).get("bounds", {}))
    metrics: dict = {"model": model_path, "families": data.describe_families()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The probe's recipe too: a model whose probe read the whole vector is retrained that way.
    columns = texture_columns_of(spec) if model.probe is not None and model.probe.reads == "texture" else None
    params = model.head.get_params()
    for kind in kinds:
        report = run_folds(
            data, kind, model.head.kind, params, bounds, model.n_samples, columns, model.view_directions
        )
        if report is None:
            raise DataError(
                f"no {kind} of {data_dir} can be left out with both classes in the rest "
                "(folders SOURCE/real and SOURCE/ai; families in families.json)"
            )
        metrics[FOLD_KINDS[kind]] = report
        write_folds_plot(out / "plots", report, FOLD_KINDS[kind])
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    reports = {key: block for key, block in metrics.items() if key in FOLD_KINDS.values()}
    return {"out": str(out), "n": int((data.view == 0).sum()), **reports}
