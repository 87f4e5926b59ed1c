"""Nightly runs: score every dump folder that has no complete report yet, or whose files changed.

One report folder per dump under REPORTS_ROOT, one store shared by all, so nothing is embedded twice.
`serve` registers this flow as a Prefect deployment on a cron schedule and keeps serving it.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from flows.embed_flow import scan_folder
from flows.models import resolve_model
from flows.orchestration import call
from flows.score_flow import input_manifest, score_flow
from flows.scoring import model_id


def is_up_to_date(report: Path, manifest: str, model: str) -> bool:
    """A complete report for exactly these files and this model already exists."""
    try:
        run = json.loads((report / "run.json").read_text())
    except (OSError, ValueError):
        return False
    complete = (report / "verdicts.csv").is_file() and (report / "report.html").is_file()
    return complete and run.get("input_sha256") == manifest and run.get("model", {}).get("id") == model


@flow(name="nightly", log_prints=True)
def nightly_flow(
    dumps_root: str,
    reports_root: str,
    store_dir: str,
    model_dir: str | None = None,
    explain: str = "flagged",
    samples: int | None = None,
) -> dict:
    """Score the dumps under `dumps_root` that need it; returns what was scored and what was skipped."""
    root = Path(dumps_root)
    dumps = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    ident = model_id(resolve_model(model_dir))
    done: dict = {"scored": {}, "up_to_date": []}
    for dump in dumps:
        report = Path(reports_root) / dump.name
        if is_up_to_date(report, input_manifest(call(scan_folder, str(dump))), ident):
            done["up_to_date"].append(dump.name)
            continue
        run = call(score_flow, str(dump), str(report), store_dir, model_dir, explain, samples)
        done["scored"][dump.name] = run["counts"]
        print(f"{dump.name}: {run['counts']} -> {report / 'report.html'}")
    return done
