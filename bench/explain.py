"""Occlusion map speed, printed: faceaudit's batched map at default settings against the reference
design's per-window loop (one forward pass per window, window 16 px, stride 8 px), in one run. Then
drawing the PNG: one figure refilled for each map (what faceaudit does) against a figure built for each.

    python bench/explain.py [--data ../shared/data] [--images 3] [--reference-images 1]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images import bench_parser, first_images

from faceaudit.data.decode import decode_image
from faceaudit.flows.explaining import Explainer
from faceaudit.flows.models import DEFAULT_MODEL_DIR, spec_of
from faceaudit.head.model import FaceauditModel


def reference_map(explainer: Explainer, image) -> tuple[np.ndarray, float]:
    """One forward pass per 16 px window, stride 8 px, grey baseline: the reference design's loop
    (every pass whole: no zoomed half shared between copies)."""
    fitted = explainer.spec.preprocess.fit(image)
    pixels = explainer.spec.preprocess.normalise(fitted)
    size = pixels.shape[1]

    def forward(batch: np.ndarray) -> np.ndarray:
        return explainer.model.score(explainer.embedder(batch), explainer.samples).prediction.p_ai

    base = float(forward(pixels[None])[0])
    starts = range(0, size - 16 + 1, 8)
    out = np.zeros((len(starts), len(starts)))
    started = time.perf_counter()
    for i, top in enumerate(starts):
        for j, left in enumerate(starts):
            hidden = pixels.copy()
            hidden[:, top : top + 16, left : left + 16] = 0.0
            out[i, j] = base - float(forward(hidden[None])[0])
    return out, time.perf_counter() - started


def drawing(image, result, maps: int = 10) -> None:
    """Seconds per drawn map: the refilled figure against one built anew for each map."""
    from faceaudit.explain import render

    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "map.png"
        render.render_map(image, result, target, "ai_generated")  # builds the figure once
        started = time.perf_counter()
        for _ in range(maps):
            render.render_map(image, result, target, "ai_generated")
        refilled = (time.perf_counter() - started) / maps
        started = time.perf_counter()
        for _ in range(maps):
            render._MapFigure().draw(image, result, "ai_generated", target)
        built = (time.perf_counter() - started) / maps
    print(f"drawing a map: refilled figure {refilled:.3f} s, built per map {built:.3f} s")
    print(f"  ratio refilled / built: {refilled / built:.2f}")


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--reference-images", type=int, default=1)
    args = parser.parse_args()
    records = first_images(args.data, args.images)
    if not records:
        sys.exit(f"no images under {args.data}")
    model = FaceauditModel.load(DEFAULT_MODEL_DIR)
    explainer = Explainer(model, spec_of(model))
    explainer.explain(decode_image(records[0].path.read_bytes()))  # warm-up
    ours = []
    for record in records:
        image = decode_image(record.path.read_bytes())
        started = time.perf_counter()
        _, result = explainer.explain(image)
        ours.append(time.perf_counter() - started)
        print(
            f"  {record.rel}: {ours[-1]:.2f} s, {result.passes} forward passes, "
            f"faithfulness {result.faithfulness:+.3f}"
        )
    reference = [
        reference_map(explainer, decode_image(r.path.read_bytes()))[1]
        for r in records[: args.reference_images]
    ]
    mean_ours = float(np.mean(ours))
    print(f"occlusion at default settings: {mean_ours:.2f} s per image (target <= 3 s)")
    if reference:
        mean_reference = float(np.mean(reference))
        print(f"reference per-window loop (729 windows): {mean_reference:.1f} s per image")
        print(f"speed-up: {mean_reference / mean_ours:.1f}x (target >= 10x)")
    fitted, result = explainer.explain(decode_image(records[0].path.read_bytes()))
    drawing(fitted, result)


if __name__ == "__main__":
    main()
