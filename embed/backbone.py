"""Frozen ViT backbones: where their weights are, what they are (the fingerprint), and how they run.

A backbone is named by `dinov2-s14` (the built-in default), a local transformers folder, or a hub id.
Everything the store's fingerprint needs is read from the folder without building the model, so a
re-run on stored images never pays for a model load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from faceaudit.data.atomic import write_text
from faceaudit.data.text import first_line
from faceaudit.embed.default_backbone import DEFAULT_BACKBONE, cache_root, default_backbone_dir

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_DINOV2_TYPES = ("dinov2", "dinov2_with_registers")
# DINOv2 is trained at 518 px but works at any multiple of its patch; 224 px keeps it affordable on CPUs.
_MAX_INPUT = 224


class BackboneError(Exception):
    """A backbone cannot be found or loaded; the message says why in one line."""


@dataclass(frozen=True)
class BackboneInfo:
    """What identifies a backbone and shapes its input and output, known without loading it."""

    name: str
    folder: Path = field(compare=False)
    model_type: str
    weights_sha256: str
    input_size: int
    patch_size: int
    hidden_size: int
    depth: int
    num_prefix_tokens: int

    def describe(self) -> dict:
        return {
            "name": self.name,
            "model_type": self.model_type,
            "weights_sha256": self.weights_sha256,
            "input_size": self.input_size,
            "patch_size": self.patch_size,
            "hidden_size": self.hidden_size,
            "depth": self.depth,
        }


def resolve_folder(name: str) -> Path:
    """The local folder holding backbone `name`, fetching a hub id only if it is not cached."""
    if name == DEFAULT_BACKBONE:
        try:
            return default_backbone_dir()
        except FileNotFoundError as exc:
            raise BackboneError(str(exc)) from None
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackboneError(f"{path} is not a transformers model folder: it has no config.json")
        return path
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise BackboneError(
            f"backbone {name!r} is neither {DEFAULT_BACKBONE!r}, a model folder, nor a hub id like owner/name"
        )
    from huggingface_hub import snapshot_download

    patterns = ["config.json", "preprocessor_config.json", *_WEIGHT_FILES]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as exc:
        reason = first_line(exc)
        raise BackboneError(
            f"cannot fetch backbone {name!r} from the Hugging Face hub ({reason}); "
            "on a machine without the hub, pass a local model folder"
        ) from None


def describe_backbone(name: str = DEFAULT_BACKBONE) -> BackboneInfo:
    """Read a backbone's identity and geometry from its folder (config and weights hash)."""
    folder = resolve_folder(name)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise BackboneError(f"{folder / 'config.json'} cannot be read as a model config: {exc}") from None
    if not isinstance(config, dict):
        raise BackboneError(f"{folder / 'config.json'} is not a JSON object")
    model_type = config.get("model_type", "")
    patch = int(config.get("patch_size", 16))
    size = int(config.get("image_size", 224))
    if model_type in _DINOV2_TYPES:
        size = min(size, _MAX_INPUT) // patch * patch
    try:
        hidden, depth = int(config["hidden_size"]), int(config["num_hidden_layers"])
    except KeyError as exc:
        raise BackboneError(f"{folder}/config.json lacks {exc}; is it a ViT-family model?") from None
    return BackboneInfo(
        name=name,
        folder=folder,
        model_type=model_type,
        weights_sha256=weights_sha256(folder),
        input_size=size,
        patch_size=patch,
        hidden_size=hidden,
        depth=depth,
        num_prefix_tokens=1 + int(config.get("num_register_tokens", 0)),
    )


def weights_sha256(folder: Path) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order.

    Independent of the file format, so a model re-saved by another library version keeps its identity.
    Cached by the weight file's size and modification time.
    """
    weights = next((folder / name for name in _WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise BackboneError(f"{folder} has no {' or '.join(_WEIGHT_FILES)}")
    stat = weights.stat()
    key = f"{weights.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = cache_root() / "weights-sha256.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    for name, array in sorted(_read_tensors(weights).items()):
        digest.update(f"{name}|{array.dtype}|{tuple(array.shape)}|".encode())
        digest.update(memoryview(array.reshape(-1).view("uint8")))
    value = digest.hexdigest()
    cache[key] = value
    with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash next time
        write_text(cache_file, json.dumps(cache, indent=1))
    return value


def _read_tensors(path: Path) -> dict:
    import numpy as np

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    else:
        import torch

        tensors = torch.load(path, map_location="cpu", weights_only=True)
    return {
        name: np.ascontiguousarray(t.detach().float().numpy() if t.dtype.is_floating_point else t.numpy())
        for name, t in tensors.items()
    }


class Backbone:
    """A loaded, frozen backbone that returns every layer's tokens for a batch of images.

    `depth` keeps only the first layers: a pooling that reads layers 4, 6 and 8 of a 12-layer ViT never
    looks at layers 9 to 12, and not running them saves a third of the forward pass.
    """

    def __init__(self, info: BackboneInfo, threads: int | None = None, depth: int | None = None) -> None:
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        set_threads(threads)
        self.info = info
        try:
            self.model = AutoModel.from_pretrained(info.folder).eval()
        except Exception as exc:  # transformers raises many types for a bad folder
            raise BackboneError(f"cannot load backbone from {info.folder}: {exc}") from None
        self.model.requires_grad_(False)
        self.norm = getattr(self.model, "layernorm", None) or torch.nn.Identity()
        layers = getattr(getattr(self.model, "encoder", None), "layer", None)
        if depth is not None and depth < info.depth and isinstance(layers, torch.nn.ModuleList):
            self.model.encoder.layer = layers[:depth]

    def hidden_states(self, pixel_values):
        """Embedding output followed by each kept layer's output (unnormalised), as a tuple."""
        return self.model(pixel_values=pixel_values, output_hidden_states=True).hidden_states


def set_threads(threads: int | None = None) -> int:
    """Use every core this process may run on for matrix work (2 here); returns the count."""
    import torch

    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, threads))
    return threads
