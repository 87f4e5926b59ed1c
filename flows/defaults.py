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
