"""What a run tells Prefect beyond its state: log lines and artifacts.

Inside a flow or task run, messages go to Prefect's run logger (shown with the run in the UI and kept
by the server); outside one (`--no-prefect`), to the `faceaudit` logger, whose warnings reach stderr.
Artifacts exist only inside a flow run: an in-process run has nowhere to keep them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from data.text import display_name
from flows.orchestration import in_flow_run

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


def artifact_key(prefix: str, name: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) from a dump's folder name."""
    slug = re.sub(r"[^a-z0-9]+", "-", display_name(name).lower()).strip("-")[:60].strip("-")
    return f"{prefix}-{slug or 'dump'}"


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


def publish_artifacts(name: str, out: Path, run: dict, rows: list[dict], top: int = 10) -> None:
    """A table of verdict counts, a summary (model, thresholds, most suspicious files, unreadable
    files) and a link to report.html, keyed by the dump's name so each dump has its own history."""
    if not in_flow_run():
        return
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    create_table_artifact(
        [{"verdict": verdict, "files": count} for verdict, count in run["counts"].items()],
        key=artifact_key("verdicts", name),
        description=f"Verdict counts for {display_name(name)}",
    )
    create_markdown_artifact(
        summary_markdown(name, run, rows, top),
        key=artifact_key("summary", name),
        description=f"What faceaudit judged in {display_name(name)}",
    )
    report = (out / "report.html").resolve()
    create_link_artifact(
        report.as_uri(),
        link_text=f"report.html for {display_name(name)}",
        key=artifact_key("report", name),
    )


def summary_markdown(name: str, run: dict, rows: list[dict], top: int = 10) -> str:
    """The run's summary as Markdown: provenance first, then what a reviewer should open first."""
    thresholds = run["thresholds"]
    lines = [
        f"# faceaudit: {markdown_text(name)}",
        "",
        f"- model `{run['model']['id']}` ({run['model']['head']}), faceaudit {run['faceaudit_version']}",
        "- thresholds: " + ", ".join(f"{k} {v}" for k, v in thresholds.items() if not isinstance(v, dict)),
        f"- files: {run['files']}; " + ", ".join(f"{c} {v}" for v, c in run["counts"].items()),
        "",
    ]
    flagged = sorted(
        (r for r in rows if r["verdict"] in ("ai_generated", "uncertain")),
        key=lambda r: -float(r["p_ai"]),
    )[:top]
    if flagged:
        lines += ["## Most suspicious", "", "| file | verdict | P(AI) | map |", "|---|---|---|---|"]
        for row in flagged:
            lines.append(
                f"| {markdown_text(row['path'])} | {row['verdict']} | {float(row['p_ai']):.3f} "
                f"| {markdown_text(row['occlusion_map'] or row['gradient_map'] or '-')} |"
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
