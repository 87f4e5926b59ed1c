"""Default locations, kept light: the command line imports this before anything heavy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

# Choices as types: flows annotate their parameters with them, so Prefect's parameter schema offers
# them as enums and refuses anything else; the command line checks the same tuples before heavy imports.
Explain = Literal["flagged", "all", "none"]
ExplainMethod = Literal["occlusion", "gradient", "both"]
EvalSplit = Literal["all", "train", "val", "test"]
EXPLAIN_CHOICES: tuple[str, ...] = get_args(Explain)
EXPLAIN_METHODS: tuple[str, ...] = get_args(ExplainMethod)
EVAL_SPLITS: tuple[str, ...] = get_args(EvalSplit)

DEFAULT_EXPLAIN = "flagged"
DEFAULT_EXPLAIN_METHOD = "occlusion"
DEFAULT_BATCH_SIZE = 16
DEFAULT_WORKERS = 1

# Exit codes of the command line, documented in the README.
EXIT_FAILED = 1  # the run ended with an error (a nightly: some dumps failed, the others were scored)
EXIT_USAGE = 2  # the input cannot be used at all: a bad flag, a missing folder, a broken model
EXIT_BUSY = 75  # OUT is held by another run, or the Prefect server is down: retry later (EX_TEMPFAIL)
EXIT_INTERRUPTED = 130


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
    from faceaudit.embed.default_backbone import cache_root

    cache = cache_root()
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "torchinductor"))
    if "PREFECT_HOME" not in os.environ and not (Path.home() / ".prefect").exists():
        (cache / "prefect").mkdir(parents=True, exist_ok=True)  # Prefect makes only the last level
        os.environ["PREFECT_HOME"] = str(cache / "prefect")
