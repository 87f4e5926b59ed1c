"""The embedding stage end to end with tiny real transformers models and generated images."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faceaudit.data import scan
from faceaudit.embed.pooling import Pooling
from faceaudit.embed.preprocess import Preprocess
from faceaudit.embed.spec import make_spec
from faceaudit.embed.store import FeatureStore
from faceaudit.flows.embed_flow import EmbedSummary, embed_flow
from tests.conftest import make_labelled_folder, write_image


def run(folder: Path, store: Path, backbone: Path, **options) -> EmbedSummary:
    return embed_flow.fn(str(folder), str(store), backbone=str(backbone), batch_size=4, workers=0, **options)


def reference_vectors(backbone: Path, paths: list[Path], pooling: str = "cls+mean+std") -> np.ndarray:
    """The same vectors computed the plain transformers way, to check the pipeline against. With
    `+zoom`, the statistics again from a pass on the middle 16 x 16 pixels enlarged to 32 x 32."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(backbone).eval()
    preprocess = Preprocess("scale-face", 32)  # the default (no face in these pictures: as `scale`)
    pixels = torch.from_numpy(np.stack([preprocess(Image.open(p).convert("RGB")) for p in paths]))
    inputs = [pixels]
    if "zoom" in pooling:
        middle = pixels[:, :, 8:24, 8:24]
        inputs.append(torch.nn.functional.interpolate(middle, size=(32, 32), mode="bicubic"))
    parts = []
    for batch in inputs:
        with torch.inference_mode():
            states = model(pixel_values=batch, output_hidden_states=True).hidden_states
            tokens = [model.layernorm(states[layer]) for layer in (1, 2)]
        for t in tokens:
            if "cls" in pooling:
                parts.append(t[:, 0])
            if "mean" in pooling:
                parts.append(t[:, 1:].mean(1))
            if "std" in pooling:
                parts.append(t[:, 1:].std(1))
    return torch.cat(parts, 1).numpy()


@pytest.mark.parametrize("kind", ["tiny_vit", "tiny_dinov2"])
def test_vectors_match_a_plain_transformers_forward(kind: str, request, tmp_path: Path) -> None:
    backbone = request.getfixturevalue(kind)
    folder = make_labelled_folder(tmp_path / "images", per_class=5)
    summary = run(folder, tmp_path / "store", backbone)
    assert summary.new == 10 and not summary.unreadable

    records = scan(folder)
    spec = make_spec(str(backbone))
    stored = FeatureStore(tmp_path / "store", spec.fingerprint).get([r.sha256 for r in records])
    expected = reference_vectors(backbone, [r.path for r in records], "cls+mean+std+zoom")  # the default
    assert stored.shape == (10, 32 * 3 * 2 * 2)
    np.testing.assert_allclose(stored, expected, atol=1e-5)


def test_rerun_embeds_nothing_and_loads_no_model(tiny_vit: Path, tmp_path: Path, monkeypatch) -> None:
    folder = make_labelled_folder(tmp_path / "images", per_class=6)
    first = run(folder, tmp_path / "store", tiny_vit)
    files_before = sorted(p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*.h5"))

    from faceaudit.embed import runner

    def no_model(*args, **kwargs):
        raise AssertionError("a backbone was loaded although every image is stored")

    monkeypatch.setattr(runner.Embedder, "__init__", no_model)
    second = run(folder, tmp_path / "store", tiny_vit)
    assert first.new == 12
    assert second.new == 0 and second.already_stored == 12
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*.h5")) == files_before


def test_only_new_images_are_embedded_and_duplicates_once(tiny_vit: Path, tmp_path: Path) -> None:
    folder = make_labelled_folder(tmp_path / "images", per_class=3)
    run(folder, tmp_path / "store", tiny_vit)
    make_labelled_folder(folder, per_class=2, start=100)
    (folder / "copy.jpg").write_bytes((folder / "src" / "real" / "r0100.jpg").read_bytes())
    summary = run(folder, tmp_path / "store", tiny_vit)
    assert (summary.new, summary.already_stored, summary.duplicates) == (4, 6, 1)


def test_broken_files_get_reasons_and_the_rest_is_embedded(tiny_vit: Path, tmp_path: Path) -> None:
    folder = make_labelled_folder(tmp_path / "images", per_class=4)
    (folder / "zero.jpg").write_bytes(b"")
    whole = (folder / "src" / "real" / "r0000.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (folder / "text.jpg").write_text("just words")
    (folder / "x.jpg").mkdir()
    bomb = io.BytesIO()
    Image.new("L", (6400, 6400)).save(bomb, format="PNG")  # 41 megapixels, a few KB on disk
    (folder / "bomb.png").write_bytes(bomb.getvalue())
    outside = write_image(tmp_path / "outside.jpg", 99)
    os.symlink(outside, folder / "escape.jpg")

    summary = run(folder, tmp_path / "store", tiny_vit)

    reasons = dict(summary.unreadable)
    assert reasons["zero.jpg"] == "empty file"
    assert reasons["truncated.jpg"].startswith("cannot decode JPEG")
    assert reasons["text.jpg"] == "not an image: text"
    assert reasons["x.jpg"] == "a folder, not an image file"
    assert reasons["bomb.png"].startswith("too many pixels")
    assert "outside" in reasons["escape.jpg"]
    assert len(reasons) == 6
    assert summary.new == 8
    assert all("\n" not in reason for reason in reasons.values())


def test_options_change_the_fingerprint_and_the_vector(tiny_vit: Path, tmp_path: Path) -> None:
    folder = make_labelled_folder(tmp_path / "images", per_class=1)
    specs = {
        (pre, pool, layers): make_spec(str(tiny_vit), pre, pool, layers)
        for pre in ("crop", "resize")
        for pool, layers in (("cls", (2,)), ("mean", (2,)), ("cls+mean", (1, 2)))
    }
    assert len({spec.fingerprint for spec in specs.values()}) == len(specs)
    summary = run(folder, tmp_path / "store", tiny_vit, preprocess="resize", pooling="mean", layers=[2])
    spec = specs[("resize", "mean", (2,))]
    assert summary.fingerprint == spec.fingerprint and spec.dim == 32


def test_the_zoomed_pass_sees_the_centre_of_the_input_and_only_it(tiny_vit: Path, tmp_path: Path) -> None:
    """`+zoom`'s second half is read from the centre half of the input: paint a corner and only the
    whole-face half moves; paint the centre and both do (so an occlusion map reaches both passes)."""
    from faceaudit.embed.runner import Embedder

    spec = make_spec(str(tiny_vit), pooling="cls+mean+std+zoom", layers=(2,))
    embedder = Embedder(spec)
    image = Image.open(write_image(tmp_path / "face.jpg", seed=3)).convert("RGB")
    pixels = spec.preprocess(image)[None]
    corner, centre = pixels.copy(), pixels.copy()
    corner[..., :6, :6] = 0.0
    centre[..., 12:20, 12:20] = 0.0
    whole, zoomed = np.split(embedder(np.concatenate([pixels, corner, centre])), 2, axis=1)
    assert np.abs(whole[1] - whole[0]).max() > 1e-3 and np.abs(zoomed[1] - zoomed[0]).max() < 1e-6
    assert np.abs(whole[2] - whole[0]).max() > 1e-3 and np.abs(zoomed[2] - zoomed[0]).max() > 1e-3


def test_each_statistic_has_its_own_columns(tiny_vit: Path, tmp_path: Path) -> None:
    """`columns_of` splits the vector into CLS, mean and spread columns, each once: the spread (a
    standard deviation) is never negative, the others are, somewhere."""
    from faceaudit.embed.runner import Embedder

    for kind in ("cls+mean+std+zoom", "cls+mean+std+texture"):
        spec = make_spec(str(tiny_vit), pooling=kind, layers=(2,))
        hidden = spec.backbone.hidden_size
        parts = {name: spec.pooling.columns_of(name, hidden) for name in ("cls", "mean", "std")}
        assert sorted(c for columns in parts.values() for c in columns) == list(range(spec.dim)), kind
    vector = Embedder(spec)(
        spec.preprocess(Image.open(write_image(tmp_path / "f.jpg", seed=5)).convert("RGB"))[None]
    )
    assert (vector[0, parts["std"]] >= 0).all()
    assert (vector[0, parts["cls"]] < 0).any() and (vector[0, parts["mean"]] < 0).any()


def test_copies_with_the_same_centre_share_one_zoomed_pass(tiny_vit: Path, tmp_path: Path) -> None:
    """An occlusion map's copies: those whose centre is untouched take the image's zoomed half from
    the memo, the rest run the second pass; the vectors are the ones a plain call makes."""
    from faceaudit.embed.runner import Embedder

    spec = make_spec(str(tiny_vit), pooling="cls+mean+std+zoom", layers=(2,))
    embedder = Embedder(spec)
    image = Image.open(write_image(tmp_path / "face.jpg", seed=4)).convert("RGB")
    pixels = spec.preprocess(image)[None]
    corner, other_corner, centre = pixels.copy(), pixels.copy(), pixels.copy()
    corner[..., :6, :6] = 0.0
    other_corner[..., -6:, -6:] = 0.0
    centre[..., 12:20, 12:20] = 0.0
    copies = np.concatenate([pixels, corner, centre, other_corner])
    known: dict = {}
    shared = embedder.sharing_zoom(copies, known)
    assert len(known) == 2  # the untouched centre once, the painted one once
    np.testing.assert_allclose(shared, embedder(copies), atol=1e-5)
    half = shared.shape[1] // 2
    for key in known:  # a memo that is read: poison it and the zoomed halves follow
        known[key] = np.full(half, 7.0, dtype=np.float32)
    again = embedder.sharing_zoom(copies[[1, 3]], known)
    assert (again[:, half:] == 7.0).all() and len(known) == 2
    np.testing.assert_allclose(again[:, :half], shared[[1, 3], :half], atol=1e-5)


def test_layers_past_the_deepest_pooled_one_are_not_run(tiny_dinov2: Path, tmp_path: Path) -> None:
    from faceaudit.embed.backbone import Backbone
    from faceaudit.embed.pooling import zoom_input
    from faceaudit.embed.runner import Embedder

    spec = make_spec(str(tiny_dinov2), layers=(1,))
    embedder = Embedder(spec)
    assert len(embedder.backbone.model.encoder.layer) == 1
    full = Backbone(spec.backbone)
    assert len(full.model.encoder.layer) == 2
    paths = [write_image(tmp_path / f"{i}.jpg", seed=i) for i in range(3)]
    pixels = np.stack([spec.preprocess(Image.open(p).convert("RGB")) for p in paths])
    batch = torch.from_numpy(pixels)
    with torch.inference_mode():
        zoomed = full.hidden_states(zoom_input(batch))  # the default pooling reads a zoomed pass too
        expected = spec.pooling(full.hidden_states(batch), 1, full.norm, zoomed).numpy()
    np.testing.assert_array_equal(embedder(pixels), expected)


def test_texture_adds_the_patch_spread_of_the_layers_below_the_first_pooled(
    tiny_vit: Path, tmp_path: Path
) -> None:
    spec = make_spec(str(tiny_vit), pooling="cls+mean+std+texture", layers=(2,))
    assert spec.pooling.texture_layers == (1,) and spec.dim == 32 * 3 + 32
    assert spec.pooling.describe()["texture_layers"] == [1]
    assert spec.fingerprint != make_spec(str(tiny_vit), layers=(2,)).fingerprint
    folder = make_labelled_folder(tmp_path / "images", per_class=2)
    run(folder, tmp_path / "store", tiny_vit, pooling="cls+mean+std+texture", layers=[2])
    records = scan(folder)
    stored = FeatureStore(tmp_path / "store", spec.fingerprint).get([r.sha256 for r in records])
    both = reference_vectors(tiny_vit, [r.path for r in records])  # cls, mean, std of layers 1 and 2
    # Layer 2's three statistics, then layer 1's spread.
    np.testing.assert_allclose(stored, np.concatenate([both[:, 96:], both[:, 64:96]], axis=1), atol=1e-5)


def test_layers_that_do_not_exist_are_refused(tiny_vit: Path) -> None:
    with pytest.raises(ValueError, match=r"layers \[5\] do not exist: the backbone has layers 1 to 2"):
        make_spec(str(tiny_vit), layers=(5,))


def test_default_layers_are_a_third_a_half_and_two_thirds_of_the_depth() -> None:
    assert Pooling().resolved(12).layers == (4, 6, 8)
    assert Pooling().resolved(2).layers == (1, 2)


def test_crop_keeps_native_pixels_and_enlarges_small_images_only_as_needed() -> None:
    image = Image.fromarray(np.arange(300 * 400 * 3, dtype=np.uint32).reshape(300, 400, 3).astype(np.uint8))
    crop = Preprocess("crop", 224).fit(image)
    assert crop.size == (224, 224)
    assert np.array_equal(np.asarray(crop), np.asarray(image)[38:262, 88:312])
    small = Preprocess("crop", 224).fit(Image.new("RGB", (112, 200)))
    assert small.size == (224, 224)
    assert Preprocess("resize", 224).fit(image).size == (224, 224)


def test_scale_shows_the_backbone_one_scale_whatever_the_file_size() -> None:
    """A face photographed at 4 sizes reaches the backbone as (nearly) the same 224 px picture; `crop`
    would show a 1024 px file's nose and eyes only."""
    yy, xx = np.mgrid[0:1024, 0:768]
    face = np.stack([(xx // 64) * 16 % 256, (yy // 48) * 16 % 256, ((xx + yy) // 80) * 20 % 256], -1)
    big = Image.fromarray(face.astype(np.uint8))
    scale = Preprocess("scale", 224)
    reference = np.asarray(scale.fit(big), dtype=np.float64)
    for factor in (0.25, 0.5, 2.0):
        copy = big.resize((round(768 * factor), round(1024 * factor)), Image.Resampling.BICUBIC)
        fitted = scale.fit(copy)
        assert fitted.size == (224, 224)
        assert np.abs(np.asarray(fitted, dtype=np.float64) - reference).mean() < 6.0, factor
    cropped = np.asarray(Preprocess("crop", 224).fit(big), dtype=np.float64)
    assert np.abs(cropped - reference).mean() > 20.0  # the case `scale` exists for


def test_face_mode_crops_around_the_face_and_falls_back_to_scale_without_one(tmp_path: Path) -> None:
    from faceaudit.embed.preprocess import face_square
    from faceaudit.flows.demo import SAMPLE_FOLDER

    portrait = Image.open(SAMPLE_FOLDER / "real" / "obama.jpg").convert(
        "RGB"
    )  # 910 x 1137, face above centre
    left, top, right, bottom = face_square(portrait)
    assert right - left == bottom - top and 300 < right - left < 910  # a square, tighter than the picture
    assert top < (1137 - (bottom - top)) // 2  # around the face, not the centre
    face = Preprocess("face", 32)
    assert face.fit(portrait).size == (32, 32)
    assert face.describe()["face"]["cascade"] and "face" not in Preprocess("scale", 32).describe()
    blank = Image.new("RGB", (90, 60), (120, 120, 120))
    assert face_square(blank) is None
    assert np.array_equal(np.asarray(face.fit(blank)), np.asarray(Preprocess("scale", 32).fit(blank)))


def test_scale_face_slides_the_square_to_the_face_and_nothing_else() -> None:
    """`scale-face` keeps `scale`'s size; on a tall portrait its square moves up to the face, and a
    square picture or one without a face gets exactly `scale`'s pixels."""
    from faceaudit.flows.demo import SAMPLE_FOLDER

    scale, placed = Preprocess("scale", 224), Preprocess("scale-face", 224)
    for name in ("biden.jpg", "obama.jpg"):  # 970 x 2204 and 910 x 1137, faces above the middle
        portrait = Image.open(SAMPLE_FOLDER / "real" / name).convert("RGB")
        moved, centred = np.asarray(placed.fit(portrait)), np.asarray(scale.fit(portrait))
        assert moved.shape == centred.shape == (224, 224, 3) and not np.array_equal(moved, centred)
        scaled = portrait.resize(
            (224, round(portrait.height * 224 / portrait.width)), Image.Resampling.BICUBIC
        )
        rows = np.asarray(scaled)
        top = next(t for t in range(rows.shape[0] - 223) if np.array_equal(rows[t : t + 224], moved))
        assert top < (rows.shape[0] - 224) // 2, name  # higher than the centre square
    square = Image.open(SAMPLE_FOLDER / "ai" / "4c2abc82dda8.png").convert("RGB")
    blank = Image.new("RGB", (300, 500), (120, 120, 120))
    for picture in (square, blank):
        assert np.array_equal(np.asarray(placed.fit(picture)), np.asarray(scale.fit(picture)))
    assert placed.describe()["place"]["cascade"] and "place" not in scale.describe()
