"""faceaudit as one import package, `faceaudit`, beside another project that has its own top-level
`flows` and `data` packages (as in a Prefect worker's shared environment)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from tests.conftest import ROOT


def other_project(root: Path) -> Path:
    """A tiny installable project with top-level packages named like faceaudit's folders."""
    for package, body in (("flows", "WHO = 'the other project'\n"), ("data", "")):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        (root / package / "helpers.py").write_text(body)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "other-flows"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["flows", "data"]\n'
    )
    return root


def test_faceaudit_runs_beside_a_project_with_its_own_flows_and_data(trained: dict, tmp_path: Path) -> None:
    other = other_project(tmp_path / "other")
    env = {**os.environ, "PYTHONPATH": str(other)}  # found before anything installed in the venv
    code = (
        "import faceaudit, flows.helpers, data.helpers, faceaudit.flows.cli, faceaudit.data.records; "
        "print(faceaudit.__version__, flows.helpers.WHO, faceaudit.flows.cli.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 1) == [version("faceaudit"), "the other project faceaudit.flows.cli\n"]

    dump = tmp_path / "dump"
    dump.mkdir()
    image = sorted((trained["data"] / "alpha").rglob("*.png"))[0]
    (dump / "face.png").write_bytes(image.read_bytes())
    scored = subprocess.run(
        ["faceaudit", "score", str(dump), "--out", str(tmp_path / "out"), "--model", str(trained["model"]),
         "--store", str(tmp_path / "store"), "--explain", "none", "--samples", "20"],
        capture_output=True, text=True, env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
        cwd=tmp_path,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    assert (tmp_path / "out" / "verdicts.csv").read_text().count("\n") == 2


def test_the_repository_installs_only_the_faceaudit_package() -> None:
    top_level = Path(sys.prefix).glob("lib/python*/site-packages/faceaudit-*.dist-info/top_level.txt")
    names = {line for path in top_level for line in path.read_text().split()}
    assert names <= {"faceaudit"}
    assert not any((Path(sys.prefix) / "bin").glob("flows*"))
    assert (ROOT / "faceaudit" / "__init__.py").is_file()
