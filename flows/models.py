"""Where the built-in model lives, how a `--model` argument is resolved, and which embedding a model
needs (rebuilt from its card, checked against its fingerprint)."""

from __future__ import annotations

from pathlib import Path

from faceaudit.embed.spec import EmbeddingSpec, make_spec
from faceaudit.head.model import FaceauditModel, ModelError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "head" / "default_model"


def resolve_model(model_dir: str | Path | None) -> Path:
    """`model_dir` if given, else the built-in model shipped with the code."""
    return Path(model_dir) if model_dir else DEFAULT_MODEL_DIR


def spec_of(model: FaceauditModel) -> EmbeddingSpec:
    """The embedding spec the model was trained on, rebuilt from its card and checked."""
    described = model.info["embedding"].get("describe")
    if described is None:
        raise ModelError(
            "the model's card has no 'embedding.describe': it does not say which preprocessing and "
            "pooling made its vectors, so nothing can be scored with it"
        )
    spec = make_spec(
        model.info["embedding"]["backbone"],
        described["preprocess"]["mode"],
        described["pooling"]["kind"],
        tuple(described["pooling"]["layers"]),
    )
    model.check_fingerprint(spec.fingerprint)
    return spec
