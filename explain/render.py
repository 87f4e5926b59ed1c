"""Draw an occlusion map over its image as a PNG a person can read at a glance."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image

from faceaudit.data.atomic import replacing
from faceaudit.explain.occlusion import Attribution

_SMALLEST_LIMIT = 1e-3  # the colour scale's half-width never goes below this (a flat map stays pale)
_BAR_LABELS = {"occlusion": "drop in P(AI) when hidden", "gradient": "gradient x input"}
_PLACEHOLDER_TITLE = "gradient x input, per patch; faithfulness +0.000"  # the longest title, for layout


class _MapFigure:
    """One matplotlib figure, laid out once and refilled for each map. Building a figure (axes, ticks,
    colour bar, layout) took about twice as long as drawing it; a refilled figure draws the same
    picture, as every artist that differs between maps is set again each time."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(7.2, 3.6), dpi=100)
        FigureCanvasAgg(self.figure)
        left, self.right = self.figure.subplots(1, 2)
        blank = np.zeros((2, 2, 3), np.uint8)
        self.input, self.under = left.imshow(blank), self.right.imshow(blank)
        # Laid out for the narrowest scale a map gets (render_map's floor), whose tick labels are widest.
        floor = _SMALLEST_LIMIT
        self.over = self.right.imshow(np.zeros((2, 2)), cmap="RdBu_r", vmin=-floor, vmax=floor, alpha=0.55)
        left.set_title("input (as the model sees it)", fontsize=9)
        self.title = self.right.set_title(_PLACEHOLDER_TITLE, fontsize=9)
        for axis in (left, self.right):
            axis.axis("off")
        self.bar = self.figure.colorbar(self.over, ax=self.right, fraction=0.046, pad=0.04)
        self.bar.set_label(_BAR_LABELS["occlusion"], fontsize=8)
        self.suptitle = self.figure.suptitle("uncertain  ·  P(AI-generated) = 0.000", fontsize=11)
        self.figure.tight_layout()

    def draw(self, image: Image.Image, result: Attribution, verdict: str, target: Path) -> None:
        pixels = np.asarray(image.convert("RGB"))
        height, width = pixels.shape[:2]
        extent = (-0.5, width - 0.5, height - 0.5, -0.5)
        for artist in (self.input, self.under, self.over):
            artist.set_extent(extent)  # also sets the axes' limits to the image
        self.input.set_data(pixels)
        self.under.set_data(pixels)
        self.over.set_data(result.values)
        limit = max(float(np.abs(result.values).max()), _SMALLEST_LIMIT)
        self.over.set_clim(-limit, limit)
        faith = result.faithfulness
        method = (
            f"occlusion, window {result.window}px"
            if result.method == "occlusion"
            else "gradient x input, per patch"
        )
        self.title.set_text(method + ("" if faith is None else f"; faithfulness {faith:+.3f}"))
        self.bar.set_label(_BAR_LABELS[result.method], fontsize=8)
        self.suptitle.set_text(f"{verdict}  ·  P(AI-generated) = {result.p_ai:.3f}")
        self.figure.savefig(target, format="png")


_figure: _MapFigure | None = None
_figure_lock = threading.Lock()  # one figure: one map at a time (the web UI draws from threads)


def render_map(image: Image.Image, result: Attribution, path: Path, verdict: str) -> None:
    """The image, the map over it (red: pushed towards AI-generated, blue: towards real), a colour bar,
    and the verdict, P(AI) and faithfulness in the title. Written under a temporary name, then renamed."""
    global _figure
    with _figure_lock:
        if _figure is None:
            _figure = _MapFigure()
        with replacing(path) as scratch:
            _figure.draw(image, result, verdict, scratch)
