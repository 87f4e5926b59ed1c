"""Wiring only: the forward functions explain/ is handed, built from the backbone, pooling, head and
calibration that score images, so a map explains the very same verdict. The methods live in explain/."""

from __future__ import annotations

import numpy as np
from PIL import Image

from faceaudit.embed.runner import Embedder, shared_embedder
from faceaudit.embed.spec import EmbeddingSpec
from faceaudit.explain import Attribution, GradientXInput, Occlusion, baseline_image
from faceaudit.explain.baselines import DEFAULT_BASELINE, check_baseline
from faceaudit.flows.defaults import DEFAULT_EXPLAIN_METHOD
from faceaudit.head.model import FaceauditModel


class Explainer:
    """Maps for images scored by `model`, by `method` ('occlusion' or 'gradient'); the backbone is
    loaded once and shared."""

    def __init__(
        self,
        model: FaceauditModel,
        spec: EmbeddingSpec,
        embedder: Embedder | None = None,
        window_patches: int = 4,
        stride_patches: int = 3,
        baseline: str = DEFAULT_BASELINE,
        samples: int | None = None,
    ) -> None:
        check_baseline(baseline)
        self.model, self.spec, self.baseline, self.samples = model, spec, baseline, samples
        self.embedder = embedder or shared_embedder(spec)
        self.patch = spec.backbone.patch_size
        self.window, self.stride = window_patches * self.patch, stride_patches * self.patch
        self.occlusion = Occlusion(self.forward, batch_size=32)
        prefix = spec.backbone.num_prefix_tokens
        self.gradient = GradientXInput(self.forward_with_tokens, self.patch, prefix, check=self.forward)
        # The zoomed halves of the copies of the image being explained, by centre square: most windows
        # lie outside the centre, and those copies share the image's own (see Embedder.sharing_zoom).
        self.zoomed_halves: dict[bytes, np.ndarray] = {}

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised pixels -> (N,) P(AI), exactly as `score` computes it."""
        vectors = self.embedder.sharing_zoom(pixels.astype(np.float32), self.zoomed_halves)
        return self.model.score(vectors, self.samples).prediction.p_ai

    def forward_with_tokens(self, pixels):
        """Differentiable: (P(AI) of the head's mean network, patch tokens), for gradient maps."""
        pooled, tokens = self.embedder.pooled_with_tokens(pixels)
        return self.model.mean_p_ai(pooled), tokens

    def explain(
        self, image: Image.Image, method: str = DEFAULT_EXPLAIN_METHOD
    ) -> tuple[Image.Image, Attribution]:
        """The image as the model sees it (after preprocessing) and its map."""
        self.zoomed_halves.clear()  # one image's at a time
        fitted = self.spec.preprocess.fit(image)
        pixels = self.spec.preprocess.normalise(fitted)
        baseline = self.spec.preprocess.normalise(baseline_image(fitted, self.baseline, self.window))
        if method == "gradient":
            return fitted, self.gradient.attribute(pixels, baseline)
        return fitted, self.occlusion.attribute(pixels, baseline, self.window, self.stride, cell=self.patch)
