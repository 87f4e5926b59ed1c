"""Turn a ViT's token sequences into one vector per image.

Several layers can be read at once (early layers keep the low-level texture statistics that tell a
generator's output from a camera's); each chosen layer gives its CLS token, its mean patch token, both,
or both plus the patch tokens' standard deviation (how uniform the image's texture is across patches).

`+texture` adds the patch tokens' standard deviation of every layer below the first chosen one (1-3 for
layers 4, 6, 8). The CLS token and the deep layers describe the scene, the styling and the person as much
as the generator's traces, and a head trained on them learns "polished portrait = AI"; the early layers'
texture statistics carry the traces and little of the style (docs/features.md), so the head gets both.

`+zoom` reads the same statistics of the same layers a second time, from a second forward pass on the
centre half of the input enlarged to the full input size (`zoom_input`): eyes, nose and mouth reach the
backbone at twice the scale, four patches where there was one. The whole-face vector says what the face
looks like; the zoomed one sees the skin, teeth and iris detail a generator gets wrong. With one band,
bench/features.py's probe judges 83% of the eleven sources' test split with both and 66% with the whole
face alone (docs/features.md), for a second forward pass. The zoom is made from the input itself, not from the
file, so it scales with the file as the input does, and an occlusion map painted on the input reaches
both passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

PoolingKind = Literal["cls", "mean", "cls+mean", "cls+mean+std", "cls+mean+std+texture", "cls+mean+std+zoom"]
KINDS: tuple[str, ...] = get_args(PoolingKind)
ZOOM_CENTRE = 0.5  # the side of the square `+zoom` enlarges to the full input, as a share of the input's


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
        return [part for part in self.kind.split("+") if part not in ("texture", "zoom")]

    @property
    def zoom(self) -> bool:
        """Whether a second forward pass on the enlarged centre adds its own statistics."""
        return "zoom" in self.kind.split("+")

    @property
    def texture_layers(self) -> tuple[int, ...]:
        """Layers below the first chosen one, whose patch spread `+texture` adds."""
        return tuple(range(1, min(self.layers))) if "texture" in self.kind and self.layers else ()

    def blocks(self) -> list[str]:
        """The statistic of each `hidden_size` block of the vector, in order: the whole input's pass
        (`whole`: each chosen layer's statistics, then `+texture`'s spreads), then `+zoom`'s pass."""
        per_pass = [name for _ in self.layers for name in self.statistics]
        return per_pass + ["std"] * len(self.texture_layers) + (per_pass if self.zoom else [])

    def columns_of(self, statistic: str, hidden_size: int) -> list[int]:
        """Positions in the vector of one statistic ('cls', 'mean' or 'std') of every chosen layer, in
        both passes with `+zoom`; `+texture`'s layers count as 'std'."""
        return [
            b * hidden_size + i
            for b, name in enumerate(self.blocks())
            if name == statistic
            for i in range(hidden_size)
        ]

    def dim(self, hidden_size: int) -> int:
        return hidden_size * len(self.blocks())

    def __call__(self, hidden_states, num_prefix_tokens: int, norm, zoomed_states=None):
        """Pool `hidden_states` (embeddings first, then one tensor per layer) into (batch, dim);
        `zoomed_states` are those of the zoomed input (`zoom_input`), needed when `zoom` is set.

        `norm` is the backbone's final layer norm, applied to every chosen layer as DINOv2 does for
        its intermediate features, so that the last layer's vector equals the model's own output.
        """
        import torch

        if self.zoom and zoomed_states is None:
            raise ValueError("this pooling reads a zoomed pass too: pass zoomed_states")
        whole = self.whole(hidden_states, num_prefix_tokens, norm)
        if not self.zoom:
            return whole
        return torch.cat([whole, self.zoomed(zoomed_states, num_prefix_tokens, norm)], dim=1)

    def whole(self, hidden_states, num_prefix_tokens: int, norm):
        """The vector's first part, from the whole input's pass (everything but `+zoom`'s half)."""
        import torch

        parts = self._statistics_of(hidden_states, num_prefix_tokens, norm)
        for layer in self.texture_layers:
            parts.append(norm(hidden_states[layer])[:, num_prefix_tokens:].std(dim=1))
        return torch.cat(parts, dim=1)

    def zoomed(self, zoomed_states, num_prefix_tokens: int, norm):
        """`+zoom`'s half of the vector, from the zoomed pass: it ends the vector."""
        import torch

        return torch.cat(self._statistics_of(zoomed_states, num_prefix_tokens, norm), dim=1)

    def _statistics_of(self, hidden_states, num_prefix_tokens: int, norm) -> list:
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
        return parts

    def describe(self) -> dict:
        described = {"kind": self.kind, "layers": list(self.layers), "norm": "final_layernorm"}
        if "texture" in self.kind:
            described["texture_layers"] = list(self.texture_layers)
        if self.zoom:
            described["zoom"] = {"centre": ZOOM_CENTRE, "enlarged": 1 / ZOOM_CENTRE, "resample": "bicubic"}
        return described


def zoom_box(size: int) -> slice:
    """Rows (and columns) of an S x S input that `+zoom` enlarges: the centre ZOOM_CENTRE of the side.
    The zoomed pass reads these pixels and no others."""
    side = round(size * ZOOM_CENTRE)
    start = (size - side) // 2
    return slice(start, start + side)


def zoom_input(pixels):
    """The centre square (`zoom_box`) of each (N, 3, S, S) torch input, enlarged (bicubic) back to
    S x S."""
    import torch.nn.functional as F

    size = pixels.shape[-1]
    box = zoom_box(size)
    return F.interpolate(pixels[..., box, box], size=(size, size), mode="bicubic", align_corners=False)


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
