"""Occlusion sensitivity, batched: hide one window at a time (painted with a baseline image), run every
hidden copy through the model in batches, and record how much P(AI-generated) drops.

Windows and strides are in pixels and default to the backbone's patch grid, so each window covers whole
patches. Each pixel's value is the mean drop over the windows covering it: positive where the region
pushed the verdict towards AI-generated, negative where it pushed towards real.

Faithfulness (a deletion check): P(AI) after hiding the 10% of the image the map ranks highest, beside
P(AI) after hiding a random 10%, both as whole cells of the same size (the backbone's patches), so the
two hide regions of the same shape. A map that means something moves the score more than chance does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Forward = Callable[[np.ndarray], np.ndarray]  # (batch, 3, H, W) -> (batch,) P(AI)


@dataclass
class Attribution:
    """A map of one image, from occlusion or from gradients, with its faithfulness check."""

    values: np.ndarray  # (H, W): occlusion: mean drop in P(AI) when hidden; gradient: gradient x input
    p_ai: float  # P(AI) of the unoccluded image
    window: int
    stride: int
    passes: int  # forward passes spent, faithfulness included
    p_ai_top_hidden: float | None = None  # P(AI) with the map's top 10% hidden
    p_ai_random_hidden: float | None = None  # mean P(AI) with a random 10% hidden
    method: str = "occlusion"

    @property
    def faithfulness(self) -> float | None:
        """How much more hiding the map's top region moves P(AI) than hiding a random one (>0 is good).

        Measured in the direction of the verdict: for an image judged AI-generated (P >= 0.5), the drop;
        for one judged real, the rise.
        """
        if self.p_ai_top_hidden is None or self.p_ai_random_hidden is None:
            return None
        sign = 1.0 if self.p_ai >= 0.5 else -1.0
        return sign * (self.p_ai_random_hidden - self.p_ai_top_hidden)


def occlusion_windows(size: int, window: int, stride: int) -> list[int]:
    """Window start positions along one side, the last one flush with the edge."""
    if window > size:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


class Occlusion:
    def __init__(self, forward: Forward, batch_size: int = 16) -> None:
        self.forward = forward
        self.batch_size = batch_size

    def _run(self, copies: list[np.ndarray]) -> np.ndarray:
        out = [
            self.forward(np.stack(copies[i : i + self.batch_size]))
            for i in range(0, len(copies), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros(0)

    def attribute(
        self,
        pixels: np.ndarray,
        baseline: np.ndarray,
        window: int,
        stride: int,
        faithfulness: bool = True,
        cell: int | None = None,
        random_draws: int = 1,
        seed: int = 0,
    ) -> Attribution:
        """Map for one image (`pixels` and `baseline` are (3, H, W), already normalised).

        `cell` is the side of the squares the faithfulness check hides (default: the stride).
        """
        _, height, width = pixels.shape
        boxes = [
            (top, left)
            for top in occlusion_windows(height, window, stride)
            for left in occlusion_windows(width, window, stride)
        ]
        copies = [pixels]
        for top, left in boxes:
            hidden = pixels.copy()
            hidden[:, top : top + window, left : left + window] = baseline[
                :, top : top + window, left : left + window
            ]
            copies.append(hidden)
        scores = self._run(copies)
        base, hidden_scores = float(scores[0]), scores[1:]
        total = np.zeros((height, width))
        count = np.zeros((height, width))
        for (top, left), score in zip(boxes, hidden_scores, strict=True):
            total[top : top + window, left : left + window] += base - score
            count[top : top + window, left : left + window] += 1
        values = total / np.maximum(count, 1)
        result = Attribution(values, base, window, stride, passes=len(copies))
        if faithfulness:
            self.check_faithfulness(result, pixels, baseline, cell or stride, random_draws, seed)
        return result

    def check_faithfulness(
        self, result: Attribution, pixels, baseline, cell: int, draws: int = 1, seed: int = 0
    ) -> None:
        """Fill in the deletion check for any map (occlusion or gradient) of this image."""
        height, width = result.values.shape
        rows, cols = -(-height // cell), -(-width // cell)
        cells = np.array(
            [
                [
                    result.values[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell].mean()
                    for c in range(cols)
                ]
                for r in range(rows)
            ]
        )
        sign = 1.0 if result.p_ai >= 0.5 else -1.0
        ranked = np.argsort(-(sign * cells).ravel(), kind="stable")
        count = max(1, round(0.1 * ranked.size))
        rng = np.random.default_rng(seed)
        choices = [ranked[:count]] + [rng.choice(ranked.size, count, replace=False) for _ in range(draws)]
        copies = []
        for chosen in choices:
            grid = np.zeros(ranked.size, dtype=bool)
            grid[chosen] = True
            mask = np.kron(grid.reshape(rows, cols), np.ones((cell, cell), dtype=bool))[:height, :width]
            copies.append(np.where(mask[None], baseline, pixels))
        scores = self._run(copies)
        result.p_ai_top_hidden = float(scores[0])
        result.p_ai_random_hidden = float(scores[1:].mean())
        result.passes += len(copies)
