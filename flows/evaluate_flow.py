"""The `evaluate` flow: a model on any labelled folder, overall and per group, and under perturbations."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from data.decode import decode_image
from embed.runner import embed_images, shared_embedder
from flows.embed_flow import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
from flows.labelled import DataError, load_labelled
from flows.models import resolve_model, spec_of
from flows.perturb import parse_perturbations
from flows.progress import progress_bar
from head.metrics import metrics_by_group
from head.model import FaceauditModel
from head.plots import write_plots


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    data_dir: str,
    out_dir: str,
    store_dir: str,
    model_dir: str | None = None,
    split: str = "all",
    perturb: str | None = None,
    samples: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = DEFAULT_WORKERS,
) -> dict:
    """Score every labelled image (or one hash split) and write metrics.json and plots into `out_dir`."""
    perturbations = parse_perturbations(perturb)
    model = FaceauditModel.load(resolve_model(model_dir))
    spec = spec_of(model)
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
                    images.append(apply(decode_image(record.path.read_bytes())))
                    advance(1)
            X = embed_images(images, spec, embedder, batch_size)
            perturbed = model.score(X, samples)
            metrics["perturbations"][name] = metrics_by_group(
                data.y, perturbed.prediction, perturbed.verdict, data.groups
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {
        "out": str(out),
        "accuracy": metrics["accuracy"],
        "n": metrics["n"],
        "groups": {g: m["accuracy"] for g, m in metrics["groups"].items()},
        "perturbations": {k: v["accuracy"] for k, v in metrics.get("perturbations", {}).items()},
    }
