"""Nightly runs: each dump scored once into its own report; a real Prefect server runs the schedule."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, faceaudit


@pytest.fixture
def dumps(trained: dict, tmp_path: Path) -> Path:
    root = tmp_path / "dumps"
    images = sorted((trained["data"] / "beta").rglob("*.png"))
    for night, chosen in (("2026-11-20", images[:3]), ("2026-11-21", images[-3:])):
        (root / night).mkdir(parents=True)
        for image in chosen:
            shutil.copyfile(image, root / night / image.name)
    return root


def nightly(dumps: Path, reports: Path, trained: dict, store: Path) -> str:
    result = faceaudit(
        "nightly",
        str(dumps),
        "--out",
        str(reports),
        "--model",
        str(trained["model"]),
        "--store",
        str(store),
        "--explain",
        "none",
        "--samples",
        "20",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_each_dump_is_scored_once_and_again_only_when_it_changes(dumps, trained, tmp_path: Path) -> None:
    reports, store = tmp_path / "reports", tmp_path / "store"
    first = nightly(dumps, reports, trained, store)
    assert "2 dumps scored, 0 already up to date" in first
    for night in ("2026-11-20", "2026-11-21"):
        run = json.loads((reports / night / "run.json").read_text())
        assert run["files"] == 3 and (reports / night / "report.html").is_file()

    assert "0 dumps scored, 2 already up to date" in nightly(dumps, reports, trained, store)

    shutil.copyfile(
        dumps / "2026-11-20" / sorted(os.listdir(dumps / "2026-11-20"))[0],
        dumps / "2026-11-21" / "copy-of-an-older-image.png",
    )
    assert "1 dumps scored, 1 already up to date" in nightly(dumps, reports, trained, store)
    run = json.loads((reports / "2026-11-21" / "run.json").read_text())
    assert run["files"] == 4 and run["newly_embedded"] == 0  # the shared store already had that image


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_runs_the_schedule_on_a_real_prefect_server(dumps, trained, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    served = None
    try:

        def healthy() -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).status == 200
            except OSError:
                return False

        wait_for(healthy, 120, "the Prefect server")
        reports = tmp_path / "reports"
        served = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flows.cli",
                "serve",
                str(dumps),
                "--out",
                str(reports),
                "--interval",
                "5",
                "--model",
                str(trained["model"]),
                "--store",
                str(tmp_path / "store"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def completed_runs() -> list:
            body = json.dumps({"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/flow_runs/filter",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            runs = json.loads(urllib.request.urlopen(request, timeout=5).read())
            return [r for r in runs if r.get("deployment_id")]

        runs = wait_for(completed_runs, 240, "a completed scheduled run")
        assert runs[0]["state_type"] == "COMPLETED"
        for night in ("2026-11-20", "2026-11-21"):
            assert (reports / night / "report.html").is_file()
            assert json.loads((reports / night / "run.json").read_text())["files"] == 3
    finally:
        for process in (served, server):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
