"""`faceaudit nightly`: each dump scored once into its own report, and again only when it changes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import faceaudit


@pytest.fixture
def dumps(trained: dict, tmp_path: Path) -> Path:
    root = tmp_path / "dumps"
    images = sorted((trained["data"] / "beta").rglob("*.png"))
    for night, chosen in (("2026-11-20", images[:3]), ("2026-11-21", images[-3:])):
        (root / night).mkdir(parents=True)
        for image in chosen:
            shutil.copyfile(image, root / night / image.name)
    return root


def nightly(dumps: Path, reports: Path, trained: dict, store: Path, code: int = 0) -> str:
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
    assert result.returncode == code, result.stderr
    return result.stdout + result.stderr


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

    # A report an older version wrote, before the `face` column: same files, model and parameters, but
    # other columns. It is scored again, so the night's reports all carry this version's columns.
    older = reports / "2026-11-20" / "run.json"
    run = json.loads(older.read_text())
    assert "face" in run["columns"]
    older.write_text(json.dumps({**run, "columns": [c for c in run["columns"] if c != "face"]}))
    assert "1 dumps scored, 1 already up to date" in nightly(dumps, reports, trained, store)
    assert "face" in json.loads(older.read_text())["columns"]


def test_a_failed_dump_is_named_and_the_exit_code_says_so(dumps, trained, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "2026-11-20").write_text("a file where a report folder should go")
    said = nightly(dumps, reports, trained, tmp_path / "store", code=1)
    assert "failed 2026-11-20: UnsafePath: " in said and "2026-11-20 is not a folder" in said
    assert "1 dumps scored, 0 already up to date, 1 failed" in said
    assert json.loads((reports / "2026-11-21" / "run.json").read_text())["files"] == 3
