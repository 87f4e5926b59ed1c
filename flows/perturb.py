"""Perturbations for robustness checks, applied in memory: users' dumps are recompressed, resized and
blurred on their way to us, and detectors of generated faces are known to collapse under that.

`resize:F` scales by any factor, `upscale:F` only enlarges (F >= 1: a 1024 px copy of a 256 px face),
`jpeg:Q` and its alias `reencode:Q` save the image again as a JPEG of quality Q."""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageFilter


def jpeg(quality: float) -> Callable[[Image.Image], Image.Image]:
    def apply(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(quality))
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return apply


def resize(factor: float) -> Callable[[Image.Image], Image.Image]:
    def apply(image: Image.Image) -> Image.Image:
        width, height = image.size
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        return image.resize(size, Image.Resampling.BICUBIC)

    return apply


def blur(radius: float) -> Callable[[Image.Image], Image.Image]:
    return lambda image: image.filter(ImageFilter.GaussianBlur(radius))


KINDS = {
    "jpeg": (jpeg, 1, 100),
    "reencode": (jpeg, 1, 100),
    "resize": (resize, 0.05, 4.0),
    "upscale": (resize, 1.0, 4.0),
    "blur": (blur, 0.0, 20.0),
}


def parse_perturbations(text: str | None) -> list[tuple[str, Callable[[Image.Image], Image.Image]]]:
    """'jpeg:75,resize:0.5,blur:1' -> named functions; ValueError with the reason on bad input."""
    out = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        kind, _, value = part.partition(":")
        if kind not in KINDS:
            raise ValueError(
                f"unknown perturbation {kind!r} in --perturb; use {', '.join(KINDS)} as kind:value"
            )
        make, low, high = KINDS[kind]
        try:
            number = float(value)
        except ValueError:
            raise ValueError(
                f"--perturb {part!r} needs a number after the colon, e.g. {kind}:{high / 2:g}"
            ) from None
        if not low <= number <= high:
            raise ValueError(f"--perturb {part!r}: the value must lie between {low:g} and {high:g}")
        out.append((part, make(number)))
    return out
