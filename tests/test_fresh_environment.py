"""The install works as a packager would do it: a fresh virtual environment built from pyproject.toml's
ranges alone (no lock) runs a real `prefect server start`, one recorded `faceaudit score`, and Prefect's
own `prefect flow-run ls` listing that run, with `pip check` clean. Needs the package index (CI has it);
skips, saying so, where it cannot be reached.

The lock's own environment is the one every other test runs in: test_weights runs `pip check` in it,
and the session's Prefect server (tests/conftest.py) and test_orchestration's recorded runs are the
same checks made there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, start_prefect_server, stop_group
from tests.test_packaging import other_project

UV = Path(sys.executable).parent / "uv"


def uv_options() -> list[str]:
    """The machine's wheel folder (the CPU build of torch) and package index, as `make setup` uses them.
    Without `make setup`'s `--compile-bytecode`: compiling every module of the stack took 87 s of CPU
    here, and the few commands run in this environment compile the modules they import as they go."""
    options = []
    if os.environ.get("PIP_FIND_LINKS"):
        options += ["--find-links", os.environ["PIP_FIND_LINKS"]]
    if os.environ.get("PIP_INDEX_URL"):
        options += ["--index-url", os.environ["PIP_INDEX_URL"]]
    return options


def copy_of_checkout(target: Path) -> Path:
    """The files git tracks, copied: what a clean clone holds, nothing built or left over."""
    tracked = subprocess.run(
        ["git", "-C", ROOT, "ls-files", "-z"], capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        source, copy = ROOT / os.fsdecode(name), target / os.fsdecode(name)
        if source.is_file():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)
    return target


@pytest.fixture(scope="module")
def ranges_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with faceaudit built as a wheel and installed from its ranges alone; its bin/."""
    if not UV.exists():
        pytest.fail(f"{UV} is missing: `make setup` installs uv")
    base = tmp_path_factory.mktemp("fresh")
    source = copy_of_checkout(base / "source")  # the build writes build/ beside the sources
    venv = base / "venv"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, venv], check=True)
    other = other_project(base / "other")  # a project with its own `flows` and `data`, installed beside
    install = subprocess.run(
        [UV, "pip", "install", "--python", venv / "bin" / "python", *uv_options(), source, other],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        said = install.stderr.lower()
        if any(word in said for word in ("failed to fetch", "connect", "dns", "network", "offline")):
            pytest.skip(f"the package index cannot be reached: {install.stderr.strip().splitlines()[-1]}")
        raise AssertionError(install.stderr)
    return venv / "bin"


def check_environment(bin_dir: Path, trained: dict, tmp_path: Path) -> None:
    """pip check, a real server, one recorded score, and the run in `prefect flow-run ls`."""
    check = subprocess.run(
        [UV, "pip", "check", "--python", bin_dir / "python"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # PYTHONDONTWRITEBYTECODE off: the first command writes the bytecode the later ones read.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    env |= {"COLUMNS": "250"}
    server, url = start_prefect_server(tmp_path / "prefect", prefect=(str(bin_dir / "prefect"),), env=env)
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": url}
    try:
        dump = tmp_path / "dump"
        dump.mkdir()
        for image in sorted((trained["data"] / "alpha").rglob("*.png"))[:2]:
            (dump / image.name).write_bytes(image.read_bytes())
        scored = subprocess.run(
            [bin_dir / "faceaudit", "score", dump, "--out", tmp_path / "out", "--model", trained["model"],
             "--store", tmp_path / "store", "--explain", "none", "--samples", "20"],
            capture_output=True, text=True, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert scored.returncode == 0, scored.stderr
        assert "Flow run 'score dump'" in scored.stderr  # recorded: the run logs through Prefect
        listed = subprocess.run(
            [bin_dir / "prefect", "flow-run", "ls"], capture_output=True, text=True, env=env, cwd=tmp_path
        )
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert "score dump" in listed.stdout and "COMPLETED" in listed.stdout, listed.stdout
    finally:
        stop_group(server)


def test_a_fresh_environment_from_the_ranges_runs_server_score_and_cli(
    ranges_env: Path, trained: dict, tmp_path: Path
) -> None:
    check_environment(ranges_env, trained, tmp_path)
    # The other project's packages and faceaudit's, side by side in the one environment.
    code = "import flows.helpers, faceaudit.flows.cli; print(flows.helpers.WHO)"
    beside = subprocess.run([ranges_env / "python", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert beside.stdout.strip() == "the other project", beside.stderr
