"""Augmented training views: the same face rescaled, blurred and re-encoded, for both classes alike.

Files reach users resized and recompressed, and every source of training faces has its own size and
JPEG settings. Training on views that vary both teaches the head to read the face, not the file: a
real photo shrunk and recompressed is still real, a fake enlarged is still fake.

A view is deterministic: its random draws come from the image's content hash and the view's number,
so it is embedded once and found again in the store under its own key (`Augmentation.key`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter

# A view never grows past this many pixels on its long side: enough for a 4x view of a 512 px face.
MAX_VIEW_SIDE = 2048
DEFAULT_VIEWS = 2


@dataclass(frozen=True)
class Augmentation:
    """How training views are drawn: a log-uniform rescale, a blur sometimes, a JPEG re-encode always."""

    scale: tuple[float, float] = (0.5, 2.0)
    quality: tuple[int, int] = (60, 95)
    blur_radius: tuple[float, float] = (0.3, 1.2)
    blur_chance: float = 0.3
    version: int = 1

    def __post_init__(self) -> None:
        low, high = self.scale
        if not 0.05 <= low <= high <= 8:
            raise ValueError(f"augmentation scale range {self.scale} must lie within 0.05-8, low first")
        if not 1 <= self.quality[0] <= self.quality[1] <= 100:
            raise ValueError(f"augmentation JPEG quality range {self.quality} must lie within 1-100")
        if not 0 <= self.blur_chance <= 1:
            raise ValueError(f"augmentation blur chance {self.blur_chance} must lie within 0-1")

    def describe(self) -> dict:
        return asdict(self)

    @classmethod
    def from_description(cls, description: dict) -> Augmentation:
        """The augmentation `describe()` wrote (into a model card): JSON lists back to tuples."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in description.items()})

    def key(self, sha256: str, view: int) -> str:
        """The store key of view number `view` (1-based) of the image with content hash `sha256`."""
        spec = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"view|{spec}|{sha256}|{view}".encode()).hexdigest()

    def apply(self, image: Image.Image, sha256: str, view: int) -> Image.Image:
        """View number `view` of `image`: the same draws every time for the same hash and number."""
        rng = np.random.default_rng(int(self.key(sha256, view)[:16], 16))
        factor = math.exp(rng.uniform(math.log(self.scale[0]), math.log(self.scale[1])))
        blurred = rng.random() < self.blur_chance
        radius = rng.uniform(*self.blur_radius)
        quality = int(rng.integers(self.quality[0], self.quality[1] + 1))
        width, height = image.size
        factor = min(factor, MAX_VIEW_SIDE / max(width, height, 1))
        size = (max(8, round(width * factor)), max(8, round(height * factor)))
        image = image.resize(size, Image.Resampling.BICUBIC)
        if blurred:
            image = image.filter(ImageFilter.GaussianBlur(radius))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
