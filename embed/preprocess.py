"""Pixels in, normalised tensors out. No torchvision: Pillow and numpy do all of it.

`crop` keeps native pixels (generator artifacts live in the high frequencies that downsizing erases);
`resize` squeezes the whole image to the input size, as the reference design did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ("crop", "resize")


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the backbone's input; part of the store's fingerprint."""

    mode: str = "crop"
    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown preprocessing {self.mode!r}; choose one of {', '.join(MODES)}")

    def fit(self, image: Image.Image) -> Image.Image:
        """The RGB image at exactly `size` x `size` pixels, before normalisation."""
        if self.mode == "resize":
            return image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        width, height = image.size
        short = min(width, height)
        if short < self.size:
            # Enlarge only as far as the crop needs; never shrink.
            scale = self.size / short
            width, height = (
                max(self.size, math.ceil(width * scale)),
                max(self.size, math.ceil(height * scale)),
            )
            image = image.resize((width, height), Image.Resampling.BICUBIC)
        left, top = (width - self.size) // 2, (height - self.size) // 2
        return image.crop((left, top, left + self.size, top + self.size))

    def normalise(self, image: Image.Image) -> np.ndarray:
        """(3, size, size) float32, ImageNet-normalised."""
        array = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
        array = (array - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(array.transpose(2, 0, 1))

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.normalise(self.fit(image))

    def draft_size(self) -> tuple[int, int] | None:
        """Size a JPEG may be decoded at, at least: only `resize` can use a reduced decode."""
        return (self.size, self.size) if self.mode == "resize" else None

    def describe(self) -> dict:
        return asdict(self)
