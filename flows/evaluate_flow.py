"""The `evaluate` flow: a model on any labelled folder, overall and per group, under perturbations, and
(`leave_one_source_out`) its recipe retrained once per source left out, judged on that source."""

import json
from pathlib import Path

import numpy as np
from prefect import flow

from data.atomic import write_text
from data.decode import UnreadableImage, decode_image
from data.records import read_scanned
from embed.augment import Augmentation
from embed.runner import embed_images, shared_embedder
from flows.defaults import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, EvalSplit
from flows.labelled import DataError, LabelledSet, load_labelled
from flows.loso import run_folds, unseen_report
from flows.models import resolve_model, spec_of
from flows.params import BatchSize, Samples, Workers
from flows.perturb import parse_perturbations
from flows.progress import progress_bar
from head.abstention import Bounds
from head.metrics import metrics_by_group
from head.model import FaceauditModel
from head.plots import write_plots, write_unseen_plot


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
) -> dict:
    """Score every labelled image (or one hash split) and write metrics.json and plots into `out_dir`."""
    perturbations = parse_perturbations(perturb)
    model = FaceauditModel.load(resolve_model(model_dir))
    spec = spec_of(model)
    if leave_one_source_out:
        return _leave_one_source_out(
            model, str(resolve_model(model_dir)), data_dir, out_dir, store_dir, batch_size, workers
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
        metrics["perturbations"] = {}
        embedder = shared_embedder(spec)
        for name, apply in perturbations:
            images = []
            with progress_bar(f"perturbed {name}", total=len(data.records)) as advance:
                for record in data.records:
                    try:
                        images.append(apply(decode_image(read_scanned(record))))
                    except UnreadableImage as exc:
                        raise DataError(f"{record.rel}: {exc}") from None
                    advance(1)
            X = embed_images(images, spec, embedder, batch_size)
            perturbed = model.score(X, samples)
            metrics["perturbations"][name] = metrics_by_group(
                data.y, perturbed.prediction, perturbed.verdict, data.groups
            )
            _add_agreement(metrics["perturbations"][name], scores.verdict, perturbed.verdict, data.groups)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return {
        "out": str(out),
        "accuracy": metrics["accuracy"],
        "n": metrics["n"],
        "groups": {g: m["accuracy"] for g, m in metrics["groups"].items()},
        "perturbations": {k: v["accuracy"] for k, v in metrics.get("perturbations", {}).items()},
    }


def _add_agreement(block: dict, before: np.ndarray, after: np.ndarray, groups: np.ndarray) -> None:
    """Share of images whose verdict is the same on the perturbed copy, overall and per group."""
    same = before == after
    block["verdict_agreement"] = float(same.mean())
    for name, group in block["groups"].items():
        group["verdict_agreement"] = float(same[groups == name].mean())


def _leave_one_source_out(
    model: FaceauditModel,
    model_path: str,
    data_dir: str,
    out_dir: str,
    store_dir: str,
    batch_size: int,
    workers: int,
) -> dict:
    """Retrain the model's recipe (head, embedding, augmentation, bounds) once per source left out."""
    recipe = model.info.get("augmentation") or {}
    augmentation = Augmentation.from_description(recipe["spec"]) if recipe else None
    data: LabelledSet = load_labelled(
        data_dir, spec_of(model), store_dir, batch_size, workers, augmentation, int(recipe.get("views", 0))
    )
    sources = sorted({str(g) for g in data.groups})
    if len(sources) < 2:
        raise DataError(
            f"{data_dir} holds one source ({sources[0]}); leaving one out needs two or more "
            "(folders SOURCE/real and SOURCE/ai)"
        )
    bounds = Bounds(**(model.info.get("abstention") or {}).get("bounds", {}))
    folds = run_folds(data, model.head.kind, model.head.get_params(), bounds, model.n_samples)
    if not folds:
        raise DataError(f"no source of {data_dir} can be left out with both classes in the rest")
    report = unseen_report(folds, bounds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_unseen_plot(out / "plots", report)
    metrics = {"model": model_path, "leave_one_source_out": report}
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return {"out": str(out), "n": int((data.view == 0).sum()), "leave_one_source_out": report}
