"""Shared fixtures: tiny real transformers backbones, generated image folders, isolated caches."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from tests import warm

# `make test` runs two test processes on two cores, so two commands' torch threads often share them:
# OpenMP's default is to spin while waiting, which then burns the other's core. Sleep instead (read
# when torch loads, so set before any test module imports it; the commands inherit it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"{SHARED_DATA} is absent (a fresh clone without ../shared); the real-data tests need it",
)


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep caches, Prefect's database and the default store out of the user's home."""
    base = tmp_path_factory.mktemp("env")
    os.environ["FACEAUDIT_CACHE_DIR"] = str(base / "cache")
    os.environ["FACEAUDIT_STORE"] = str(base / "store")
    os.environ["PREFECT_HOME"] = str(base / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # Prefect waits 20 s for a temporary server by default; a loaded 2-core machine can take longer
    # (the Dask test's runs timed out in CI-like runs), and that is not what the tests are about.
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    os.environ.pop("PREFECT_API_URL", None)
    # A served deployment and a work-pool worker look for new runs every 10 s by default; the tests
    # start one and wait for it, so look every second.
    os.environ["PREFECT_RUNNER_POLL_FREQUENCY"] = "1"
    os.environ["PREFECT_WORKER_QUERY_SECONDS"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    # `import torch` sets this to a folder under /tmp when it is unset, so it would differ between the
    # runs started before and after the tests first imported torch; pin it where the caches are.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(base / "cache" / "torchinductor")


def save_tiny_backbone(folder: Path, kind: str = "vit", seed: int = 0) -> Path:
    """A 2-layer ViT or DINOv2 with random weights, saved like any transformers model folder."""
    import torch
    from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

    torch.manual_seed(seed)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=8, image_size=32)
    if kind == "dinov2":
        model = Dinov2Model(Dinov2Config(mlp_ratio=2, **common))
    else:
        model = ViTModel(ViTConfig(intermediate_size=64, **common), add_pooling_layer=False)
    model.save_pretrained(folder)
    return folder


@contextlib.contextmanager
def made_once(factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, bool]]:
    """A session folder `name` made once for the whole run, also when pytest-xdist splits the run
    between processes: yields (folder, whether this caller must fill it). Callers hold a lock until
    the block ends, so the others wait for a folder that is complete."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield factory.mktemp(name, numbered=False), True
        return
    shared = factory.getbasetemp().parent  # this run's folder, above each process's own
    with open(shared / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        folder, done = shared / name, shared / f"{name}.done"
        if done.exists():
            yield folder, False
            return
        shutil.rmtree(folder, ignore_errors=True)  # what a caller that failed half-way left
        folder.mkdir()
        yield folder, True
        done.touch()


def hash_rows(paths: Iterable[Path]) -> list[str]:
    """Every `sha256` row of these store files, repeats kept: what "each image stored once" is checked
    on (the store's own look-ups see each hash once, however often it was written)."""
    rows = []
    for path in paths:
        with h5py.File(path, "r") as handle:
            rows.extend(h.decode() for h in handle["sha256"][()])
    return rows


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with made_once(tmp_path_factory, "tiny-vit") as (folder, fill):
        return save_tiny_backbone(folder, "vit") if fill else folder


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with made_once(tmp_path_factory, "tiny-dinov2") as (folder, fill):
        return save_tiny_backbone(folder, "dinov2") if fill else folder


def write_image(path: Path, seed: int, size: tuple[int, int] = (48, 40), fmt: str = "JPEG") -> Path:
    """A random but deterministic picture (smooth gradient plus noise, so JPEG keeps it distinct)."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * (seed % 7 + 1)) % 256, (yy * (seed % 5 + 1)) % 256, (xx + yy + seed) % 256], -1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def snapshot(*folders: Path) -> dict[str, str]:
    """Every entry under `folders` with a hash of its bytes (links by their target): what a run must
    leave as it found it."""
    seen = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink():
                seen[str(path)] = "link:" + os.readlink(path)
            elif path.is_file():
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[str(path)] = "dir"
    return seen


def make_labelled_folder(root: Path, per_class: int, source: str = "src", start: int = 0) -> Path:
    for i in range(per_class):
        write_image(root / source / "real" / f"r{start + i:04d}.jpg", seed=2 * (start + i))
        write_image(root / source / "ai" / f"a{start + i:04d}.jpg", seed=2 * (start + i) + 1)
    return root


@contextlib.contextmanager
def lock_held_elsewhere(out: Path) -> Iterator[subprocess.Popen]:
    """Another process holding OUT's lock until the block ends: a handshake (it says when it holds the
    lock), so a test never races a real run against the clock. Yields the holder, for its pid."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from faceaudit.flows.outputs import output_lock\n"
            f"with output_lock(Path({str(out)!r})):\n"
            "    print('held', flush=True); sys.stdin.read()",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()  # the lock dies with its holder, however it dies
        holder.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check: Callable, timeout: float, what: str, every: float = 0.5):
    """Poll `check` until it returns something true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def stop_group(process: subprocess.Popen | warm.WarmProcess | None) -> None:
    """Stop a process started with start_new_session, children included (the Prefect CLI's survive a
    plain TERM of the parent)."""
    if process is not None and process.poll() is None:
        stop_group_of(process.pid)
        process.wait()


def stop_group_of(pid: int) -> None:
    """`stop_group` by pid, for a process another test process may have started."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)


def in_background(
    command: list[str], env: dict | None = None, cwd: Path = ROOT
) -> subprocess.Popen | warm.WarmProcess:
    """A long-running child in its own process group, output discarded; stop it with `stop_group`.
    The command line's runs are forked from the warm interpreter where that is the same."""
    return warm.popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


PREFECT_SERVER = "prefect-server"  # its folder under the run's base folder

# The server's background services no test relies on: late-run marking, cancellation clean-up, the
# foreman's worker health checks, pause expiry, lease repossession, automations and their clean-up.
# Each wakes every few seconds for the whole run, on the two cores the tests share. The scheduler, the
# event persister and the task-run recorder (task runs read back through the API) stay on.
IDLE_SERVICES = {
    f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false"
    for name in (
        "LATE_RUNS",
        "CANCELLATION_CLEANUP",
        "FOREMAN",
        "PAUSE_EXPIRATIONS",
        "REPOSSESSOR",
        "TRIGGERS",
        "CLEANUP_RECONCILER",
    )
}


def start_prefect_server(
    home: Path, prefect: tuple[str, ...] = (sys.executable, "-m", "prefect"), env: dict | None = None
) -> tuple[subprocess.Popen, str]:
    """`prefect server start` (the `prefect` command given: another environment's, say) on a free port
    with its database under `home`, once it answers; returns the process and its API URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    server = in_background(
        [*prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        {**(os.environ if env is None else env), **IDLE_SERVICES, "PREFECT_HOME": str(home)},
    )

    def healthy() -> bool:
        assert server.poll() is None, "the Prefect server exited"
        try:
            return urllib.request.urlopen(f"{url}/health", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, 180, "the Prefect server")
    except BaseException:
        stop_group(server)
        raise
    return server, url


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real `prefect server start` (API, database, scheduler) for every test that needs Prefect
    itself, in both test processes: in-process runs, served deployments and work-pool workers share
    it. Returns its API URL. It runs until the whole run ends (see `pytest_unconfigure`)."""
    with made_once(tmp_path_factory, PREFECT_SERVER) as (folder, fill):
        if fill:
            server, url = start_prefect_server(folder / "home")
            (folder / "server.json").write_text(json.dumps({"pid": server.pid, "url": url}))
    return json.loads((folder / "server.json").read_text())["url"]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the run's Prefect server, if a test started one. The process that controls the run does
    it, after every test process is done with it: under pytest-xdist they finish one by one. Its
    folder is the base of theirs (made_once)."""
    factory = getattr(config, "_tmp_path_factory", None)
    if hasattr(config, "workerinput") or factory is None:
        return  # a pytest-xdist test process, or a run without temporary folders
    record = factory.getbasetemp() / PREFECT_SERVER / "server.json"
    if record.is_file():
        stop_group_of(json.loads(record.read_text())["pid"])


@pytest.fixture
def prefect_api(prefect_server: str):
    """This test's Prefect calls, in-process and in the subprocesses it starts, go to the shared server."""
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ["PREFECT_API_URL"] = prefect_server
    try:
        with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
            yield prefect_server
            # The flows' last log lines, sent while the server still runs: left queued, they were
            # sent at the interpreter's exit, after the run had stopped the server, and failed aloud.
            APILogWorker.drain_all(timeout=10)
    finally:
        os.environ.pop("PREFECT_API_URL", None)


PER_CLASS = 40


def make_learnable_folder(root: Path) -> Path:
    """'real' images are smooth, 'ai' images carry a checkerboard of 4 px cells: a tiny ViT can tell them
    apart, and the pattern outlives the rescaling of preprocessing and of augmented views."""
    rng = np.random.default_rng(0)
    for source in ("alpha", "beta"):
        for label in ("real", "ai"):
            for i in range(PER_CLASS):
                base = rng.normal(128, 30, (1, 1, 3)) + rng.normal(0, 8, (64, 64, 3))
                if label == "ai":
                    yy, xx = np.mgrid[0:64, 0:64] // 4
                    base = base + 60 * (((yy + xx) % 2)[..., None] - 0.5)
                path = root / source / label / f"{label}{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(path)
    return root


def unprivileged(command: list[str]) -> list[str] | None:
    """`command` run so that file permissions bind it: as root, without the capabilities that bypass
    them (via util-linux's setpriv). None when that is impossible here."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *command]


def faceaudit(*args: str, as_user: bool = False) -> subprocess.CompletedProcess:
    """Run the real command line; `as_user`: bound by file permissions even when the tests run as root."""
    command = [*warm.CLI, *args]
    if as_user:
        command = unprivileged(command)
        assert command is not None, "cannot drop root's read override here (no setpriv)"
    return warm.run(command, cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="session")
def trained(tiny_vit: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A model trained by `faceaudit train` on a tiny backbone, once per run. Its data and model are
    shared; the store, which tests add to, is this process's own copy of the one training filled."""
    with made_once(tmp_path_factory, "train") as (base, fill):
        data, model = base / "data", base / "model"
        if fill:
            make_learnable_folder(data)
            result = faceaudit(
                "train",
                str(data),
                "--model-out",
                str(model),
                "--store",
                str(base / "store"),
                "--backbone",
                str(tiny_vit),
                "--samples",
                "50",
                "--view-directions",  # off by default: asked for, so every test scores through it
                "4",
                "--members",  # the same: every test scores through a mixture of two networks
                "2",
            )
            assert result.returncode == 0, result.stderr
            (base / "train.out").write_text(result.stdout, encoding="utf-8")
        own = tmp_path_factory.mktemp("trained")
        shutil.copytree(base / "store", own / "store")
    stdout = (base / "train.out").read_text(encoding="utf-8")
    return {"data": data, "store": own / "store", "model": model, "stdout": stdout, "base": own}


def children_of(pid: int) -> set[int]:
    """Pids of the live processes whose parent is `pid` (DataLoader workers, say)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_after_progress(
    command: list[str],
    committed: Callable[[], set[str]],
    wanted: int,
    sliver: float,
    watch: Callable[[], None] = lambda: None,
    orphans: set[int] | None = None,
) -> bool:
    """Run `command` and kill -9 it once `committed()` names `wanted` new files, `sliver` seconds later.

    The moment is tied to progress, not wall time, so a fast machine cannot finish the run first; the
    sliver lands some kills mid-write. `watch` is called while waiting. True when the kill landed.
    `orphans`, when given, receives the pids of the children the killed process had."""
    seen = committed()
    process = warm.popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        watch()
        if len(committed() - seen) >= wanted:
            break
        time.sleep(0.005)
    time.sleep(sliver)
    killed = process.poll() is None
    if killed:
        if orphans is not None:
            orphans.update(children_of(process.pid))
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return killed


# The modules that take longest in a CI-like run, in the order they start. Under pytest-xdist each
# module runs in one test process (`--dist loadfile`): a long one started last would leave the other
# process idle at the end, and short ones last even the two out. The first trains the session's model
# (`trained`), which most modules wait for; the second needs neither it nor the Prefect server, so the
# other process works meanwhile. A scheduling hint only; the other modules follow in file order.
LONGEST_FIRST = (
    "test_resilience",
    "test_default_backbone",
    "test_orchestration",
    "test_dask",
    "test_fresh_environment",
    "test_ui",
    "test_train_evaluate",
    "test_kill",
    "test_heads",
    "test_hostile_round_three",
    "test_scale",
    "test_trust",
    "test_hostile",
    "test_packaging",
    "test_score",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.stem
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order is kept otherwise


def copy_faces(trained: dict, folder: Path, count: int) -> Path:
    """`folder` holding the first `count` faces of the trained model's data, named face0.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, source in enumerate(sorted((trained["data"] / "alpha").rglob("*.png"))[:count]):
        shutil.copyfile(source, folder / f"face{i}.png")
    return folder


def fingerprint_folder(trained: dict, store: Path) -> Path:
    """The fingerprint folder the trained model's vectors live in under `store`."""
    from faceaudit.embed.store import FeatureStore
    from faceaudit.flows.models import spec_of
    from faceaudit.head.model import FaceauditModel

    return FeatureStore(store, spec_of(FaceauditModel.load(trained["model"])).fingerprint).folder
