"""Run flows with or without a Prefect API.

With a Prefect server configured (PREFECT_API_URL), every run is recorded and visible in the UI. With
none, Prefect would start a throwaway server for each run (10-30 s here); the command line then runs
the same flow function in-process instead, unless asked for `--prefect`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from faceaudit.data.lifetime import die_with_parent, remove_when_this_process_ends
from faceaudit.data.text import display_name, first_line


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


class ServerUnreachable(Exception):
    """The configured Prefect server does not answer: nothing was run; retry later or run unrecorded."""


def check_reachable(timeout_s: float = 5.0) -> None:
    """Ask the configured Prefect server for its health before a recorded run starts: a server that is
    down would otherwise fail the run after a page of retries and tracebacks, with nothing scored."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=timeout_s).raise_for_status()
    except httpx.HTTPError as exc:
        reason = first_line(exc)
        raise ServerUnreachable(
            f"the Prefect server at {url} does not answer ({reason}); start it, or run this without "
            "recording it: --no-prefect, or unset PREFECT_API_URL"
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


def _expected_failures() -> tuple[type[Exception], ...]:
    """What a user or the file system can cause and a one-line reason explains: a run ends Failed with
    that reason (no traceback); anything else is a bug and keeps its traceback."""
    from faceaudit.data.nofollow import UnsafePath
    from faceaudit.embed.backbone import BackboneError
    from faceaudit.embed.store import StoreError
    from faceaudit.flows.outputs import OutputBusy
    from faceaudit.head.model import ModelError

    return (OutputBusy, UnsafePath, ModelError, StoreError, BackboneError, ValueError, OSError)


EXPECTED_FAILURES = _expected_failures()
BUSY = "Busy"  # the name of a Failed state whose output folder another run holds (retry later)


def failed_state(exc: Exception, data: Any = None):
    """A Failed state carrying `exc` as one line (named Busy for a held output folder), logged once;
    `data` (what was done before it failed) stays readable from the state."""
    from prefect.states import Failed

    from faceaudit.flows.outputs import OutputBusy
    from faceaudit.flows.run_log import run_logger

    reason = display_name(f"{type(exc).__name__}: {exc}" if not isinstance(exc, RunFailed) else str(exc))
    if os.environ.get("FACEAUDIT_DEBUG"):  # `faceaudit --debug`: the traceback too
        run_logger().error("%s", reason, exc_info=exc)
    else:
        run_logger().error("%s", reason)
    return Failed(name=BUSY if isinstance(exc, OutputBusy) else "Failed", message=reason, data=data)


class RunFailed(Exception):
    """A recorded run ended Failed; the message is its state's one-line reason, `data` what it returned
    with that state (a night's record of every dump), `busy` whether its output folder was held."""

    def __init__(self, message: str, busy: bool = False, data: Any = None) -> None:
        super().__init__(message)
        self.busy = busy
        self.data = data


class ResultLost(Exception):
    """A recorded run completed, but its return value did not come back with its state (a state the
    flow returned itself, as the API stored it, without its data); the message is the state's."""


def result_of(state):
    """A finished flow run's return value; RunFailed with its one-line reason, or ResultLost."""
    from prefect.exceptions import MissingResult

    if state.is_failed() or state.is_crashed() or state.is_cancelled():
        data = None
        with contextlib.suppress(Exception):  # a state without data, or data that did not persist
            data = state.result(raise_on_failure=False)
        data = data if isinstance(data, dict) else None
        raise RunFailed(state.message or state.name, busy=state.name == BUSY, data=data)
    try:
        return state.result()
    except MissingResult:
        raise ResultLost(state.message or "") from None


def call_flow(flow_fn, **params: Any):
    """Run a subflow from a flow (recorded as such, its failure a RunFailed with the one-line reason
    its state carries), or its plain function outside a flow run."""
    if in_flow_run():
        check_recordable(params)
        return result_of(flow_fn(**params, return_state=True))
    return flow_fn.fn(**params)


def run_flow(flow_fn, orchestrate: bool | None, **params: Any):
    """Run `flow_fn` through Prefect when `orchestrate` (None: when an API is configured), else in-process.

    In-process runs validate their parameters against the same schema Prefect enforces (choices,
    bounds), so a bad value is refused the same way either way. A recorded run without a configured
    server gets a temporary one of ours (`temporary_server`)."""
    if orchestrate is None:
        orchestrate = api_configured()
    if orchestrate:
        check_recordable(params)
        if api_configured():
            check_reachable()
            return result_of(flow_fn(**params, return_state=True))
        with temporary_server():
            return result_of(flow_fn(**params, return_state=True))
    runner: Callable = flow_fn.fn
    return runner(**flow_fn.validate_parameters(params))


@contextlib.contextmanager
def temporary_server() -> Iterator[str]:
    """A temporary Prefect server for this run and every process it starts (Dask workers included),
    stopped when the run ends and killed by Linux if this process is killed; yields its API URL.

    Left to itself, Prefect starts such a server in each process that needs one and stops it at exit,
    so each Dask worker (terminated, never exited) and any run killed with -9 left one behind."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = _dying_server()
    saved = os.environ.get("PREFECT_API_URL")
    try:
        server.start()
        os.environ["PREFECT_API_URL"] = server.api_url  # for the processes this run starts
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        _drain_prefect_workers()
        server.stop()
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved


# The longest private TMPDIR this process itself may use: multiprocessing puts a socket under it
# (pymp-XXXXXXXX/listener-XXXXXXXX), and a socket path may not be longer than 107 bytes.
_MAX_OWN_TMPDIR = 60


@contextlib.contextmanager
def private_tempdir() -> Iterator[Path]:
    """A TMPDIR of this run's own for the processes it starts (Dask's workers and their scratch space,
    multiprocessing's pymp-* folders, uploads waiting to be judged), and for this process's own where
    its path is short enough; removed once this process has ended, however it ends (even kill -9:
    `remove_when_this_process_ends`)."""
    scratch = Path(tempfile.mkdtemp(prefix="faceaudit-run-"))
    remove_when_this_process_ends(scratch)
    saved, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(scratch)
    if len(str(scratch)) <= _MAX_OWN_TMPDIR:
        tempfile.tempdir = str(scratch)
    try:
        yield scratch
    finally:
        tempfile.tempdir = saved_tempdir
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved


def _drain_prefect_workers() -> None:
    """Send the logs and events Prefect still holds to the server while it is up: they would otherwise
    be sent at exit, to a server no longer there ("Error logging to API")."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # best effort: a run's outputs do not depend on it
            worker.drain_all(timeout=5)


def _dying_server():
    """A new temporary server (not started) whose process dies with this one."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class DyingServer(SubprocessASGIServer):
        """Prefect's temporary server, started so that it dies with the process that started it."""

        _instances: ClassVar[dict] = {}  # its own: Prefect's class hands out one shared instance per port

        def _run_uvicorn_command(self) -> subprocess.Popen:
            import prefect

            command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent)]
            command += ["--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1"]
            command += ["--port", str(self.port), "--log-level", "error", "--lifespan", "on"]
            env = {
                **os.environ,
                **get_current_settings().to_environment_variables(exclude_unset=True),
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
            }
            env.pop("PREFECT_API_URL", None)
            return subprocess.Popen(command, env=env, preexec_fn=die_with_parent)

    return DyingServer()
