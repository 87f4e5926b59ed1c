"""Where the built-in model lives and how a `--model` argument is resolved."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "head" / "default_model"


def resolve_model(model_dir: str | Path | None) -> Path:
    """`model_dir` if given, else the built-in model shipped with the code."""
    return Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
