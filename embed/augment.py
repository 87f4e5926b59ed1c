"""Augmented training views: the same face restyled, rescaled, blurred and re-encoded, for both classes alike.

Files reach users resized and recompressed, and every source of training faces has its own size and
JPEG settings. Training on views that vary both teaches the head to read the face, not the file: a
real photo shrunk and recompressed is still real, a fake enlarged is still fake.

Styling differs by class in the training sources more than any generator trace does: the AI sources
are studio looks on plain backdrops, most real sources are snapshots. So about half the views are also
restyled the way photographers and phone cameras restyle real photos (a plain or blurred backdrop,
colour grading, a vignette, retouch-like skin smoothing), to real and AI faces alike: a plain backdrop or
a polished skin then stops meaning "AI".

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
from PIL import Image, ImageEnhance, ImageFilter

# A view never grows past this many pixels on its long side: enough for a 4x view of a 512 px face.
MAX_VIEW_SIDE = 2048
DEFAULT_VIEWS = 2


@dataclass(frozen=True)
class Augmentation:
    """How training views are drawn: a photo style sometimes (`style_chance`), a log-uniform rescale, a
    blur sometimes, a JPEG re-encode always."""

    scale: tuple[float, float] = (0.5, 2.0)
    quality: tuple[int, int] = (60, 95)
    blur_radius: tuple[float, float] = (0.3, 1.2)
    blur_chance: float = 0.3
    style_chance: float = 0.5
    version: int = 2

    def __post_init__(self) -> None:
        low, high = self.scale
        if not 0.05 <= low <= high <= 8:
            raise ValueError(f"augmentation scale range {self.scale} must lie within 0.05-8, low first")
        if not 1 <= self.quality[0] <= self.quality[1] <= 100:
            raise ValueError(f"augmentation JPEG quality range {self.quality} must lie within 1-100")
        for name in ("blur_chance", "style_chance"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(
                    f"augmentation {name.replace('_', ' ')} {getattr(self, name)} must lie within 0-1"
                )

    def describe(self) -> dict:
        return asdict(self)

    @classmethod
    def from_description(cls, description: dict) -> Augmentation:
        """The augmentation `describe()` wrote (into a model card): JSON lists back to tuples. Version 1
        had no styling."""
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in description.items()}
        if fields.get("version") == 1:
            fields.setdefault("style_chance", 0.0)
        return cls(**fields)

    def key(self, sha256: str, view: int) -> str:
        """The store key of view number `view` (1-based) of the image with content hash `sha256`."""
        spec = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"view|{spec}|{sha256}|{view}".encode()).hexdigest()

    def apply(self, image: Image.Image, sha256: str, view: int) -> Image.Image:
        """View number `view` of `image`: the same draws every time for the same hash and number."""
        rng = np.random.default_rng(int(self.key(sha256, view)[:16], 16))
        if rng.random() < self.style_chance:
            image = restyle(image, rng)
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


# ---- photo styles --------------------------------------------------------------------------------
# Each takes an RGB image and the view's generator and returns a restyled RGB image of the same size.
# The face is assumed near the centre (as in portraits and in every preprocessing's centre square).


def _centre_mask(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A soft ellipse over the middle of the picture (the subject), 255 inside, 0 outside."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    rx, ry = width * rng.uniform(0.36, 0.46), height * rng.uniform(0.46, 0.58)
    cx, cy = width * rng.uniform(0.46, 0.54), height * rng.uniform(0.5, 0.58)
    distance = np.sqrt(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2)
    alpha = np.clip((1.2 - distance) / 0.3, 0, 1)  # a feathered edge, as a portrait mode's is
    return Image.fromarray((alpha * 255).astype(np.uint8), "L")


def _backdrop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Plain studio backdrop (grey or a muted colour, with a soft gradient) or a portrait-mode blur."""
    mask = _centre_mask(image.size, rng)
    if rng.random() < 0.5:
        radius = max(image.size) * rng.uniform(0.02, 0.05)
        return Image.composite(image, image.filter(ImageFilter.GaussianBlur(radius)), mask)
    width, height = image.size
    base = rng.uniform(90, 200) + rng.normal(0, 12, 3)
    shade = np.linspace(rng.uniform(-25, 0), rng.uniform(0, 25), height, dtype=np.float32)[:, None, None]
    flat = np.clip(base[None, None, :] + shade + np.zeros((1, width, 1), np.float32), 0, 255)
    return Image.composite(image, Image.fromarray(flat.astype(np.uint8), "RGB"), mask)


def _grade(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Colour grading: saturation, contrast, a warm or cool cast and a tone curve."""
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.25))
    array = np.asarray(image, np.float32) / 255.0
    gains = 1.0 + rng.uniform(-0.08, 0.08) * np.array([1.0, 0.2, -1.0], np.float32)
    array = np.clip(array * gains, 0, 1) ** rng.uniform(0.8, 1.25)
    return Image.fromarray((array * 255 + 0.5).astype(np.uint8), "RGB")


def _vignette(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xs / width - 0.5) ** 2 + (ys / height - 0.5) ** 2) / 0.5
    falloff = 1.0 - rng.uniform(0.2, 0.5) * r2 ** rng.uniform(1.0, 2.0)
    array = np.asarray(image, np.float32) * falloff[:, :, None]
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")


def _smooth(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Retouch-like skin smoothing: a blurred copy blended in, edges sharpened back a little."""
    radius = max(image.size) * rng.uniform(0.004, 0.012)
    soft = Image.blend(image, image.filter(ImageFilter.GaussianBlur(radius)), rng.uniform(0.4, 0.8))
    return soft.filter(ImageFilter.UnsharpMask(radius=2, percent=int(rng.uniform(20, 80)), threshold=3))


_STYLES = (_backdrop, _grade, _vignette, _smooth)


def restyle(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One or two photo styles, in a fixed order, drawn from `rng`."""
    chosen = rng.choice(len(_STYLES), size=int(rng.integers(1, 3)), replace=False)
    for index in sorted(chosen):
        image = _STYLES[index](image.convert("RGB"), rng)
    return image
