"""`faceaudit demo`: a small folder of pictures the project draws itself, run through the pipeline.

No image here comes from a dataset: every file is generated, so the demo can ship with the code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def draw_face(seed: int, size: int = 256) -> Image.Image:
    """A cartoon face on a soft background; different seeds give different faces."""
    rng = np.random.default_rng(seed)
    background = tuple(int(c) for c in rng.integers(90, 200, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    skin = tuple(int(c) for c in rng.integers(150, 240, 3))
    cx, cy = size // 2 + int(rng.integers(-12, 12)), size // 2 + int(rng.integers(-8, 8))
    rx, ry = int(size * rng.uniform(0.26, 0.33)), int(size * rng.uniform(0.34, 0.4))
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=skin)
    for side in (-1, 1):
        ex, ey = cx + side * rx // 2, cy - ry // 4
        draw.ellipse((ex - 12, ey - 7, ex + 12, ey + 7), fill="white")
        draw.ellipse((ex - 5, ey - 5, ex + 5, ey + 5), fill=(40, 30, 20))
    draw.arc((cx - rx // 2, cy + ry // 6, cx + rx // 2, cy + ry // 2), 10, 170, fill=(120, 40, 40), width=4)
    noise = rng.normal(0, 6, (size, size, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.6))


def write_sample_folder(folder: Path, count: int = 8) -> Path:
    """Generated faces plus one broken file, to show how unreadable input is reported."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(count):
        draw_face(seed).save(folder / f"face-{seed:02d}.jpg", quality=92)
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    return folder
