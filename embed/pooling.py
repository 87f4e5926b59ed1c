"""Turn a ViT's token sequences into one vector per image.

Several layers can be read at once (early layers keep the low-level texture statistics that tell a
generator's output from a camera's); each chosen layer gives its CLS token, its mean patch token, both,
or both plus the patch tokens' standard deviation (how uniform the image's texture is across patches).

`+texture` adds the patch tokens' standard deviation of every layer below the first chosen one (1-3 for
layers 4, 6, 8). The CLS token and the deep layers describe the scene, the styling and the person as much
as the generator's traces, and a head trained on them learns "polished portrait = AI"; the early layers'
texture statistics carry the traces and little of the style (docs/features.md), so the head gets both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

PoolingKind = Literal["cls", "mean", "cls+mean", "cls+mean+std", "cls+mean+std+texture"]
KINDS: tuple[str, ...] = get_args(PoolingKind)


@dataclass(frozen=True)
class Pooling:
    """Which layers (1-based, the last is the model's depth) and which tokens make the vector."""

    kind: str = "cls+mean+std"
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown pooling {self.kind!r}; choose one of {', '.join(KINDS)}")

    def resolved(self, depth: int) -> Pooling:
        """The same pooling with its layers spelled out for a model `depth` layers deep.

        No layers given means a third, a half and two thirds of the depth: 4, 6 and 8 for a 12-layer ViT
        (chosen by the probe in bench/embed.py; the layers above 8 add nothing and cost a third).
        """
        layers = self.layers or default_layers(depth)
        bad = [layer for layer in layers if not 1 <= layer <= depth]
        if bad:
            raise ValueError(f"layers {bad} do not exist: the backbone has layers 1 to {depth}")
        return Pooling(self.kind, tuple(layers))

    @property
    def statistics(self) -> list[str]:
        """What each chosen layer gives (the texture layers are apart)."""
        return [part for part in self.kind.split("+") if part != "texture"]

    @property
    def texture_layers(self) -> tuple[int, ...]:
        """Layers below the first chosen one, whose patch spread `+texture` adds."""
        return tuple(range(1, min(self.layers))) if "texture" in self.kind and self.layers else ()

    def dim(self, hidden_size: int) -> int:
        return hidden_size * (len(self.layers) * len(self.statistics) + len(self.texture_layers))

    def __call__(self, hidden_states, num_prefix_tokens: int, norm):
        """Pool `hidden_states` (embeddings first, then one tensor per layer) into (batch, dim).

        `norm` is the backbone's final layer norm, applied to every chosen layer as DINOv2 does for
        its intermediate features, so that the last layer's vector equals the model's own output.
        """
        import torch

        parts = []
        for layer in self.layers:
            tokens = norm(hidden_states[layer])
            patches = tokens[:, num_prefix_tokens:]
            for statistic in self.statistics:
                if statistic == "cls":
                    parts.append(tokens[:, 0])
                elif statistic == "mean":
                    parts.append(patches.mean(dim=1))
                else:
                    parts.append(patches.std(dim=1))
        for layer in self.texture_layers:
            parts.append(norm(hidden_states[layer])[:, num_prefix_tokens:].std(dim=1))
        return torch.cat(parts, dim=1)

    def describe(self) -> dict:
        described = {"kind": self.kind, "layers": list(self.layers), "norm": "final_layernorm"}
        if "texture" in self.kind:
            described["texture_layers"] = list(self.texture_layers)
        return described


def default_layers(depth: int) -> tuple[int, ...]:
    return tuple(sorted({-(-depth * num // den) for num, den in ((1, 3), (1, 2), (2, 3))}))  # ceilings


def parse_layers(text: str | None) -> tuple[int, ...]:
    """'4,8,12' -> (4, 8, 12); empty or None -> () meaning the default."""
    if not text:
        return ()
    try:
        layers = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"--layers takes comma-separated layer numbers such as 4,8,12, not {text!r}"
        ) from None
    if len(set(layers)) != len(layers):
        raise ValueError(f"--layers repeats a layer: {text!r}")
    return layers
