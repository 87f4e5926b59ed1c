"""Default locations, kept light: the command line imports this before anything heavy."""

from __future__ import annotations

import os
from pathlib import Path

# Choices the command line checks before any heavy import, and the flows check again for Python callers.
EXPLAIN_CHOICES = ("flagged", "all", "none")
EXPLAIN_METHODS = ("occlusion", "gradient", "both")
OCCLUSION_BASELINES = ("blur", "mean")


def default_store_dir() -> Path:
    """$FACEAUDIT_STORE, else `faceaudit/store` in the platform's user data dir."""
    override = os.environ.get("FACEAUDIT_STORE")
    if override:
        return Path(override)
    from platformdirs import user_data_dir

    return Path(user_data_dir("faceaudit")) / "store"


def contain_library_state() -> None:
    """Send the files matplotlib, torch and Prefect would drop in HOME or /tmp to faceaudit's cache dir,
    so that a run writes only under --out, --store and that dir. Settings a user made still win, and
    an existing ~/.prefect (someone who uses Prefect) is left in charge."""
    from embed.default_backbone import cache_root

    cache = cache_root()
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "torchinductor"))
    if "PREFECT_HOME" not in os.environ and not (Path.home() / ".prefect").exists():
        (cache / "prefect").mkdir(parents=True, exist_ok=True)  # Prefect makes only the last level
        os.environ["PREFECT_HOME"] = str(cache / "prefect")
