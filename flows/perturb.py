"""Perturbations for robustness checks, applied in memory: users' dumps are recompressed, resized and
blurred on their way to us, and detectors of generated faces are known to collapse under that.

`resize:F` scales by any factor, `upscale:F` only enlarges (F >= 1: a 1024 px copy of a 256 px face),
`jpeg:Q` and its alias `reencode:Q` save the image again as a JPEG of quality Q."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFilter

if TYPE_CHECKING:
    from faceaudit.data.records import ImageRecord
    from faceaudit.embed.spec import EmbeddingSpec
    from faceaudit.flows.labelled import LabelledSet
    from faceaudit.head.model import FaceauditModel

# What `train` measures on its test split: the verdict should not follow the file's size.
ROBUSTNESS = "resize:0.5,upscale:2,upscale:4"


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


def perturbed_vectors(
    records: Sequence[ImageRecord],
    spec: EmbeddingSpec,
    apply: Callable[[Image.Image], Image.Image],
    batch_size: int,
    label: str = "perturbed",
) -> np.ndarray:
    """The vectors of `apply`'d copies of `records`' images, made in memory only."""
    from faceaudit.data.decode import UnreadableImage, decode_image
    from faceaudit.data.records import read_scanned
    from faceaudit.embed.runner import embed_images, shared_embedder
    from faceaudit.flows.labelled import DataError
    from faceaudit.flows.progress import progress_bar

    images = []
    with progress_bar(label, total=len(records)) as advance:
        for record in records:
            try:
                # Brought to the backbone's input size at once: a 4x copy of a 768 px face is 28 MB,
                # a thousand of them would not fit in memory (preprocessing it again is a no-op).
                images.append(spec.preprocess.fit(apply(decode_image(read_scanned(record)))))
            except UnreadableImage as exc:
                raise DataError(f"{record.rel}: {exc}") from None
            advance(1)
    return embed_images(images, spec, shared_embedder(spec), batch_size)


def perturbation_metrics(
    model: FaceauditModel,
    spec: EmbeddingSpec,
    data: LabelledSet,
    verdict: np.ndarray,
    perturbations: str | Sequence[tuple[str, Callable[[Image.Image], Image.Image]]],
    batch_size: int,
    samples: int | None = None,
) -> dict:
    """The metrics of each perturbed copy of `data`'s images (in memory only), per group too, with
    `verdict_agreement`: the share of images whose verdict (`verdict`, on the originals) it left alone."""
    from faceaudit.head.metrics import metrics_by_group

    if isinstance(perturbations, str):
        perturbations = parse_perturbations(perturbations)
    out = {}
    for name, apply in perturbations:
        vectors = perturbed_vectors(data.records, spec, apply, batch_size, f"perturbed {name}")
        perturbed = model.score(vectors, samples)
        block = metrics_by_group(data.y, perturbed.prediction, perturbed.verdict, data.groups)
        same = verdict == perturbed.verdict
        block["verdict_agreement"] = float(same.mean())
        for group, figures in block["groups"].items():
            figures["verdict_agreement"] = float(same[data.groups == group].mean())
        out[name] = block
    return out
