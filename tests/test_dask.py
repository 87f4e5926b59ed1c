"""Embedding on a real 2-process local Dask cluster through Prefect's DaskTaskRunner, as a user without
a Prefect server runs it: the run starts one temporary server, and its Dask workers report to it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from pathlib import Path

import numpy as np

from faceaudit.data import scan
from faceaudit.embed.spec import make_spec
from faceaudit.embed.store import FeatureStore
from tests import warm
from tests.conftest import faceaudit, hash_rows, in_background, stop_group, wait_for


def test_both_dask_options_are_refused(tmp_path: Path) -> None:
    result = faceaudit("embed", str(tmp_path), "--dask-address", "tcp://127.0.0.1:1", "--dask-workers", "2")
    assert result.returncode == 2 and "not both" in result.stderr


def prefect_servers() -> set[int]:
    """Pids of running temporary Prefect servers (uvicorn serving Prefect's app)."""
    found = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and b"prefect.server.api.server" in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
    return found


def test_score_embeds_on_two_dask_workers_as_a_sequential_run_would_and_leaves_nothing_running(
    trained: dict, tiny_vit: Path, tmp_path: Path
) -> None:
    """Without a configured server: the cluster embeds every readable image once, the vectors a
    sequential `embed` gives, and the run's one temporary server (its workers report to it) is gone at
    the end, with nothing left in TMPDIR (issue 20: two orphaned servers, dask-scratch-space/ and
    pymp-*)."""
    dump = tmp_path / "dump"
    dump.mkdir()
    for image in sorted((trained["data"] / "alpha").rglob("*.png"))[:12]:
        (dump / image.name).write_bytes(image.read_bytes())
    (dump / "broken.jpg").write_bytes(b"nope")
    sequential = faceaudit(
        "embed", str(dump), "--store", str(tmp_path / "sequential"), "--backbone", str(tiny_vit)
    )
    assert sequential.returncode == 0, sequential.stderr
    # A short TMPDIR: multiprocessing puts a socket under it, and pytest's own folders (pytest-100/
    # popen-gw1/<test name>/...) would take the path past the 107 bytes a socket path may have.
    scratch = Path(tempfile.mkdtemp(prefix="fa-dask-"))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"TMPDIR": str(scratch)}
    servers = prefect_servers()
    result = warm.run(
        [*warm.CLI, "score", str(dump), "--out", str(tmp_path / "out"), "--model", str(trained["model"]),
         "--store", str(tmp_path / "dask"), "--dask-workers", "2", "--batch-size", "4", "--explain", "none"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["files"] == 13 and run["counts"]["unreadable"] == 1
    with open(tmp_path / "out" / "verdicts.jsonl", encoding="utf-8") as handle:
        reasons = {row["path"]: row["error"] for row in map(json.loads, handle) if row["error"]}
    assert reasons == {"broken.jpg": "not an image: text"}
    assert run["newly_embedded"] == 0  # the cluster had embedded them all
    assert "Error logging to API" not in result.stderr

    hashes = [r.sha256 for r in scan(dump) if r.ok]
    fingerprint = make_spec(str(tiny_vit)).fingerprint
    dask_store = FeatureStore(tmp_path / "dask", fingerprint)
    difference = np.abs(
        dask_store.get(hashes) - FeatureStore(tmp_path / "sequential", fingerprint).get(hashes)
    )
    assert difference.max() <= 1e-5
    # Two partitions, two writers: two shards, and every image stored exactly once.
    rows = hash_rows(dask_store.files())
    assert len(dask_store.files()) == 2 and len(rows) == len(set(rows)) == len(hashes) == 12

    wait_for(lambda: prefect_servers() <= servers, 10, "the temporary Prefect server to stop")
    wait_for(lambda: not list(scratch.iterdir()), 10, "the run's private TMPDIR to be removed")
    scratch.rmdir()


def test_a_killed_recorded_run_takes_its_temporary_server_with_it(trained: dict, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    servers = prefect_servers()
    process = in_background(
        [*warm.CLI, "score", str(trained["data"] / "alpha"), "--out", str(tmp_path / "out"),
         "--model", str(trained["model"]), "--store", str(tmp_path / "store"), "--prefect"],
        env=env,
    )  # fmt: skip
    try:
        started = wait_for(lambda: prefect_servers() - servers, 60, "the run's temporary Prefect server")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        wait_for(lambda: not (prefect_servers() & started), 10, "the server to die with its run")
    finally:
        stop_group(process)
