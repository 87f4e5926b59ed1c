"""data/: walking, sniffing, safe decoding, labels and the hash split, on files made in the test."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceaudit.data import UnreadableImage, decode_image, label_and_group, scan, split_of, walk
from faceaudit.data.decode import shown_size
from faceaudit.data.labels import class_of_folder
from tests.conftest import unprivileged, write_image


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def test_walk_skips_hidden_and_does_not_leave_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "dump"
    write_image(root / "a.jpg", 1)
    write_image(root / ".hidden.jpg", 2)
    write_image(root / ".cache" / "b.jpg", 3)
    outside = write_image(tmp_path / "outside.jpg", 4)
    os.symlink(outside, root / "escape.jpg")
    os.symlink(root / "a.jpg", root / "inner-link.jpg")
    os.symlink(root / "loop1", root / "loop2")
    os.symlink(root / "loop2", root / "loop1")
    (root / "folder.jpg").mkdir()
    write_image(root / "folder.jpg" / "inside.jpg", 5)

    found = {f.rel: f.error for f in walk(root)}

    assert found["a.jpg"] is None
    assert found["inner-link.jpg"] is None
    assert "outside" in found["escape.jpg"]
    assert "loop" in found["loop1"] and "loop" in found["loop2"]
    assert found["folder.jpg"] == "a folder, not an image file"
    assert found["folder.jpg/inside.jpg"] is None
    assert not any(rel.startswith(".") or "/." in rel for rel in found)


def test_scan_reports_reasons_and_hashes_bytes(tmp_path: Path) -> None:
    root = tmp_path / "dump"
    good = write_image(root / "good.jpg", 1)
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("hello, not a picture")
    (root / "page.png").write_text("<!DOCTYPE html><html></html>")

    records = {r.rel: r for r in scan(root)}

    import hashlib

    assert records["good.jpg"].ok
    assert records["good.jpg"].sha256 == hashlib.sha256(good.read_bytes()).hexdigest()
    assert records["good.jpg"].format == "JPEG"
    assert records["empty.jpg"].error == "empty file"
    assert records["notes.jpg"].error == "not an image: text"
    assert records["page.png"].error == "not an image: HTML text"


def test_type_comes_from_bytes_not_the_name(tmp_path: Path) -> None:
    png_named_jpg = tmp_path / "really-png.jpg"
    png_named_jpg.write_bytes(png_bytes(Image.new("RGB", (8, 8), "red")))
    record = scan(tmp_path)[0]
    assert record.ok and record.format == "PNG"
    assert decode_image(png_named_jpg.read_bytes()).getpixel((0, 0)) == (255, 0, 0)


def test_decode_applies_exif_orientation() -> None:
    image = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).size == (20, 40)
    # The size the CSV reports is the one shown, also where a draft decode made the picture smaller.
    large = io.BytesIO()
    Image.new("RGB", (1600, 1200), "white").save(large, format="JPEG", exif=exif)
    assert decode_image(large.getvalue(), draft_size=(320, 320)).size == (600, 800)
    assert shown_size(large.getvalue()) == (1200, 1600) and shown_size(png_bytes(image)) == (40, 20)


def test_decode_converts_every_mode_to_rgb() -> None:
    sixteen = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert decode_image(png_bytes(sixteen)).getpixel((0, 0)) == (255, 255, 255)
    half = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    assert decode_image(png_bytes(half)).getpixel((0, 0))[0] in (127, 128)

    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0] * 256)
    assert decode_image(png_bytes(palette, transparency=0)).getpixel((0, 0)) == (255, 255, 255)

    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG")
    red, green, blue = decode_image(buffer.getvalue()).getpixel((1, 1))
    assert red > 200 and green < 60 and blue < 60


def test_decode_refuses_bombs_and_truncation() -> None:
    bomb = png_bytes(Image.new("L", (5000, 5000)))
    with pytest.raises(UnreadableImage, match="too many pixels"):
        decode_image(bomb, max_pixels=1_000_000)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(buffer, format="JPEG")
    with pytest.raises(UnreadableImage, match="cannot decode JPEG"):
        decode_image(buffer.getvalue()[:200])


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("real", "real"),
        ("Real Images", "real"),
        ("real_faces", "real"),
        ("ai", "ai"),
        ("AI-Generated Images", "ai"),
        ("fake", "ai"),
        ("stylegan_generated", "ai"),
        ("Synthetic", "ai"),
        ("airport", None),
        ("photos", None),
        ("unreal", None),
        ("0_real", "real"),
        ("1_fake", "ai"),
        ("nature", "real"),
        ("naturephotos", None),
    ],
)
def test_class_folder_names(name: str, label: str | None) -> None:
    assert class_of_folder(name) == label


def test_label_is_nearest_class_folder_and_group_the_one_above() -> None:
    assert label_and_group(["data", "ffhq", "real", "batch1"]) == ("real", "ffhq")
    assert label_and_group(["fake", "kaggle", "Real Images"]) == ("real", "kaggle")
    assert label_and_group(["dump", "misc"]) == (None, None)


def test_split_is_deterministic_and_roughly_proportional() -> None:
    import hashlib
    import subprocess
    import sys

    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4000)]
    splits = [split_of(h) for h in hashes]
    # Another process, with another hash seed, gives every image the same split.
    code = (
        "import sys; from faceaudit.data.split import split_of; "
        "print(' '.join(split_of(h) for h in sys.argv[1:]))"
    )
    elsewhere = subprocess.run(
        [sys.executable, "-c", code, *hashes[:500]],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert elsewhere.stdout.split() == splits[:500]
    share = {name: splits.count(name) / len(splits) for name in ("train", "val", "test")}
    assert 0.66 < share["train"] < 0.74 and 0.12 < share["val"] < 0.18 and 0.12 < share["test"] < 0.18


def test_unreadable_file_is_a_record_not_a_crash(tmp_path: Path) -> None:
    """Root reads any file, so when running as root the child drops the capabilities that allow it."""
    import shutil
    import subprocess
    import sys
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="faceaudit-perm-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        write_image(folder / "ok.jpg", 1).chmod(0o644)
        write_image(folder / "locked.jpg", 2).chmod(0)
        code = (
            "import sys; from faceaudit.data import scan; "
            "print('\\n'.join(f'{r.rel}|{r.error}' for r in scan(sys.argv[1])))"
        )
        command = unprivileged([sys.executable, "-c", code, str(folder)])
        if command is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        result = subprocess.run(
            command, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent
        )
        rows = dict(line.split("|", 1) for line in result.stdout.splitlines())
        assert rows["ok.jpg"] == "None"
        assert rows["locked.jpg"] == "cannot read file: Permission denied"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_families_group_sources_and_a_folder_may_declare_its_own(tmp_path: Path) -> None:
    from faceaudit.data.families import Families, FamiliesError

    built_in = Families.for_folder(tmp_path)
    assert built_in.of("genphotos", 1) == built_in.of("ffhq-stylegan", "ai") == "stylegan"
    assert built_in.of("ffhq-stylegan", 0) == "ffhq"  # the real half of a two-class source
    assert built_in.of("somewhere-new", 1) == "somewhere-new"  # unlisted: a family of its own
    (tmp_path / "families.json").write_text(json.dumps({"ai": {"diffusion": ["sd", "flux"]}}))
    declared = Families.for_folder(tmp_path)
    assert declared.of("flux", 1) == "diffusion" and declared.of("genphotos", 1) == "genphotos"
    present = {"ai": {"sd", "gan"}, "real": {"cam"}}
    expected = {"ai": {"diffusion": ["sd"], "gan": ["gan"]}, "real": {"cam": ["cam"]}}
    assert declared.describe(present) == expected
    (tmp_path / "families.json").write_text(json.dumps({"ai": {"a": ["x"], "b": ["x"]}}))
    with pytest.raises(FamiliesError, match='source "x" is in two ai families'):
        Families.for_folder(tmp_path)
    (tmp_path / "families.json").write_text("{")
    with pytest.raises(FamiliesError, match="cannot be read as JSON"):
        Families.for_folder(tmp_path)
