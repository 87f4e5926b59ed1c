"""Draw an occlusion map over its image as a PNG a person can read at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from data.atomic import replacing
from explain.occlusion import Attribution


def render_map(image: Image.Image, result: Attribution, path: Path, verdict: str) -> None:
    """The image, the map over it (red: pushed towards AI-generated, blue: towards real), a colour bar,
    and the verdict, P(AI) and faithfulness in the title. Written under a temporary name, then renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limit = max(float(np.abs(result.values).max()), 1e-3)
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.6), dpi=100)
    axes[0].imshow(image)
    axes[0].set_title("input (as the model sees it)", fontsize=9)
    axes[1].imshow(image)
    shown = axes[1].imshow(result.values, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.55)
    faith = result.faithfulness
    axes[1].set_title(
        (
            f"occlusion, window {result.window}px"
            if result.method == "occlusion"
            else "gradient x input, per patch"
        )
        + ("" if faith is None else f"; faithfulness {faith:+.3f}"),
        fontsize=9,
    )
    for axis in axes:
        axis.axis("off")
    bar = fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    bar.set_label(
        "drop in P(AI) when hidden" if result.method == "occlusion" else "gradient x input", fontsize=8
    )
    fig.suptitle(f"{verdict}  ·  P(AI-generated) = {result.p_ai:.3f}", fontsize=11)
    fig.tight_layout()
    try:
        with replacing(path) as scratch:
            fig.savefig(scratch, format="png")
    finally:
        plt.close(fig)
