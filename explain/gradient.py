"""Gradient x input on a model's patch tokens: one forward and one backward pass per batch of images.

The forward function is handed in, as for occlusion, but must be differentiable and show the tokens it
attributes to: `forward(pixels) -> (p_ai, tokens)`, torch tensors of shapes (N,) and (N, T, D), the
tokens as the graph used them: `prefix` tokens (a class token, registers) first, then one per
`cell` x `cell` square of the image, in row order. A token's
relevance is its gradient times itself, summed over channels: positive where the patch pushed P(AI) up.
Each image's P(AI) depends on its own tokens only, so the map does not depend on the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from faceaudit.explain.occlusion import Attribution, Forward, Occlusion

TokenForward = Callable[..., tuple]  # torch (N, 3, H, W) -> (P(AI) (N,), tokens (N, T, D))


class GradientXInput:
    def __init__(
        self, forward: TokenForward, cell: int, prefix: int = 0, check: Forward | None = None
    ) -> None:
        """`check`: the plain forward function (numpy in, P(AI) out) for the faithfulness check."""
        self.forward, self.cell, self.prefix = forward, cell, prefix
        self.occlusion = Occlusion(check) if check is not None else None

    def attribute_batch(self, pixels: np.ndarray) -> list[Attribution]:
        """Maps for a batch of images, (N, 3, H, W), already normalised."""
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        with torch.enable_grad():
            p_ai, tokens = self.forward(batch)
            (gradients,) = torch.autograd.grad(p_ai.sum(), tokens)
        relevance = (gradients * tokens).sum(-1)[:, self.prefix :].detach().numpy()
        height, width = pixels.shape[2:]
        rows, cols = height // self.cell, width // self.cell
        square = np.ones((self.cell, self.cell))
        return [
            Attribution(
                np.kron(r.reshape(rows, cols), square), float(p), self.cell, self.cell, 1, method="gradient"
            )
            for r, p in zip(relevance, p_ai.detach().numpy(), strict=True)
        ]

    def attribute(self, pixels: np.ndarray, baseline: np.ndarray | None = None) -> Attribution:
        """The map of one image (3, H, W); with a baseline and a check forward, its faithfulness too."""
        result = self.attribute_batch(pixels[None])[0]
        if baseline is not None and self.occlusion is not None:
            self.occlusion.check_faithfulness(result, pixels, baseline, self.cell)
        return result
