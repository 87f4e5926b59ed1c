"""Glue between a model and `explain/`: the forward function an occlusion map needs, built from the
backbone, the pooling and the head that score images, so the map explains the very same verdict."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from embed.runner import Embedder, shared_embedder
from embed.spec import EmbeddingSpec
from explain.occlusion import Occlusion, OcclusionResult
from flows.defaults import OCCLUSION_BASELINES
from head.model import FaceauditModel


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
        if baseline not in OCCLUSION_BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(OCCLUSION_BASELINES)}")
        self.model, self.spec, self.baseline = model, spec, baseline
        self.embedder = embedder or shared_embedder(spec)
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


class GradientExplainer:
    """Gradient x input on the patch tokens: one forward and one backward pass per image.

    The gradient of calibrated P(AI) (through the head's mean network) with respect to the tokens the
    patch embedding produced, times those tokens, summed over channels: a patch-grid map of which
    patches pushed the score up (positive) or down.
    """

    def __init__(self, explainer: Explainer) -> None:
        self.base = explainer
        self.spec, self.model = explainer.spec, explainer.model

    def explain(self, image: Image.Image) -> tuple[Image.Image, OcclusionResult]:
        import torch

        backbone = self.base.embedder.backbone
        fitted = self.spec.preprocess.fit(image)
        pixels = self.spec.preprocess.normalise(fitted)
        captured: dict = {}

        def keep_tokens(module, inputs, output):
            output.requires_grad_(True)  # a leaf: nothing upstream needs gradients
            captured["tokens"] = output

        handle = backbone.model.embeddings.register_forward_hook(keep_tokens)
        try:
            with torch.enable_grad():
                states = backbone.hidden_states(torch.from_numpy(pixels[None]))
                pooled = self.spec.pooling(states, self.spec.backbone.num_prefix_tokens, backbone.norm)
                logits = self.model.head.mean_logits(pooled)
                margin = logits[:, 1] - logits[:, 0]
                calibration = self.model.calibrator
                p_ai = torch.sigmoid(calibration.slope * margin + calibration.intercept)
                p_ai.sum().backward()
        finally:
            handle.remove()
        tokens = captured["tokens"]
        relevance = (tokens.grad * tokens).sum(-1)[0, self.spec.backbone.num_prefix_tokens :].detach().numpy()
        patch = self.spec.backbone.patch_size
        side = pixels.shape[1] // patch
        values = np.kron(relevance.reshape(side, side), np.ones((patch, patch)))
        result = OcclusionResult(values, float(p_ai.detach()[0]), patch, patch, passes=1, method="gradient")
        baseline = self.spec.preprocess.normalise(self.base.baseline_image(fitted))
        self.base.occlusion.check_faithfulness(result, pixels, baseline, patch)
        return fitted, result
