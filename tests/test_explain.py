"""explain/: occlusion on forward functions whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from faceaudit.explain import Occlusion, occlusion_windows, render_map


def bright_corner_detector(pixels: np.ndarray) -> np.ndarray:
    """'P(AI)' rises with the brightness of the top-left 16 x 16 corner and nothing else."""
    return 1 / (1 + np.exp(-pixels[:, :, :16, :16].mean(axis=(1, 2, 3))))


def test_windows_cover_the_whole_side() -> None:
    assert occlusion_windows(224, 56, 42) == [0, 42, 84, 126, 168]
    assert occlusion_windows(50, 16, 16) == [0, 16, 32, 34]


def test_the_map_points_at_the_region_that_drives_the_score() -> None:
    pixels = np.zeros((3, 64, 64), np.float32)
    pixels[:, :16, :16] = 3.0
    baseline = np.zeros_like(pixels)
    calls = []

    def forward(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return bright_corner_detector(batch)

    result = Occlusion(forward, batch_size=8).attribute(pixels, baseline, window=16, stride=16, cell=16)
    assert result.values[:16, :16].mean() > 0.4
    assert np.abs(result.values[16:, 16:]).max() < 1e-6
    assert max(calls) <= 8 and result.passes == sum(calls) == 1 + 16 + 2
    # Hiding what the map ranks first moves the score; hiding a random tenth (seeded: elsewhere) does not.
    assert result.p_ai_top_hidden < result.p_ai - 0.4
    assert result.faithfulness > 0.4


def test_render_writes_a_png(tmp_path: Path) -> None:
    pixels = np.zeros((3, 32, 32), np.float32)
    result = Occlusion(bright_corner_detector).attribute(pixels, pixels, 16, 16, faithfulness=False)
    target = tmp_path / "maps" / "x.png"
    render_map(Image.new("RGB", (32, 32)), result, target, "uncertain")
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(target.parent.glob("*.tmp"))


def test_a_map_is_drawn_the_same_whatever_was_drawn_before_it(tmp_path: Path) -> None:
    """One figure is refilled for every map: nothing of the one before may show in the next."""
    pixels = np.zeros((3, 32, 32), np.float32)
    calm = Occlusion(bright_corner_detector).attribute(pixels, pixels, 16, 16, faithfulness=False)
    bright = pixels.copy()
    bright[:, :16, :16] = 1.0
    loud = Occlusion(bright_corner_detector).attribute(bright, pixels, 16, 16)
    loud.method = "gradient"  # other title, colour-bar label and faithfulness text too
    first, between, again = (tmp_path / f"{name}.png" for name in ("first", "between", "again"))
    render_map(Image.new("RGB", (32, 32)), calm, first, "uncertain")
    render_map(Image.new("RGB", (48, 48), "white"), loud, between, "ai_generated")
    render_map(Image.new("RGB", (32, 32)), calm, again, "uncertain")
    assert again.read_bytes() == first.read_bytes() != between.read_bytes()


def test_gradient_map_points_at_the_patch_that_drives_the_score() -> None:
    import torch

    from faceaudit.explain import GradientXInput

    cell, side = 8, 32
    weight = torch.zeros(16, 3 * cell * cell)
    weight[5] = 0.05  # only patch 5 (row 1, column 1) counts

    def token_forward(pixels):
        n = pixels.shape[0]
        grid = pixels.reshape(n, 3, side // cell, cell, side // cell, cell).permute(0, 2, 4, 1, 3, 5)
        tokens = grid.reshape(n, 16, -1).detach().requires_grad_(True)
        return torch.sigmoid((tokens * weight).sum((1, 2))), tokens

    pixels = np.ones((3, side, side), np.float32)
    result = GradientXInput(token_forward, cell).attribute(pixels)
    assert result.method == "gradient" and result.values.shape == (side, side)
    assert result.values[8:16, 8:16].min() > 0 and np.abs(result.values[:8]).max() == 0.0


def test_maps_do_not_depend_on_the_batch(trained: dict) -> None:
    """The same map for an image explained alone or in a batch of 8, by either method, through the real
    (tiny) backbone and head that score it."""
    from faceaudit.data import decode_image
    from faceaudit.flows.explaining import Explainer
    from faceaudit.flows.models import spec_of
    from faceaudit.head.model import FaceauditModel

    model = FaceauditModel.load(trained["model"])
    spec = spec_of(model)
    explainer = Explainer(model, spec, samples=20)

    def pixels_of(path: Path) -> np.ndarray:
        return spec.preprocess.normalise(spec.preprocess.fit(decode_image(path.read_bytes())))

    def undecided(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
        """A blend of a real and a fake picture that the model is unsure of, so that P(AI) is not
        saturated and the gradient map is not all zeros (bisection on the blend)."""
        low, high = 0.0, 1.0  # P(AI) is near 1 at `low`, near 0 at `high`
        for _ in range(30):
            middle = (low + high) / 2
            blend = (middle * real + (1 - middle) * fake).astype(np.float32)
            p_ai = explainer.gradient.attribute_batch(blend[None])[0].p_ai
            if 0.2 < p_ai < 0.8:
                return blend
            low, high = (middle, high) if p_ai >= 0.8 else (low, middle)
        raise AssertionError("no undecided blend found")

    reals = sorted(trained["data"].rglob("real/*.png"))[:8]
    fakes = sorted(trained["data"].rglob("ai/*.png"))[:8]
    pixels = np.stack([undecided(pixels_of(r), pixels_of(f)) for r, f in zip(reals, fakes, strict=True)])
    together = explainer.gradient.attribute_batch(pixels)
    for i in range(8):
        assert np.abs(together[i].values).max() > 1e-4  # a map with something in it
        alone = explainer.gradient.attribute_batch(pixels[i : i + 1])[0]
        np.testing.assert_allclose(alone.values, together[i].values, rtol=1e-4, atol=1e-6)
        assert abs(alone.p_ai - together[i].p_ai) < 1e-6
    window, stride = explainer.window, explainer.stride
    one = Occlusion(explainer.forward, batch_size=1).attribute(pixels[0], pixels[1], window, stride)
    eight = Occlusion(explainer.forward, batch_size=8).attribute(pixels[0], pixels[1], window, stride)
    np.testing.assert_allclose(one.values, eight.values, atol=1e-6)
