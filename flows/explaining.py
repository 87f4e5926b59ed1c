"""Glue between a model and `explain/`: the forward function an occlusion map needs, built from the
backbone, the pooling and the head that score images, so the map explains the very same verdict."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from embed.runner import Embedder
from embed.spec import EmbeddingSpec
from explain.occlusion import Occlusion, OcclusionResult
from head.model import FaceauditModel

BASELINES = ("blur", "mean")


class Explainer:
    """Occlusion maps for images scored by `model`; the backbone is loaded once."""

    def __init__(
        self,
        model: FaceauditModel,
        spec: EmbeddingSpec,
        embedder: Embedder | None = None,
        window_patches: int = 4,
        stride_patches: int = 3,
        baseline: str = "blur",
        samples: int | None = None,
    ) -> None:
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
        self.model, self.spec, self.baseline = model, spec, baseline
        self.embedder = embedder or Embedder(spec)
        patch = spec.backbone.patch_size
        self.window, self.stride = window_patches * patch, stride_patches * patch
        self.samples = samples
        self.occlusion = Occlusion(self._forward, batch_size=32)

    def _forward(self, pixels: np.ndarray) -> np.ndarray:
        vectors = self.embedder(pixels.astype(np.float32))
        return self.model.score(vectors, self.samples).prediction.p_ai

    def baseline_image(self, fitted: Image.Image) -> Image.Image:
        """What hidden regions are painted with: a heavy blur keeps colours, removes detail."""
        if self.baseline == "mean":
            mean = tuple(int(c) for c in np.asarray(fitted).reshape(-1, 3).mean(axis=0))
            return Image.new("RGB", fitted.size, mean)
        return fitted.filter(ImageFilter.GaussianBlur(self.window / 4))

    def explain(self, image: Image.Image) -> tuple[Image.Image, OcclusionResult]:
        """The image as the model sees it (cropped or resized) and its occlusion map."""
        fitted = self.spec.preprocess.fit(image)
        pixels = self.spec.preprocess.normalise(fitted)
        baseline = self.spec.preprocess.normalise(self.baseline_image(fitted))
        patch = self.spec.backbone.patch_size
        return fitted, self.occlusion.attribute(pixels, baseline, self.window, self.stride, cell=patch)
