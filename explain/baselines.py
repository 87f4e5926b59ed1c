"""What a hidden region is painted with, for occlusion and for the faithfulness check."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from PIL import Image, ImageFilter

OcclusionBaseline = Literal["blur", "mean"]
BASELINES: tuple[str, ...] = get_args(OcclusionBaseline)
DEFAULT_BASELINE = "blur"


def check_baseline(kind: str) -> None:
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")


def baseline_image(image: Image.Image, kind: str, window: int) -> Image.Image:
    """'blur': a heavy blur (radius a quarter of the window) keeps colours and removes detail;
    'mean': the image's mean colour everywhere."""
    check_baseline(kind)
    if kind == "mean":
        mean = tuple(int(c) for c in np.asarray(image).reshape(-1, 3).mean(axis=0))
        return Image.new("RGB", image.size, mean)
    return image.filter(ImageFilter.GaussianBlur(window / 4))
