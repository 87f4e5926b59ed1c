"""Run flows with or without a Prefect API.

With a Prefect server configured (PREFECT_API_URL), every run is recorded and visible in the UI. With
none, Prefect would start a throwaway server for each run (10-30 s here); the command line then runs
the same flow function in-process instead, unless asked for `--prefect`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from flows.outputs import display_name


def api_configured() -> bool:
    """True when a Prefect server or Cloud workspace is configured for this process."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def check_recordable(params: dict[str, Any]) -> None:
    """Refuse, in one line, a flow parameter Prefect cannot record: a path whose name is not valid
    UTF-8 (Prefect stores parameters as JSON text). In-process runs take such names as they are."""
    for value in params.values():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"{display_name(value)}: the name is not valid UTF-8, and a recorded Prefect run keeps "
                    "its parameters as UTF-8 text; rename it, or run without Prefect (--no-prefect)"
                ) from None


def call(task_fn, *args: Any, timeout_s: float | None = None, **kwargs: Any):
    """Call a Prefect task (or subflow) as such inside a flow run, or as its plain function outside one.

    `timeout_s` bounds a task run whose cost depends on its input (Prefect fails it past that)."""
    if in_flow_run():
        from prefect import Flow

        if isinstance(task_fn, Flow):
            check_recordable(kwargs)
        if timeout_s is not None:
            task_fn = task_fn.with_options(timeout_seconds=timeout_s)
        return task_fn(*args, **kwargs)
    return task_fn.fn(*args, **kwargs)


def run_flow(flow_fn, orchestrate: bool | None, **params: Any):
    """Run `flow_fn` through Prefect when `orchestrate` (None: when an API is configured), else in-process.

    In-process runs validate their parameters against the same schema Prefect enforces (choices,
    bounds), so a bad value is refused the same way either way."""
    if orchestrate is None:
        orchestrate = api_configured()
    if orchestrate:
        check_recordable(params)
        return flow_fn(**params)
    runner: Callable = flow_fn.fn
    return runner(**flow_fn.validate_parameters(params))
