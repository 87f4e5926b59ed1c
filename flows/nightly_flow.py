"""Nightly runs: score every dump folder that has no complete report yet, or whose files changed.

One report folder per dump under REPORTS_ROOT, one store shared by all, so nothing is embedded twice.
Each dump is a `score` subflow run named after it; every dump is attempted even when one fails, and
the night ends Failed, naming each failed dump and why, only after all were tried. A dump whose report
folder another run holds is skipped (the run holding it is scoring it). `serve` and `deploy` put this
flow on a schedule.
"""

# No `from __future__ import annotations` in flow modules: a worker loads a flow from its file, and
# Prefect builds the parameter schema from annotations it must be able to evaluate there.
import os
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, tags

from faceaudit.data.atomic import write_text
from faceaudit.data.nofollow import UnsafePath, read_json
from faceaudit.data.text import display_name
from faceaudit.data.walk import identity
from faceaudit.flows.defaults import DEFAULT_EXPLAIN, Explain
from faceaudit.flows.orchestration import ResultLost, RunFailed, call_flow, failed_state, in_flow_run
from faceaudit.flows.outputs import OutputBusy, json_text
from faceaudit.flows.params import Samples
from faceaudit.flows.report import write_index
from faceaudit.flows.run_log import publish_failure, publish_night, run_logger
from faceaudit.flows.score_flow import score_flow


class NightFailed(RuntimeError):
    """Some dumps could not be scored; `done` holds what happened to every dump."""

    def __init__(self, done: dict) -> None:
        self.done = done
        failed = done["failed"]
        named = "; ".join(f"{name}: {reason}" for name, reason in failed.items())
        super().__init__(f"{len(failed)} of {done['dumps']} dumps failed: {named}")


def _run_name() -> str:
    from prefect.runtime import flow_run

    started = flow_run.scheduled_start_time or datetime.now(UTC)
    return f"nightly {display_name(Path(flow_run.parameters['dumps_root']).name)} {started:%Y-%m-%d %H:%M}"


def dump_folders(root: Path, skip: tuple[str, ...] = ()) -> tuple[list[Path], dict[str, str]]:
    """The dumps: visible subfolders of `root`, in name order (dates sort as they happened), less the
    folders in `skip` (the reports root and the store, should they lie under `root`); and the visible
    links to folders, by name, with why they are not followed (a dump reached through a link may be
    any folder on the machine, or another dump scored twice)."""
    skipped = {found for found in map(identity, skip) if found is not None}
    dumps, refused = [], {}
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not path.is_dir() or identity(path) in skipped:
            continue
        if path.is_symlink():
            refused[display_name(path.name)] = "a symlink to a folder; dumps are never reached through links"
        else:
            dumps.append(path)
    return dumps, refused


NIGHT_FILE = "night.json"  # REPORTS_ROOT's record of the last night: each dump and what happened to it


def report_run(report: Path, up_to_date: bool) -> dict:
    """A dump's run.json, as its score subflow would have returned it."""
    run = read_json(report / "run.json")
    return {**run, "up_to_date": True} if up_to_date else run


def last_night(reports_root: Path) -> dict | None:
    """REPORTS_ROOT/night.json, the record of the last night, or None."""
    try:
        done = read_json(reports_root / NIGHT_FILE)
    except (UnsafePath, OSError, ValueError, RecursionError):
        return None
    return done if isinstance(done, dict) and "failed" in done else None


def check_reports_root(dumps_root: Path, reports_root: Path) -> None:
    """Refuse a reports root that is the dumps root or lies inside a dump: reports would be written
    into dumps and scored the next night (inside the dumps root, beside the dumps, is fine)."""
    dumps_real, reports_real = os.path.realpath(dumps_root), os.path.realpath(reports_root)
    parts = Path(os.path.relpath(reports_real, dumps_real)).parts  # () when they are the same folder
    in_a_dump = len(parts) > 1 and parts[0] != ".." and not parts[0].startswith(".")
    if reports_real == dumps_real or in_a_dump:
        raise ValueError(
            f"the reports root {display_name(reports_root)} would put reports inside the dumps of "
            f"{display_name(dumps_root)}, where the next night would score them; use a folder beside "
            "the dumps (or directly inside the dumps root)"
        )


@flow(name="nightly", flow_run_name=_run_name, log_prints=True)
def nightly_flow(
    dumps_root: str,
    reports_root: str,
    store_dir: str,
    model_dir: str | None = None,
    explain: Explain = DEFAULT_EXPLAIN,
    samples: Samples | None = None,
    force: bool = False,
) -> dict:
    """Score the dumps under `dumps_root` that need it; returns what was scored, kept, skipped and
    failed, or raises `NightFailed` (after trying every dump) when any dump failed.

    Args:
        dumps_root: Folder whose visible subfolders are the dumps to score (links are not followed).
        reports_root: Folder for one report folder per dump; not the dumps root, nor inside a dump.
        store_dir: Feature store shared by every dump, so no image is embedded twice.
        model_dir: Model folder; empty for the built-in model.
        explain: Maps for 'flagged' images (ai_generated and uncertain), 'all' or 'none'.
        samples: Monte Carlo samples per image; empty for the model's own number.
        force: Score every dump again, even one whose report is current (same files, model and
            parameters).
    """
    logger = run_logger()
    try:
        check_reports_root(Path(dumps_root), Path(reports_root))
    except ValueError as exc:
        if in_flow_run():  # a Failed state with the reason, not a traceback
            return failed_state(exc)
        raise
    dumps, refused = dump_folders(Path(dumps_root), (reports_root, store_dir))
    done: dict = {
        "dumps": len(dumps) + len(refused),
        "scored": {},
        "up_to_date": [],
        "busy": {},
        "failed": {},
    }
    logger.info("%d dumps under %s", len(dumps), display_name(dumps_root))
    reports: dict[str, Path] = {}
    for name, reason in refused.items():
        done["failed"][name] = reason
        logger.error("failed %s: %s", name, reason)
    for dump in dumps:
        name = display_name(dump.name)
        report = reports[name] = Path(reports_root) / dump.name
        try:
            with tags("faceaudit", "nightly"):  # the subflows carry them too, under a deployment as well
                run = call_flow(
                    score_flow,
                    input_dir=str(dump),
                    out_dir=str(report),
                    store_dir=store_dir,
                    model_dir=model_dir,
                    explain=explain,
                    samples=samples,
                    only_if_changed=not force,
                )
        except ResultLost as exc:  # the report says what its run.json says: read it there
            run = report_run(report, up_to_date=str(exc).startswith("report up to date"))
        except (OutputBusy, RunFailed) as exc:
            if isinstance(exc, OutputBusy) or exc.busy:
                done["busy"][name] = str(exc)
                logger.warning("skipped %s: %s", name, exc)
                continue
            done["failed"][name] = display_name(str(exc))
        except Exception as exc:  # one bad dump must not cost the others their night
            done["failed"][name] = display_name(f"{type(exc).__name__}: {exc}")
        if name in done["failed"]:
            logger.error("failed %s: %s", name, done["failed"][name])
            publish_failure(dump, done["failed"][name])
            continue
        if run.get("up_to_date"):
            done["up_to_date"].append(name)
        else:
            done["scored"][name] = run["counts"]
    logger.info(
        "%d scored, %d up to date, %d skipped (busy), %d failed",
        len(done["scored"]),
        len(done["up_to_date"]),
        len(done["busy"]),
        len(done["failed"]),
    )
    publish_night(dumps_root, done, reports)
    write_index(Path(reports_root))
    write_text(Path(reports_root) / NIGHT_FILE, json_text(done))
    if done["failed"]:
        if in_flow_run():  # a Failed state naming each failed dump, and no traceback
            return failed_state(RunFailed(str(NightFailed(done))), data=done)
        raise NightFailed(done)
    return done
