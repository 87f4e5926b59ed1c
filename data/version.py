"""The code version written into every artifact, so any output can be traced to the code that made it."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@lru_cache(maxsize=1)
def code_version() -> str:
    """'0.1.0', plus '+g<commit>' (and '.dirty') when running from a git checkout."""
    try:
        base = version("faceaudit")
    except PackageNotFoundError:
        base = "0+unknown"
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / ".git").exists():
        return base
    try:
        commit = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return base
    return f"{base}+g{commit}{'.dirty' if dirty else ''}"
