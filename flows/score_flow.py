"""The `score` flow: a folder in, one verdict per file out, with maps for the images that matter.

It runs as named tasks, so the Prefect UI shows each step, its time and its retries:
scan-folder -> embed-new-images -> predict -> find-faces -> draw-maps -> write-outputs. Tasks pass
paths, hashes and small dicts, never arrays; the model is loaded once per process (`Scorer.cached`).

Writes into OUT: verdicts.csv, verdicts.jsonl, run.json, maps/*.png and report.html, each complete or not
at all. Only images the store lacks are embedded; maps already drawn for the same image and model are kept,
so a retried or re-run map task resumes where it stopped.
"""

import contextlib
import hashlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from faceaudit.data.atomic import write_text
from faceaudit.data.nofollow import UnsafePath, read_json, refuse_link
from faceaudit.data.records import ImageRecord
from faceaudit.data.text import display_name
from faceaudit.data.version import code_version
from faceaudit.embed.face_cells import PictureCells, opencv_version
from faceaudit.embed.faces import FACE_CHECK, FOUND, NONE
from faceaudit.explain.baselines import DEFAULT_BASELINE, OcclusionBaseline
from faceaudit.flows.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EXPLAIN,
    DEFAULT_EXPLAIN_METHOD,
    DEFAULT_WORKERS,
    Explain,
    ExplainMethod,
)
from faceaudit.flows.embed_flow import scan_folder
from faceaudit.flows.orchestration import EXPECTED_FAILURES, call, failed_state, in_flow_run
from faceaudit.flows.outputs import csv_lines, json_text, jsonl_lines, output_lock
from faceaudit.flows.params import BatchSize, Samples, Workers
from faceaudit.flows.report import write_report
from faceaudit.flows.run_log import (
    OOD_WARNING_SHARE,
    STALE_MODEL_DAYS,
    log_unreadable,
    publish_artifacts,
    run_logger,
)
from faceaudit.flows.scoring import (
    COLUMNS,
    NO_MAPS,
    Maps,
    Scorer,
    images_to_map,
    picture_cells,
    smaller_than_input,
)
from faceaudit.head.thresholds import VERDICTS

# What a run writes into OUT; none of them may be a symlink.
OUTPUT_NAMES = ("verdicts.csv", "verdicts.jsonl", "run.json", "report.html", "maps")

# A bound only a stalled step reaches: ~25x the measured cost of a map (about 1.8 s) on 2 cores.
MAP_TIMEOUT_S = (300, 45.0)  # base, per map to draw


def input_manifest(records: list[ImageRecord]) -> str:
    """sha256 over every file's relative path and content hash (or error): changes when the dump does."""
    lines = sorted(f"{r.rel}\0{r.sha256 or ''}\0{r.error or ''}" for r in records)
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def refuse_planted_links(out: Path) -> None:
    """Refuse, before any work, an output name or a map in OUT that is a symlink, or an output file
    that is a folder: a run would write through it at its end, fail there after all the work, or take
    a linked map for one it drew and show it in the report."""
    for name in OUTPUT_NAMES:
        refuse_link(out / name)
        if name != "maps" and (out / name).is_dir():
            raise UnsafePath(f"{out / name} is a folder; move it away so the run can write its {name}")
    if (out / "maps").exists() and not (out / "maps").is_dir():
        raise UnsafePath(f"{out / 'maps'} is not a folder; move it away so the run can draw its maps")
    if (out / "maps").is_dir():
        for entry in os.scandir(out / "maps"):
            refuse_link(Path(entry.path))


class InputGone(ValueError):
    """The folder to score is not there (deleted, or replaced by a file, after the run was asked for)."""


def check_separate(input_dir: Path, out: Path, store: Path) -> None:
    """Refuse an OUT or a store that is the input folder itself: every run would score the files the
    last one wrote (OUT or the store inside INPUT_DIR is fine: the scan leaves them out)."""
    if not input_dir.is_dir():
        raise InputGone(f"{display_name(input_dir)} is not a folder (deleted, or replaced by a file)")
    for path, what in ((out, "the output folder"), (store, "the store")):
        if path.exists() and os.path.samefile(path, input_dir):
            raise ValueError(
                f"{what} {display_name(path)} is the input folder itself: its files would be scored on the "
                "next run; choose a folder beside it or inside it"
            )


def seconds_since(started: float, less: float = 0.0) -> float:
    """Seconds since `started` less the steps already counted, to the millisecond; never -0.0 (a step
    that took no time rounds to 0.0)."""
    return max(0.0, round(time.perf_counter() - started - less, 3)) + 0.0


def embedding_record(embedding: dict) -> dict:
    """The model card's embedding as run.json records it: preprocessing and pooling as the objects they
    are (the card keeps them as the JSON text stored beside each vector), without the long description."""
    record = {}
    for key, value in embedding.items():
        if key == "describe":
            continue
        if key in ("preprocess", "pooling") and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        record[key] = value
    return record


def recorded_run() -> dict:
    """The Prefect flow run's id and UI address, for a recorded run (nothing for an in-process one)."""
    if not in_flow_run():
        return {}
    from prefect.runtime import flow_run

    return {"prefect": {"flow_run_id": str(flow_run.id), "flow_run_url": flow_run.ui_url}}


def current_run(out: Path, manifest: str, model: str, parameters: dict) -> dict | None:
    """run.json of a complete report for exactly these files, this model and these output `parameters`
    (run.json's keys that decide what a report holds: explain, its method and baseline, samples), in
    this version's columns, if OUT holds one. A report an older faceaudit wrote with other columns
    (before the `face` column, say) is not current: `nightly` scores its dump again."""
    try:
        run = read_json(out / "run.json")  # a regular file only: a FIFO there must not hang the run
    except (UnsafePath, OSError, ValueError, RecursionError):
        return None
    if not isinstance(run, dict) or not isinstance(run.get("model"), dict):
        return None
    complete = all((out / name).is_file() for name in ("verdicts.csv", "verdicts.jsonl", "report.html"))
    same = (
        run.get("input_sha256") == manifest
        and run.get("model", {}).get("id") == model
        and all(run.get(key) == value for key, value in parameters.items())
        and run.get("columns") == COLUMNS
    )
    return run if complete and same else None


def _run_name() -> str:
    from prefect.runtime import flow_run

    return f"score {display_name(Path(flow_run.parameters['input_dir']).name)}"


@task(name="predict", cache_policy=NO_CACHE, timeout_seconds=3600)
def predict(
    model_dir: str | None, model: str, hashes: list[str], store_dir: str, samples: int | None
) -> dict[str, dict]:
    """Verdict and figures per image hash, from the stored vectors, by the run's model (its id)."""
    return Scorer.of_run(model_dir, model).predict(hashes, store_dir, samples)


@task(name="find-faces", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def find_faces(readable: list[ImageRecord], store_dir: str) -> dict[str, PictureCells]:
    """Whether each readable image shows a face, and its size (the `face`, `width` and `height`
    columns): read from the pictures, not the model, so they change no verdict; kept in the store, so
    a picture is searched once."""
    return picture_cells(readable, store_dir)


@task(name="draw-maps", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def draw_maps(
    model_dir: str | None,
    model: str,
    readable: list[ImageRecord],
    predicted: dict[str, dict],
    explain: str,
    methods: tuple[str, ...],
    out_dir: str,
    samples: int | None,
    baseline: str,
) -> Maps:
    """Maps for the chosen images by the run's model (its id); a retry keeps the maps already drawn."""
    scorer = Scorer.of_run(model_dir, model)
    return scorer.draw_maps(readable, predicted, explain, methods, Path(out_dir), samples, baseline)


@task(name="write-outputs", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def write_outputs(out_dir: str, rows: list[dict], run: dict, records: list[ImageRecord]) -> None:
    """report.html, verdicts.csv and verdicts.jsonl, then run.json last: it names what the others
    hold, so `nightly` trusts them only once it is there."""
    out = Path(out_dir)
    write_report(out / "report.html", rows, run, records)
    write_text(out / "verdicts.csv", csv_lines(COLUMNS, rows))
    write_text(out / "verdicts.jsonl", jsonl_lines(COLUMNS, rows))
    write_text(out / "run.json", json_text(run))


@flow(name="score", flow_run_name=_run_name, log_prints=True)
def score_flow(
    input_dir: str,
    out_dir: str,
    store_dir: str,
    model_dir: str | None = None,
    explain: Explain = DEFAULT_EXPLAIN,
    samples: Samples | None = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    workers: Workers = DEFAULT_WORKERS,
    explain_method: ExplainMethod = DEFAULT_EXPLAIN_METHOD,
    occlusion_baseline: OcclusionBaseline = DEFAULT_BASELINE,
    only_if_changed: bool = False,
) -> dict:
    """Score every file under `input_dir`; returns run.json's content.

    `only_if_changed`: when OUT already holds a complete report for exactly these files, this model
    and these output parameters (explain, its method and baseline, samples), keep it and return it with
    "up_to_date": true (what `nightly` asks for); a recorded run then ends Completed with that message.

    Args:
        input_dir: Folder of images to judge, walked recursively.
        out_dir: Folder for verdicts.csv, verdicts.jsonl, run.json, maps/ and report.html.
        store_dir: Feature store; images already in it are not embedded again.
        model_dir: Model folder; empty for the built-in model.
        explain: Maps for 'flagged' images (ai_generated and uncertain), 'all' or 'none'.
        samples: Monte Carlo samples per image; empty for the model's own number.
        batch_size: Images per forward pass of the backbone.
        workers: Processes decoding images ahead of the backbone.
        explain_method: 'occlusion', 'gradient' or 'both'.
        occlusion_baseline: What hides a window in an occlusion map: 'blur' or 'mean'.
        only_if_changed: Keep a report that is current instead of scoring again.
    """
    try:
        check_separate(Path(input_dir), Path(out_dir), Path(store_dir))
        with output_lock(Path(out_dir)):
            refuse_planted_links(Path(out_dir))
            run = _score(
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
                only_if_changed,
            )
    except EXPECTED_FAILURES as exc:
        if not in_flow_run():
            raise
        return failed_state(exc)  # a reason, not a traceback, in Prefect's logs and UI
    if run.get("up_to_date") and in_flow_run():  # the run's state says so in Prefect's UI and API
        from prefect.states import Completed

        return Completed(message=run["message"], data=run)
    return run


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
    only_if_changed: bool,
) -> dict:
    """The body of `score_flow`, run while this process holds the output folder."""
    logger = run_logger()
    methods = ("occlusion", "gradient") if explain_method == "both" else (explain_method,)
    started = time.perf_counter()
    scored_at = datetime.now(UTC).isoformat(timespec="seconds")
    scorer = Scorer.cached(model_dir)
    out = Path(out_dir)
    shown = display_name(str(input_dir))  # for log lines: valid text whatever the folder's bytes
    records = call(scan_folder, str(input_dir), (str(out), str(store_dir)))  # never score our own files
    if len(records) == 1 and records[0].rel == "." and records[0].error:
        raise InputGone(f"{shown}: {records[0].error} (deleted or replaced while the run started?)")
    manifest = input_manifest(records)
    parameters = {
        "explain": explain,
        "explain_method": explain_method,
        "occlusion_baseline": occlusion_baseline,
        "samples": samples or scorer.model.n_samples,
    }
    if only_if_changed and (kept := current_run(out, manifest, scorer.ident, parameters)) is not None:
        message = f"report up to date ({kept['files']} files, model {scorer.ident}, same parameters)"
        logger.info("%s: %s", shown, message)
        return {**kept, "up_to_date": True, "message": message}
    logger.info("%s: %d files found; model %s", shown, len(records), scorer.ident)

    embed_summary = scorer.embed(records, store_dir, str(input_dir), batch_size, workers)
    timings = {"embed_s": seconds_since(started)}
    logger.info(
        "embedded %d new images (%d already stored) in %.1f s",
        embed_summary.new,
        embed_summary.already_stored,
        timings["embed_s"],
    )
    log_unreadable(embed_summary.unreadable)

    readable = [r for r in records if r.ok]
    hashes = list(dict.fromkeys(r.sha256 for r in readable))
    predicted = call(predict, model_dir, scorer.ident, hashes, store_dir, samples)
    if lost := {h for h in hashes if h not in predicted}:  # a store file found damaged while read
        logger.warning("%d vectors were in a damaged store file: embedding them again", len(lost))
        again = [r for r in readable if r.sha256 in lost]
        scorer.embed(again, store_dir, str(input_dir), batch_size, workers)
        predicted |= call(predict, model_dir, scorer.ident, sorted(lost), store_dir, samples)
        for record in again:
            if record.ok and record.sha256 not in predicted:
                record.error = "no readable vector could be stored for it"
        readable = [r for r in records if r.ok]
    timings["predict_s"] = seconds_since(started, timings["embed_s"])
    pictures = call(find_faces, readable, str(store_dir))
    timings["faces_s"] = seconds_since(started, timings["embed_s"] + timings["predict_s"])

    maps = NO_MAPS
    if explain != "none":
        wanted = len(images_to_map(readable, predicted, explain))
        limit = MAP_TIMEOUT_S[0] + MAP_TIMEOUT_S[1] * wanted * len(methods)
        maps = call(
            draw_maps,
            model_dir,
            scorer.ident,
            readable,
            predicted,
            explain,
            methods,
            str(out),
            samples,
            occlusion_baseline,
            timeout_s=limit,
        )
    log_unreadable([(r.rel, maps.failed[r.sha256]) for r in readable if r.sha256 in maps.failed])
    timings["explain_s"] = seconds_since(started, sum(timings.values()))

    rows = scorer.rows(records, predicted, maps, pictures, scored_at)
    model = scorer.model
    run = {
        "input_dir": str(input_dir),
        "out_dir": str(out),
        "files": len(rows),
        "input_sha256": manifest,
        "counts": {v: sum(1 for r in rows if r["verdict"] == v) for v in VERDICTS},
        "newly_embedded": embed_summary.new,
        "model": scorer.describe(),
        "embedding": embedding_record(model.info["embedding"]),
        "thresholds": model.thresholds.describe(),
        "calibration": model.calibrator.describe(),
        "faces": {
            "found": sum(1 for r in rows if r.get("face") == FOUND),
            "none": sum(1 for r in rows if r.get("face") == NONE),
            "check": FACE_CHECK,
            "opencv": opencv_version(),  # whose cascades the check ran
        },
        "small": small_pictures(rows, scorer.spec.preprocess.size),
        **parameters,
        "columns": COLUMNS,
        "scored_at": scored_at,
        "faceaudit_version": code_version(),
        "timings": {**timings, "total_s": seconds_since(started)},
        **recorded_run(),
    }
    call(write_outputs, str(out), rows, run, records)
    _warn_if_doubtful(rows, run, records, scorer)
    logger.info(
        "%s: %s in %.1f s -> %s",
        shown,
        ", ".join(f"{c} {v}" for v, c in run["counts"].items()),
        run["timings"]["total_s"],
        display_name(str(out / "report.html")),
    )
    publish_artifacts(str(input_dir), out, run, rows)
    return run


def small_pictures(rows: list[dict], input_px: int) -> dict:
    """How many judged pictures are under the backbone's input on their short side (run.json)."""
    return {"short_side_under_px": input_px, "count": sum(smaller_than_input(r, input_px) for r in rows)}


def _warn_if_doubtful(rows: list[dict], run: dict, records: list[ImageRecord], scorer: Scorer) -> None:
    """Warn when most of a dump is unlike the training data, or newer than the model by far."""
    logger = run_logger()
    judged = [r for r in rows if r["verdict"] != "unreadable"]
    ood = sum(1 for r in judged if r["uncertain_reason"] == "ood")
    if judged and ood / len(judged) > OOD_WARNING_SHARE:
        logger.warning(
            "%d of %d images (%.0f%%) are unlike anything the model was trained on: their verdicts are "
            "'uncertain'; a model trained on data like this dump would judge them",
            ood,
            len(judged),
            100 * ood / len(judged),
        )
    if faceless := run["faces"]["none"]:
        logger.info(
            "%d of %d pictures show no face the detector could find: their verdicts judged what they "
            "show (column 'face')",
            faceless,
            len(judged),
        )
    trained = scorer.model.info.get("created_at")
    newest = max((r.path.stat().st_mtime for r in records if r.ok and r.path.exists()), default=None)
    if trained and newest is not None:
        age = (datetime.fromtimestamp(newest, UTC) - datetime.fromisoformat(trained)).days
        if age > STALE_MODEL_DAYS:
            logger.warning(
                "the newest file is %d days newer than the model (trained %s): generators released since "
                "may be missed",
                age,
                trained[:10],
            )
