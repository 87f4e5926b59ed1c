"""The `score` flow: a folder in, one verdict per file out, with maps for the images that matter.

Writes into OUT: verdicts.csv, run.json, maps/*.png and report.html, each complete or not at all.
Only images the store lacks are embedded; maps already drawn for the same image and model are kept.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow

from data.version import code_version
from flows.defaults import EXPLAIN_CHOICES, EXPLAIN_METHODS
from flows.embed_flow import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, scan_folder
from flows.orchestration import call
from flows.outputs import csv_lines, json_text, output_lock, write_atomic
from flows.report import write_report
from flows.scoring import COLUMNS, Scorer
from head.thresholds import VERDICTS


def input_manifest(records) -> str:
    """sha256 over every file's relative path and content hash (or error): changes when the dump does."""
    lines = sorted(f"{r.rel}\0{r.sha256 or ''}\0{r.error or ''}" for r in records)
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


@flow(name="score", log_prints=True)
def score_flow(
    input_dir: str,
    out_dir: str,
    store_dir: str,
    model_dir: str | None = None,
    explain: str = "flagged",
    samples: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = DEFAULT_WORKERS,
    explain_method: str = "occlusion",
    occlusion_baseline: str = "blur",
) -> dict:
    """Score every file under `input_dir`; returns run.json's content."""
    if explain not in EXPLAIN_CHOICES:
        raise ValueError(f"--explain must be one of {', '.join(EXPLAIN_CHOICES)}, not {explain!r}")
    if explain_method not in EXPLAIN_METHODS:
        raise ValueError(
            f"--explain-method must be one of {', '.join(EXPLAIN_METHODS)}, not {explain_method!r}"
        )
    with output_lock(Path(out_dir)):
        return _score(
            input_dir,
            out_dir,
            store_dir,
            model_dir,
            explain,
            samples,
            batch_size,
            workers,
            explain_method,
            occlusion_baseline,
        )


def _score(
    input_dir: str,
    out_dir: str,
    store_dir: str,
    model_dir: str | None,
    explain: str,
    samples: int | None,
    batch_size: int,
    workers: int,
    explain_method: str,
    occlusion_baseline: str,
) -> dict:
    """The body of `score_flow`, run while this process holds the output folder."""
    methods = ("occlusion", "gradient") if explain_method == "both" else (explain_method,)
    started = time.perf_counter()
    scored_at = datetime.now(UTC).isoformat(timespec="seconds")
    scorer = Scorer.load(model_dir)
    records = call(scan_folder, str(input_dir))
    embed_summary = scorer.embed(records, store_dir, batch_size, workers)
    timings = {"embed_s": round(time.perf_counter() - started, 3)}

    readable = [r for r in records if r.ok]
    predicted = scorer.predict(list(dict.fromkeys(r.sha256 for r in readable)), store_dir, samples)
    timings["predict_s"] = round(time.perf_counter() - started - timings["embed_s"], 3)

    out = Path(out_dir)
    maps = scorer.draw_maps(readable, predicted, explain, methods, out, samples, occlusion_baseline)
    timings["explain_s"] = round(time.perf_counter() - started - timings["embed_s"] - timings["predict_s"], 3)

    rows = scorer.rows(records, predicted, maps, scored_at)
    model = scorer.model
    run = {
        "input_dir": str(input_dir),
        "out_dir": str(out),
        "files": len(rows),
        "input_sha256": input_manifest(records),
        "counts": {v: sum(1 for r in rows if r["verdict"] == v) for v in VERDICTS},
        "newly_embedded": embed_summary.new,
        "model": scorer.describe(),
        "embedding": {k: v for k, v in model.info["embedding"].items() if k != "describe"},
        "thresholds": model.thresholds.describe(),
        "calibration": model.calibrator.describe(),
        "samples": samples or model.n_samples,
        "explain": explain,
        "explain_method": explain_method,
        "occlusion_baseline": occlusion_baseline,
        "scored_at": scored_at,
        "faceaudit_version": code_version(),
        "timings": {**timings, "total_s": round(time.perf_counter() - started, 3)},
    }
    # run.json goes last: it names what the other two hold, so `nightly` trusts them only once it is there.
    write_report(out / "report.html", rows, run, records)
    write_atomic(out / "verdicts.csv", csv_lines(COLUMNS, rows))
    write_atomic(out / "run.json", json_text(run))
    return run
