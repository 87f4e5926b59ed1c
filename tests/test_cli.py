"""The `faceaudit` command line as a user runs it: a real process, real exit codes, real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import faceaudit, make_labelled_folder

ROOT = Path(__file__).resolve().parent.parent


def test_help_imports_no_heavy_library() -> None:
    """`faceaudit --help` must answer at once: torch, transformers and Prefect stay unloaded."""
    code = (
        "import sys, faceaudit.flows.cli; "
        "print(sorted(m for m in ('torch', 'transformers', 'prefect', 'pyro') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
    help_text = faceaudit("--help")
    assert help_text.returncode == 0 and "embed" in help_text.stdout


def test_bad_arguments_exit_non_zero_with_one_line(tmp_path: Path) -> None:
    missing = faceaudit("embed", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"faceaudit: error: input folder {tmp_path / 'nope'} does not exist"
    layers = faceaudit("embed", str(tmp_path), "--layers", "four")
    assert layers.returncode == 2 and len(layers.stderr.strip().splitlines()) == 1
    pooling = faceaudit("embed", str(tmp_path), "--pooling", "max")
    assert (
        pooling.returncode == 2
        and "'--pooling': 'max' is not one of 'cls', 'mean', 'cls+mean'" in pooling.stderr
    )
    backbone = faceaudit("embed", str(tmp_path), "--backbone", str(tmp_path))
    assert backbone.returncode == 2 and "has no config.json" in backbone.stderr


def test_every_refusal_has_one_style_and_every_choice_is_listed(tmp_path: Path) -> None:
    """The parser's refusals read like faceaudit's own: one line, `faceaudit: error:`, exit code 2."""
    for args, reason in (
        (("score",), "Missing argument 'INPUT_DIR' (see 'faceaudit score --help')"),
        (("score", str(tmp_path), "--out", str(tmp_path / "o"), "--samples", "0"), "'--samples'"),
        (
            ("nightly", str(tmp_path), "--out", str(tmp_path / "o"), "--explain", "most"),
            "'most' is not one of",
        ),
        (("frobnicate",), "No such command 'frobnicate' (see 'faceaudit --help')"),
        (
            (
                "train",
                str(tmp_path),
                "--model-out",
                str(tmp_path / "m"),
                "--head",
                "pyro-vi",
                "--members",
                "2",
            ),
            "--members applies to the mc-dropout head, not pyro-vi",
        ),
    ):
        result = faceaudit(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("faceaudit: error: ") and reason in lines[0], lines
    usage = faceaudit("score", "--help").stdout
    assert "{INPUT_DIR}" in usage and "<flagged|all|none>" in usage and "<occlusion|gradient|both>" in usage
    assert "<blur|mean>" in usage
    assert "<mc-dropout|pyro-vi>" in faceaudit("train", "--help").stdout
    serve = faceaudit("serve", "--help").stdout
    assert "--samples" in serve and "--explain" in serve


def test_embed_prints_a_summary_and_json(tiny_vit: Path, tmp_path: Path) -> None:
    folder = make_labelled_folder(tmp_path / "images", per_class=3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    store = tmp_path / "store"
    text = faceaudit("embed", str(folder), "--store", str(store), "--backbone", str(tiny_vit))
    assert text.returncode == 0, text.stderr
    assert "7 files: 6 new, 0 already stored, 0 duplicates, 1 unreadable" in text.stdout
    assert "unreadable: broken.jpg: cannot decode JPEG" in text.stdout

    again = faceaudit("embed", str(folder), "--store", str(store), "--backbone", str(tiny_vit), "--json")
    summary = json.loads(again.stdout)
    assert (summary["new"], summary["already_stored"], len(summary["unreadable"])) == (0, 6, 1)


def test_no_third_party_progress_bars_when_no_terminal_watches() -> None:
    """transformers' "Writing model shards" bar (a first run converting the backbone) stays off stderr."""
    code = (
        "from faceaudit.flows.cli import quiet_third_party_bars; quiet_third_party_bars(); "
        "from transformers.utils import logging; print(logging.is_progress_bar_enabled())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.strip() == "False"


def test_every_csv_column_is_documented_in_the_readme() -> None:
    from faceaudit.flows.scoring import COLUMNS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = [line for line in readme.splitlines() if line.lstrip().startswith("| `")]
    for column in COLUMNS:
        assert any(f"`{column}`" in line.split("|")[1] for line in table), column
