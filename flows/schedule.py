"""Putting `nightly` on a schedule: served from this process (`faceaudit serve`) or deployed to a work
pool for Prefect workers to run (`faceaudit deploy`). Both register the same deployment: a cron or
interval schedule in an explicit time zone, at most one night running at a time, tags and a version.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DEPLOYMENT_TAGS = ["faceaudit", "nightly"]
DESCRIPTION = (
    "Score every dump folder under dumps_root that changed since its last report: verdicts.csv, "
    "verdicts.jsonl, run.json, maps and report.html per dump under reports_root."
)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = "flows/nightly_flow.py:nightly_flow"


def local_timezone() -> str:
    """This machine's IANA time zone name ($TZ, /etc/localtime, /etc/timezone), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    for name in candidates:
        if name and _is_zone(name):
            return name
    return "UTC"


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return "/" in name or name in ("UTC", "GMT") or name in available_timezones()


def make_schedule(cron: str | None, interval: int | None, timezone: str):
    """A Prefect schedule; a ValueError with a one-line reason for a bad cron string or zone."""
    from prefect.schedules import Cron, Interval

    if (cron is None) == (interval is None):
        raise ValueError("give exactly one of --cron or --interval")
    if not _is_zone(timezone):
        raise ValueError(f"unknown time zone {timezone!r}; use an IANA name such as Europe/Paris or UTC")
    if cron is not None:
        return Cron(cron, timezone=timezone)  # Prefect checks the cron string
    return Interval(timedelta(seconds=interval), timezone=timezone)


def describe_schedule(cron: str | None, interval: int | None, timezone: str) -> str:
    return f"cron {cron!r} in {timezone}" if cron else f"every {interval} s"


def deployment_options(schedule, parameters: dict) -> dict:
    """What `serve` and `deploy` both register: the schedule, parameters and labels."""
    from faceaudit.data.version import code_version

    return {
        "schedules": [schedule],
        "parameters": parameters,
        "description": DESCRIPTION,
        "tags": DEPLOYMENT_TAGS,
        "version": code_version(),
    }


def deploy_to_pool(name: str, pool: str, schedule, parameters: dict) -> str:
    """Register `nightly` for the process work pool `pool`, its code read from this checkout; a
    worker (`prefect worker start --pool POOL`) runs each scheduled night. Returns the deployment id."""
    from prefect import Flow

    ensure_process_pool(pool)
    nightly = Flow.from_source(source=str(PROJECT_ROOT), entrypoint=ENTRYPOINT)
    # to_deployment + apply registers exactly this; Flow.deploy would also poll the pool's workers with
    # a request this server version refuses (HTTP 422 on a null limit, Prefect 3.8.8).
    deployment = nightly.to_deployment(
        name=name, work_pool_name=pool, concurrency_limit=1, **deployment_options(schedule, parameters)
    )
    deployment_id = deployment.apply()
    return str(deployment_id)


def ensure_process_pool(pool: str) -> None:
    """Create the work pool as a local `process` pool unless it exists (of whatever type)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
