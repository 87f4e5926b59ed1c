"""What a run tells Prefect beyond its state: log lines and artifacts.

Inside a flow or task run, messages go to Prefect's run logger (shown with the run in the UI and kept
by the server); outside one (`--no-prefect`), to the `faceaudit` logger, whose warnings reach stderr.
Artifacts exist only inside a flow run: an in-process run has nowhere to keep them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

from faceaudit.data.text import display_name
from faceaudit.flows.orchestration import in_flow_run

MAX_LOGGED_UNREADABLE = 50
OOD_WARNING_SHARE = 0.5  # above this share of out-of-distribution images, a run warns
STALE_MODEL_DAYS = 180  # files this much newer than the model may come from generators it never saw


class OneLineLogger(logging.LoggerAdapter):
    """A logger whose every message is formatted first and then shown through `display_name`: a file
    name holding a line break, ESC sequences or bidirectional controls cannot forge a log line or
    take over a terminal, on stderr or in Prefect's logs."""

    def log(self, level: int, msg: object, *args: object, **kwargs) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, display_name(text), **kwargs)


def run_logger() -> logging.LoggerAdapter:
    """The current run's logger, or the `faceaudit` logger outside any run; one line per message."""
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return OneLineLogger(logging.getLogger("faceaudit"))
    from prefect import get_run_logger

    return OneLineLogger(get_run_logger())


def artifact_key(prefix: str, folder: str | Path) -> str:
    """A valid artifact key (lowercase letters, digits, dashes): the folder's name, readable, and a
    short hash of its absolute path, so two dumps of one name (or an ad-hoc run beside a nightly one)
    never share a history."""
    path = os.path.abspath(folder)
    slug = re.sub(r"[^a-z0-9]+", "-", display_name(os.path.basename(path)).lower()).strip("-")[:50].strip("-")
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:8]
    return f"{prefix}-{slug or 'dump'}-{digest}"


def significant(value: float) -> str:
    """A threshold or rate to 4 significant digits, for people to read."""
    return f"{value:.4g}"


def markdown_text(value: str) -> str:
    """A file name or reason as inert Markdown: one line, no markup, no HTML."""
    text = display_name(value).replace("\r", " ").replace("\n", " ")
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~-])", r"\\\1", text)


def log_unreadable(unreadable: list[tuple[str, str]]) -> None:
    """Each unreadable file's reason (the first MAX_LOGGED_UNREADABLE of them) and how many in all."""
    if not unreadable:
        return
    logger = run_logger()
    for rel, reason in unreadable[:MAX_LOGGED_UNREADABLE]:
        logger.warning("unreadable: %s: %s", display_name(rel), reason)
    if len(unreadable) > MAX_LOGGED_UNREADABLE:
        more = len(unreadable) - MAX_LOGGED_UNREADABLE
        logger.warning("... and %d more unreadable files (see verdicts.csv)", more)
    logger.info("%d unreadable files in all", len(unreadable))


def publish_artifacts(input_dir: str, out: Path, run: dict, rows: list[dict], top: int = 10) -> None:
    """A table of verdict counts, a summary (model, thresholds, most suspicious files, unreadable
    files) and a link to report.html, keyed by the dump's folder so each dump has its own history."""
    if not in_flow_run():
        return
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    name = display_name(os.path.basename(os.path.abspath(input_dir)))
    create_table_artifact(
        [{"verdict": verdict, "files": count} for verdict, count in run["counts"].items()],
        key=artifact_key("verdicts", input_dir),
        description=f"Verdict counts for {name}",
    )
    create_markdown_artifact(
        summary_markdown(name, run, rows, top),
        key=artifact_key("summary", input_dir),
        description=f"What faceaudit judged in {name}",
    )
    report = (out / "report.html").resolve()
    create_link_artifact(
        report.as_uri(), link_text=f"report.html for {name}", key=artifact_key("report", input_dir)
    )


def publish_failure(dump: Path, reason: str) -> None:
    """A failed dump's reason as a Markdown artifact under the dump's own key, beside its history."""
    if not in_flow_run():
        return
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        f"# faceaudit: {markdown_text(dump.name)} failed\n\n{markdown_text(reason)}\n",
        key=artifact_key("failed", dump),
        description=f"Why {display_name(dump.name)} could not be scored",
    )


def publish_night(dumps_root: str, done: dict, reports: dict[str, Path]) -> None:
    """The night as one table: each dump, what happened to it, its verdict counts and its report."""
    if not in_flow_run():
        return
    from prefect.artifacts import create_table_artifact

    table = []
    for state, entries in (("scored", done["scored"]), ("up to date", done["up_to_date"])):
        for name in entries:
            counts = entries[name] if isinstance(entries, dict) else {}
            report = reports.get(name)
            link = (report / "report.html").resolve().as_uri() if report else ""
            table.append({"dump": name, "state": state, **counts, "report": link})
    for state, entries in (("skipped (busy)", done["busy"]), ("failed", done["failed"])):
        table += [{"dump": name, "state": state, "reason": reason} for name, reason in entries.items()]
    create_table_artifact(
        table, key=artifact_key("night", dumps_root), description=f"Dumps of {display_name(dumps_root)}"
    )


def summary_markdown(name: str, run: dict, rows: list[dict], top: int = 10) -> str:
    """The run's summary as Markdown: provenance first, then what a reviewer should open first."""
    thresholds = run["thresholds"]
    lines = [
        f"# faceaudit: {markdown_text(name)}",
        "",
        f"- model `{run['model']['id']}` ({run['model']['head']}), faceaudit {run['faceaudit_version']}",
        "- thresholds: "
        + ", ".join(f"{k} {significant(v)}" for k, v in thresholds.items() if isinstance(v, (int, float))),
        f"- files: {run['files']}; " + ", ".join(f"{c} {v}" for v, c in run["counts"].items()),
        "",
    ]
    flagged = sorted(
        (r for r in rows if r["verdict"] in ("ai_generated", "uncertain")),
        key=lambda r: -float(r["p_ai"]),
    )[:top]
    if flagged:
        lines += [
            "## Most suspicious",
            "",
            "| file | verdict | why uncertain | P(AI) | map |",
            "|---|---|---|---|---|",
        ]
        for row in flagged:
            shown_map = markdown_text(row["occlusion_map"] or row["gradient_map"] or "-")
            lines.append(
                f"| {markdown_text(row['path'])} | {row['verdict']} | {row['uncertain_reason'] or '-'} "
                f"| {float(row['p_ai']):.3f} | {shown_map} |"
            )
        lines.append("")
    unreadable = [r for r in rows if r["verdict"] == "unreadable"]
    if unreadable:
        lines += ["## Unreadable", "", "| file | reason |", "|---|---|"]
        for row in unreadable[:MAX_LOGGED_UNREADABLE]:
            lines.append(f"| {markdown_text(row['path'])} | {markdown_text(row['error'])} |")
        if len(unreadable) > MAX_LOGGED_UNREADABLE:
            lines.append(f"\n... and {len(unreadable) - MAX_LOGGED_UNREADABLE} more (see verdicts.csv)")
    return "\n".join(lines) + "\n"
