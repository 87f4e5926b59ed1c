"""Pixels in, normalised tensors out. No torchvision: Pillow and numpy do all of it.

`scale` brings every image's short side to the input size and takes the centre square:
a face reaches the backbone at one scale whether the file is 200 or 2,000 pixels wide, so the head
cannot learn "large file means AI" and a 1024 px fake is not seen as a close-up of a nose.
`crop` keeps native pixels (a centre crop, enlarging only small images); `resize` squeezes the whole
image to the input size, as the reference design did. `face` finds the largest frontal face (OpenCV's
Haar cascade, shipped in the opencv-python-headless wheel), takes a square of 1.6 times its box around
it, and brings that to the input size; with no face found it falls back to `scale`'s centre square.
Measured in docs/features.md; not the default. `scale-face` (the default) is `scale` whose square
slides along the long side to the largest face (the same cascade, run on the scaled image), so a tall
portrait is judged on its face and not its torso; a square image, or one with no face found, gets
`scale`'s square.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass
from typing import Literal, get_args

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PreprocessMode = Literal["scale", "crop", "resize", "face", "scale-face"]
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
        if self.mode == "face":
            box = face_square(image)
            if box is not None:
                return image.crop(box).resize((self.size, self.size), Image.Resampling.BICUBIC)
            return Preprocess("scale", self.size, self.mean, self.std).fit(image)
        if self.mode == "resize":
            return image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        width, height = image.size
        short = min(width, height)
        scaled = self.mode in ("scale", "scale-face")
        if scaled and short != self.size:
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
        if self.mode == "scale-face" and width != height:
            left, top = placed_on_face(image, self.size, (left, top))
        return image.crop((left, top, left + self.size, top + self.size))

    def normalise(self, image: Image.Image) -> np.ndarray:
        """(3, size, size) float32, ImageNet-normalised."""
        array = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
        array = (array - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(array.transpose(2, 0, 1))

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.normalise(self.fit(image))

    def draft_size(self) -> tuple[int, int] | None:
        """Size a JPEG may be decoded at, at least: `scale` and `resize` shrink it anyway (`face` needs
        the detector's copy and the face's own pixels)."""
        if self.mode == "face":
            return (FACE_SEARCH_SIDE, FACE_SEARCH_SIDE)
        return None if self.mode == "crop" else (self.size, self.size)

    def describe(self) -> dict:
        described = asdict(self)
        if self.mode == "face":
            described["face"] = FACE_DETECTOR
        if self.mode == "scale-face":
            described["place"] = FACE_PLACEMENT
        return described


# The face finder: what it is and how it is run is part of the `face` mode's fingerprint.
FACE_SEARCH_SIDE = 512  # the detector looks at a copy this many pixels on its long side
FACE_DETECTOR = {
    "cascade": "haarcascade_frontalface_alt2.xml",
    "scale_factor": 1.1,
    "min_neighbors": 5,
    "min_size": 0.15,  # of the copy's short side
    "margin": 1.6,  # the square's side, in face-box sides
}
# `scale-face`: the same cascade on the scaled image (short side = input size), faces down to a tenth of
# the short side (a head in a full-length portrait), never below the cascade's own 20 px window.
FACE_PLACEMENT = {
    **{key: FACE_DETECTOR[key] for key in ("cascade", "scale_factor", "min_neighbors")},
    "min_size": 0.1,
    "on": "the scaled image; the square is centred on the largest face along the long side",
}


_THREAD = threading.local()


def cascade(name: str):
    """One of the Haar cascades shipped in the opencv-python-headless wheel, loaded once per thread:
    a classifier shared by two threads corrupts its own state (measured: an OpenCV range error)."""
    import cv2

    loaded = _THREAD.__dict__.setdefault("cascades", {})
    if name not in loaded:
        loaded[name] = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    return loaded[name]


def largest_face(gray: Image.Image, settings: dict) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the largest face that `settings["cascade"]` finds in a greyscale image
    (frontal for the `face` input, frontal or profile for the `face` column), or None."""
    side = max(20, int(min(gray.size) * settings["min_size"]))
    found = cascade(settings["cascade"]).detectMultiScale(
        np.asarray(gray),
        scaleFactor=settings["scale_factor"],
        minNeighbors=settings["min_neighbors"],
        minSize=(side, side),
    )
    if len(found) == 0:
        return None
    return tuple(int(v) for v in max(found, key=lambda box: box[2] * box[3]))


def placed_on_face(scaled: Image.Image, size: int, centre: tuple[int, int]) -> tuple[int, int]:
    """(left, top) of the `size` square of an image whose short side is `size`: centred on the largest
    face along the long side, inside the image; `centre` when no face is found."""
    found = largest_face(scaled.convert("L"), FACE_PLACEMENT)
    if found is None:
        return centre
    x, y, w, h = found
    width, height = scaled.size
    left = min(max(round(x + w / 2 - size / 2), 0), width - size)
    top = min(max(round(y + h / 2 - size / 2), 0), height - size)
    return left, top


def face_square(image: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of a square around the largest frontal face, inside the image; None
    when no face is found."""
    width, height = image.size
    factor = min(1.0, FACE_SEARCH_SIDE / max(width, height))
    small = image.convert("L").resize((max(1, round(width * factor)), max(1, round(height * factor))))
    found = largest_face(small, FACE_DETECTOR)
    if found is None:
        return None
    x, y, w, h = (value / factor for value in found)
    square = min(max(w, h) * FACE_DETECTOR["margin"], width, height)
    left = min(max(x + w / 2 - square / 2, 0), width - square)
    top = min(max(y + h / 2 - square / 2, 0), height - square)
    return round(left), round(top), round(left + square), round(top + square)
