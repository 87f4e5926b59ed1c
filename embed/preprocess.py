"""Pixels in, normalised tensors out. No torchvision: Pillow and numpy do all of it.

`scale` (the default) brings every image's short side to the input size and takes the centre square:
a face reaches the backbone at one scale whether the file is 200 or 2,000 pixels wide, so the head
cannot learn "large file means AI" and a 1024 px fake is not seen as a close-up of a nose.
`crop` keeps native pixels (a centre crop, enlarging only small images); `resize` squeezes the whole
image to the input size, as the reference design did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, get_args

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PreprocessMode = Literal["scale", "crop", "resize"]
MODES: tuple[str, ...] = get_args(PreprocessMode)


@dataclass(frozen=True)
class Preprocess:
    """How an RGB image becomes the backbone's input; part of the store's fingerprint."""

    mode: str = "scale"
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
        if self.mode == "scale" and short != self.size:
            # Short side to the input size, long side in proportion (never below the input size).
            scale = self.size / short
            width, height = max(self.size, round(width * scale)), max(self.size, round(height * scale))
            image = image.resize((width, height), Image.Resampling.BICUBIC)
        elif short < self.size:
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
        """Size a JPEG may be decoded at, at least: `scale` and `resize` shrink it anyway."""
        return None if self.mode == "crop" else (self.size, self.size)

    def describe(self) -> dict:
        return asdict(self)
