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

from data.decode import decode_image
from data.version import code_version
from embed.store import FeatureStore
from flows.defaults import EXPLAIN_CHOICES, EXPLAIN_METHODS
from flows.embed_flow import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, embed_records, scan_folder
from flows.models import resolve_model, spec_of
from flows.orchestration import call
from flows.outputs import csv_lines, json_text, output_lock, write_atomic
from flows.progress import progress_bar
from flows.report import write_report
from head.model import CARD_FILE, WEIGHTS_FILE, FaceauditModel

PREDICT_CHUNK = 2048  # images whose vectors are scored together

COLUMNS = [
    "path",
    "sha256",
    "verdict",
    "p_ai",
    "p_ai_std",
    "entropy",
    "mutual_info",
    "ood_score",
    "occlusion_map",
    "faithfulness",
    "gradient_map",
    "gradient_faithfulness",
    "error",
    "model_id",
    "scored_at",
]


def input_manifest(records) -> str:
    """sha256 over every file's relative path and content hash (or error): changes when the dump does."""
    lines = sorted(f"{r.rel}\0{r.sha256 or ''}\0{r.error or ''}" for r in records)
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def model_id(folder: Path) -> str:
    """Short content hash of a model's weights and card: names the exact model in every row."""
    digest = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes())
    digest.update((folder / CARD_FILE).read_bytes())
    return digest.hexdigest()[:16]


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
    folder = resolve_model(model_dir)
    model = FaceauditModel.load(folder)
    spec = spec_of(model)
    ident = model_id(folder)
    records = call(scan_folder, str(input_dir))
    embed_summary = embed_records(records, spec, store_dir, batch_size, workers)
    timings = {"embed_s": round(time.perf_counter() - started, 3)}

    readable = [r for r in records if r.ok]
    unique = list(dict.fromkeys(r.sha256 for r in readable))
    rows_by_hash: dict[str, dict] = {}
    store = FeatureStore(store_dir, spec.fingerprint)
    for start in range(0, len(unique), PREDICT_CHUNK):  # in chunks: memory stays flat however big the dump
        chunk = unique[start : start + PREDICT_CHUNK]
        scores = model.score(store.get(chunk), samples)
        p = scores.prediction
        for i, digest in enumerate(chunk):
            rows_by_hash[digest] = {
                "verdict": str(scores.verdict[i]),
                "p_ai": round(float(p.p_ai[i]), 6),
                "p_ai_std": round(float(p.p_ai_std[i]), 6),
                "entropy": round(float(p.entropy[i]), 6),
                "mutual_info": round(float(p.mutual_info[i]), 6),
                "ood_score": round(float(scores.ood_score[i]), 6),
            }
    timings["predict_s"] = round(time.perf_counter() - started - timings["embed_s"], 3)

    out = Path(out_dir)
    maps = _explain(
        readable, rows_by_hash, explain, methods, model, spec, ident, out, samples, occlusion_baseline
    )
    timings["explain_s"] = round(time.perf_counter() - started - timings["embed_s"] - timings["predict_s"], 3)

    rows = []
    for record in records:
        row = {"path": record.rel, "sha256": record.sha256 or "", "model_id": ident, "scored_at": scored_at}
        if record.ok:
            row.update(rows_by_hash[record.sha256])
            drawn = maps.get(record.sha256, {})
            row["occlusion_map"], row["faithfulness"] = drawn.get("occlusion", ("", ""))
            row["gradient_map"], row["gradient_faithfulness"] = drawn.get("gradient", ("", ""))
            row["error"] = ""
        else:
            row.update({column: "" for column in COLUMNS[3:-3]}, verdict="unreadable", error=record.error)
        rows.append(row)
    counts = {
        v: sum(1 for r in rows if r["verdict"] == v)
        for v in ("ai_generated", "real", "uncertain", "unreadable")
    }
    run = {
        "input_dir": str(input_dir),
        "out_dir": str(out),
        "files": len(rows),
        "input_sha256": input_manifest(records),
        "counts": counts,
        "newly_embedded": embed_summary.new,
        "model": {
            "id": ident,
            "folder": str(folder),
            "head": model.head.kind,
            "trained": model.info.get("created_at"),
            "training_data_sha256": model.info.get("training_data", {}).get("sha256"),
        },
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


def _explain(
    readable, rows_by_hash, explain, methods, model, spec, ident, out: Path, samples, baseline: str
) -> dict:
    """Draw maps for the chosen images; returns {hash: {method: (relative map path, faithfulness)}}."""
    if explain == "none":
        return {}
    wanted = {}
    for record in readable:
        verdict = rows_by_hash[record.sha256]["verdict"]
        if explain == "all" or verdict in ("ai_generated", "uncertain"):
            wanted.setdefault(record.sha256, record)
    done: dict[str, dict[str, tuple[str, str]]] = {}
    todo = []
    for digest, record in wanted.items():
        for method in methods:
            name = method if method == "gradient" else f"{method}-{baseline}"
            rel = f"maps/{digest[:16]}-{ident[:8]}-{name}.png"
            note = out / (rel + ".json")
            if (out / rel).is_file() and note.is_file():  # already drawn for this image and model
                done.setdefault(digest, {})[method] = (rel, note.read_text().strip())
            else:
                todo.append((digest, record, method, rel))
    if not todo:
        return done
    from explain.render import render_map
    from flows.explaining import Explainer, GradientExplainer

    occlusion = Explainer(model, spec, baseline=baseline, samples=samples)
    explainers = {"occlusion": occlusion, "gradient": GradientExplainer(occlusion)}
    with progress_bar("explaining", total=len(todo)) as advance:
        for digest, record, method, rel in todo:
            fitted, result = explainers[method].explain(decode_image(record.path.read_bytes()))
            render_map(fitted, result, out / rel, rows_by_hash[digest]["verdict"])
            faith = "" if result.faithfulness is None else f"{result.faithfulness:.6f}"
            write_atomic(out / (rel + ".json"), faith)
            done.setdefault(digest, {})[method] = (rel, faith)
            advance(1)
    return done
