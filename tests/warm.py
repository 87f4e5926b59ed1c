"""A warm interpreter for the tests' command-line runs.

Each `python -m faceaudit.flows.cli ...` a test starts is a real process running the real command line, but a
fresh interpreter spends several seconds of CPU importing torch, transformers, Prefect, Pyro,
scikit-learn and matplotlib before the command begins. On 2 cores that start-up was most of the suite's time.

So one process does those imports once and forks a child per run. The child is an ordinary process
with its own pid, file descriptors, working folder and exit status: kill -9, orphan checks, exit
codes and output behave as for a fresh interpreter, and it leaves as the interpreter does (threads
joined, atexit handlers run, output flushed) less the teardown of every module.

A run is served warm only when a fresh interpreter would see the same thing: the same environment
the warm process started with (Prefect, matplotlib and faceaudit read theirs at import time), the
repository as working folder, and nothing but the command line itself in the command. Anything else,
or `FACEAUDIT_TESTS_COLD=1`, starts a fresh interpreter through `subprocess` as before.
"""

from __future__ import annotations

import atexit
import importlib
import json
import locale
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "faceaudit.flows.cli"]

# What the commands import; the rest is small and loads in the child.
WARM_MODULES = (
    "faceaudit.flows.cli",
    "faceaudit.flows.embed_flow",
    "faceaudit.flows.train_flow",
    "faceaudit.flows.evaluate_flow",
    "faceaudit.flows.score_flow",
    "faceaudit.flows.nightly_flow",
    "faceaudit.flows.explaining",
    "faceaudit.flows.folds",
    "faceaudit.flows.demo",
    "faceaudit.embed.backbone",
    "faceaudit.embed.runner",
    "faceaudit.head.mc_dropout",
    "faceaudit.head.pyro_head",
    "faceaudit.head.plots",
    "faceaudit.explain.occlusion",
    "faceaudit.explain.gradient",
    "faceaudit.explain.render",
    # what those import only when a command needs it: the heads' and metrics' libraries, the plots
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.utils.extmath",
    "pyro.distributions",
    "pyro.infer.autoguide",
    "pyro.nn",
    "pyro.optim",
    "matplotlib.backends.backend_agg",
    "matplotlib.figure",
    "matplotlib.pyplot",
    # The face check's library. Importing it sets LD_LIBRARY_PATH, so once a test has run the check
    # in-process, every run's environment holds it: imported here too, that is part of this process's
    # start-up, and those runs are still served warm (each had started another warm process, ~14 s of
    # CPU).
    "cv2",
)


# --- the warm process ---------------------------------------------------------------------------


def serve(address: str) -> None:
    """Import what the commands need, then fork a child per request, whose command line then runs;
    the warm process itself exits when the tests close its stdin."""
    from faceaudit.flows.defaults import contain_library_state

    given = dict(os.environ)
    os.environ.setdefault(
        "PREFECT_SERVER_ANALYTICS_ENABLED", "false"
    )  # as faceaudit.flows.cli.main does first
    contain_library_state()
    for name in WARM_MODULES:
        importlib.import_module(name)
    from transformers import Dinov2Model, ViTModel  # noqa: F401  (lazy names: load the model code now)

    if threading.active_count() != 1:  # a fork would copy one thread and maybe a lock another holds
        print(f"not warm: {threading.active_count()} threads after the imports", flush=True)
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address)
    listener.listen(64)
    start_up = {key: value for key, value in os.environ.items() if given.get(key) != value}
    print("ready", json.dumps(start_up), flush=True)  # what the start-up and the imports set
    argv = _fork_per_request(listener, start_up)
    if argv is None:
        os._exit(0)  # nothing to flush or keep: skip unloading torch and Prefect (about 2 s)
    _run_command_line(argv)


def _fork_per_request(listener: socket.socket, start_up: dict) -> list[str] | None:
    """The warm process's loop: a child per request, its exit status sent back when it ends. It
    sleeps until a request, the end of the tests or a child's exit (each child's pidfd) wakes it."""
    running: dict[int, tuple[socket.socket, int]] = {}  # pid: (its client's connection, its pidfd)
    while True:
        exits = [pidfd for _, pidfd in running.values()]
        ready, _, _ = select.select([listener, sys.stdin, *exits], [], [])
        if sys.stdin in ready and not sys.stdin.buffer.read1(1):
            return None  # the tests are done (or gone)
        if listener in ready:
            conn, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                listener.close()
                for other, pidfd in running.values():
                    other.close()
                    os.close(pidfd)
                conn.close()
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                    os.close(fd)
                os.chdir(request["cwd"])
                if request["new_session"]:
                    os.setsid()  # as Popen(start_new_session=True): a group of its own, to stop it by
                os.environ.clear()
                os.environ.update({**start_up, **request["env"]})
                tempfile.tempdir = None  # $TMPDIR is the run's own (PER_RUN_VARIABLES)
                return request["argv"]
            for fd in fds:
                os.close(fd)
            conn.send(f"pid {pid}".encode())
            running[pid] = (conn, os.pidfd_open(pid))
        for pid, (conn, pidfd) in list(running.items()):
            if pidfd in ready:
                _, status = os.waitpid(pid, 0)
                conn.send(f"exit {os.waitstatus_to_exitcode(status)}".encode())
                conn.close()
                os.close(pidfd)
                del running[pid]


def _run_command_line(argv: list[str]) -> None:
    """What `python -m faceaudit.flows.cli ARGS` runs, then the interpreter's exit: non-daemon threads joined,
    atexit handlers run, output flushed. Only the teardown of every loaded module is skipped (about
    2 s with torch and Prefect loaded, and nothing a command may rely on)."""
    from faceaudit.flows import cli

    sys.argv = [cli.__file__, *argv]
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())  # as the interpreter reports what nothing caught
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  (what the interpreter calls at exit)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _exit_status(code: object) -> int:
    """The status the interpreter gives `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


# --- the tests' side ----------------------------------------------------------------------------


# May differ from the warm process's: nothing reads them at import time. pytest names each test in
# the first; the second is read when a temporary file is first made, and the warm imports make none
# (tempfile and multiprocessing hold no folder after them; each child forgets one all the same).
PER_RUN_VARIABLES = ("PYTEST_CURRENT_TEST", "TMPDIR")


def _lasting(env: dict) -> dict:
    """An environment less the variables that change from run to run."""
    return {key: value for key, value in env.items() if key not in PER_RUN_VARIABLES}


class _WarmInterpreter:
    """One warm process, for the runs whose environment is the one it started with."""

    def __init__(self, env: dict) -> None:
        self.address = f"\0faceaudit-tests-{os.getpid()}-{uuid.uuid4().hex}"  # abstract: no file
        self.env = env
        self.process = subprocess.Popen(
            [*CLI[:1], "-c", f"from tests.warm import serve; serve({self.address!r})"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        status, _, start_up = self.process.stdout.readline().partition(" ")
        self.ready = status == "ready"
        # What start-up and the imports put in the environment (KMP_* from OpenMP, MPLCONFIGDIR): a
        # fresh interpreter sets them too, so they may be present or absent in a run's environment.
        self.start_up: dict = json.loads(start_up) if self.ready else {}
        atexit.register(self.stop)

    def matches(self, env: dict) -> bool:
        return self.ready and self.process.poll() is None and self.serves(env)

    def serves(self, env: dict) -> bool:
        """Whether a run in `env` would see what this warm process saw when it started."""
        return self.settled(env) == self.settled(self.env)

    def settled(self, env: dict) -> dict:
        """The part of an environment a run must share with the warm process."""
        return {**self.start_up, **_lasting(env)}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_interpreters: list[_WarmInterpreter] = []


def _warm_for(
    command: list[str], cwd: Path | str, env: dict | None, **options: Any
) -> _WarmInterpreter | None:
    """`_choose`, noted in $FACEAUDIT_TESTS_WARM_LOG when that names a file (to see which runs start
    fresh)."""
    chosen = _choose(command, cwd, env, **options)
    if os.environ.get("FACEAUDIT_TESTS_WARM_LOG"):
        with open(os.environ["FACEAUDIT_TESTS_WARM_LOG"], "a", encoding="utf-8", errors="replace") as log:
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
            print("warm" if chosen else "fresh", test, *command[3:5], file=log)
    return chosen


def _choose(command: list[str], cwd: Path | str, env: dict | None, **options: Any) -> _WarmInterpreter | None:
    """The warm process to fork this command from, or None to start it fresh. Each environment gets
    its own the first time it is seen: starting one costs about what one fresh run does."""
    if os.environ.get("FACEAUDIT_TESTS_COLD") == "1" or command[:3] != CLI or options:
        return None
    if Path(cwd).resolve() != ROOT:
        return None
    seen = dict(os.environ) if env is None else env
    for interpreter in _interpreters:
        if interpreter.matches(seen):
            return interpreter
        if interpreter.serves(seen):
            return None  # its warm process is not ready or has gone (it says why on its stdout)
    interpreter = _WarmInterpreter(seen)
    _interpreters.append(interpreter)
    return interpreter if interpreter.matches(seen) else None


class WarmProcess:
    """The part of `subprocess.Popen` the tests use, for a run forked from the warm process."""

    def __init__(
        self,
        interpreter: _WarmInterpreter,
        command: list[str],
        cwd: Any,
        stdout: Any,
        stderr: Any,
        text: bool,
        env: Any,
        start_new_session: bool = False,
    ):
        self.args, self.text, self.returncode = command, text, None
        self._captured: dict[str, IO[bytes]] = {}
        self._opened: list[IO[bytes]] = []
        fds = [self._open(os.devnull, "rb").fileno()]
        for name, choice, inherited in (("stdout", stdout, 1), ("stderr", stderr, 2)):
            if choice is None:
                fds.append(inherited)
            elif choice == subprocess.DEVNULL:
                fds.append(self._open(os.devnull, "wb").fileno())
            elif choice == subprocess.PIPE:
                self._captured[name] = tempfile.TemporaryFile()  # noqa: SIM115  (closed once read)
                fds.append(self._captured[name].fileno())
            else:
                fds.append(choice if isinstance(choice, int) else choice.fileno())
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._conn.connect(interpreter.address)
        request = {"argv": command[3:], "cwd": str(cwd), "env": env or dict(os.environ)}
        request = json.dumps({**request, "new_session": start_new_session}).encode()
        socket.send_fds(self._conn, [request], fds)
        for handle in self._opened:
            handle.close()
        reply = self._conn.recv(64).decode()
        assert reply.startswith("pid "), f"the warm interpreter did not start {command}: {reply!r}"
        self.pid = int(reply.split()[1])

    def _open(self, path: str, mode: str) -> IO[bytes]:
        handle = open(path, mode)  # noqa: SIM115  (closed once the child holds its copy)
        self._opened.append(handle)
        return handle

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._conn], [], [], 0)[0]:
            self._take_status()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._conn], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._take_status()
        return self.returncode

    def _take_status(self) -> None:
        reply = self._conn.recv(64).decode()
        self._conn.close()
        assert reply.startswith("exit "), f"the warm interpreter lost {self.args}: {reply!r}"
        self.returncode = int(reply.split()[1])

    def communicate(self, timeout: float | None = None) -> tuple[Any, Any]:
        self.wait(timeout)
        return self._output("stdout"), self._output("stderr")

    def _output(self, name: str) -> Any:
        if name not in self._captured:
            return None
        handle = self._captured.pop(name)
        handle.seek(0)
        data = handle.read()
        handle.close()
        if not self.text:
            return data
        # As subprocess decodes text=True output: the locale's encoding and universal newlines.
        return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")

    def send_signal(self, number: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, number)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def popen(
    command: list[str],
    cwd: Path | str = ROOT,
    stdout: Any = None,
    stderr: Any = None,
    text: bool = False,
    env: dict | None = None,
    start_new_session: bool = False,
    **options: Any,
) -> WarmProcess | subprocess.Popen:
    """`subprocess.Popen`, forked from the warm process when that is the same as a fresh start."""
    interpreter = _warm_for(command, cwd, env, **options)
    if interpreter is not None:
        return WarmProcess(interpreter, command, cwd, stdout, stderr, text, env, start_new_session)
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdout=stdout,
        stderr=stderr,
        text=text,
        env=env,
        start_new_session=start_new_session,
        **options,
    )


def run(
    command: list[str],
    cwd: Path | str = ROOT,
    capture_output: bool = False,
    text: bool = False,
    check: bool = False,
    env: dict | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """`subprocess.run`, forked from the warm process when that is the same as a fresh start."""
    interpreter = _warm_for(command, cwd, env)
    if interpreter is None:
        return subprocess.run(
            command, cwd=cwd, capture_output=capture_output, text=text, check=check, env=env, timeout=timeout
        )
    pipe = subprocess.PIPE if capture_output else None
    process = WarmProcess(interpreter, command, cwd, pipe, pipe, text, env)
    try:
        out, err = process.communicate(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    if check and process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command, out, err)
    return subprocess.CompletedProcess(command, process.returncode, out, err)
