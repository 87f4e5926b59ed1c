"""A hostile dump, made in the test: every kind of bad file among good images, scored in one run."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceaudit.flows.outputs import path_from_cell
from tests.conftest import faceaudit, unprivileged


def png(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


DEEP = 1100  # folder levels


def remove_deep_tree(folder: Path) -> None:
    """Delete the deep tree bottom up (shutil.rmtree, and so pytest's clean-up of old temporary
    folders, recurses once per level and would fail on it in every later session)."""
    bottom = folder / "/".join(["d"] * DEEP)
    while bottom != folder:
        for child in bottom.iterdir():
            if not child.is_dir():
                child.unlink()
        bottom.rmdir()
        bottom = bottom.parent


def build_corpus(folder: Path, good: list[Path]) -> dict[str, str]:
    """Write the corpus; returns name -> expected outcome ('ok' or 'unreadable')."""
    rng = np.random.default_rng(0)
    photo = Image.open(good[0]).convert("RGB")
    expected: dict[str, str] = {}

    def put(name: str, data: bytes, outcome: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = outcome

    jpeg = encoded(photo, "JPEG")
    put("zero.jpg", b"", "unreadable")
    put("truncated.jpg", jpeg[: len(jpeg) // 2], "unreadable")
    put("truncated.png", png(photo)[:300], "unreadable")
    put("random.jpg", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "unreadable")
    put("text.jpg", b"hello there", "unreadable")
    put("page.jpg", b"<!DOCTYPE html><html><body>hi</body></html>", "unreadable")
    put("vector.jpg", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "unreadable")
    put("doc.jpg", b"%PDF-1.4\n%fake\n", "unreadable")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("a.txt", "x")
    put("archive.png", archive.getvalue(), "unreadable")
    put("png-named.jpg", png(photo), "ok")
    put("jpeg-named.png", jpeg, "ok")
    put("cmyk.jpg", encoded(photo.convert("CMYK"), "JPEG"), "ok")
    put("sixteen.png", png(Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257)), "ok")
    put("gray.png", png(photo.convert("L")), "ok")
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE)
    put("palette.png", png(palette, transparency=0), "ok")
    frames = [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    put("animated.gif", encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]), "ok")
    put("photo.webp", encoded(photo, "WEBP"), "ok")
    exif = Image.Exif()
    exif[0x0112] = 6
    put("rotated.jpg", encoded(photo, "JPEG", exif=exif), "ok")
    put("tiny.png", png(Image.new("RGB", (1, 1), "red")), "ok")
    put("tall.png", png(Image.new("RGB", (10, 10000), "blue")), "unreadable")  # 1000:1, not a face
    put("bomb.png", png(Image.new("L", (6400, 6400))), "unreadable")
    os.symlink(folder / "loop-b.jpg", folder / "loop-a.jpg")
    os.symlink(folder / "loop-a.jpg", folder / "loop-b.jpg")
    expected.update({"loop-a.jpg": "unreadable", "loop-b.jpg": "unreadable"})
    os.symlink("/etc/hostname", folder / "escape.jpg")
    expected["escape.jpg"] = "unreadable"
    (folder / "dir.jpg").mkdir()
    if unprivileged(["true"]) is not None:  # root reads anything unless the run drops that power
        put("locked.jpg", jpeg, "unreadable")
        (folder / "locked.jpg").chmod(0)
    expected["dir.jpg"] = "unreadable"
    # (the "=cmd|' /C calc'!A0" holds a slash, which no Linux file name can: "-C" here)
    for name in ("new\nline.png", "comma,name.png", 'quote"name.png', "=cmd|' -C calc'!A0.png"):
        put(name, good[1].read_bytes(), "ok")
    weird = os.fsdecode(b"latin-\xe9.png")
    put(weird, good[2].read_bytes(), "ok")
    # Round two. Pixels that cost far more than the file: strips preprocessing would enlarge to ~9 GB.
    put("strip.png", png(Image.new("RGB", (40000, 1))), "unreadable")
    put("column.png", png(Image.new("L", (1, 30000))), "unreadable")
    put("strip.gif", encoded(Image.new("P", (20000, 3)), "GIF"), "unreadable")
    # Names that a spreadsheet would read as another row, or that would give another name's cell.
    reordered = f"reordered{chr(0x202E)}gnp.exe"  # shown as 'reorderedexe.png' where it is not escaped
    for name in (
        "carriage\rreturn.png",
        "tab\tname.png",
        "\rstarts.png",
        "=x.png",
        "'=x.png",
        "\\x41.png",
        reordered,
    ):
        put(name, good[1].read_bytes(), "ok")
    put(os.fsdecode(b"\xff.png"), good[2].read_bytes(), "ok")
    put("\\xff.png", good[2].read_bytes(), "ok")  # the literal text of the name above's escape
    # A tree deeper than Python's recursion limit, with a picture at the bottom.
    deep = "/".join(["d"] * DEEP)
    for depth in range(1, DEEP + 1):  # one level at a time: mkdir(parents=True) itself recurses
        os.mkdir(folder / "/".join(["d"] * depth))
    put(f"{deep}/bottom.png", good[2].read_bytes(), "ok")
    for i, path in enumerate(good[3:9]):
        put(f"good{i}.png", path.read_bytes(), "ok")
    return expected


@pytest.fixture(scope="module")
def scored(trained: dict, tmp_path_factory) -> Iterator[tuple[dict[str, str], list[dict], Path]]:
    folder = tmp_path_factory.mktemp("hostile")
    good = sorted((trained["data"] / "alpha").rglob("*.png"))
    expected = build_corpus(folder, good)
    try:
        out = tmp_path_factory.mktemp("hostile-out")
        result = faceaudit(
            "score",
            str(folder),
            "--out",
            str(out),
            "--model",
            str(trained["model"]),
            "--store",
            str(trained["store"]),
            "--samples",
            "20",
            "--explain",
            "none",
            as_user=unprivileged(["true"]) is not None,
        )
        assert result.returncode == 0, result.stderr
        with open(out / "verdicts.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        yield expected, rows, out
    finally:
        remove_deep_tree(folder)


def test_every_kind_is_one_row_scored_or_unreadable_with_a_reason(scored) -> None:
    expected, rows, _ = scored
    assert len(expected) >= 25
    by_name = {path_from_cell(r["path"]): r for r in rows}
    assert set(by_name) == set(expected)
    for name, outcome in expected.items():
        row = by_name[name]
        if outcome == "ok":
            assert row["verdict"] in ("ai_generated", "real", "uncertain"), (name, row["error"])
            assert row["error"] == ""
        else:
            assert row["verdict"] == "unreadable", name
            assert row["error"] and "\n" not in row["error"], name
    for name in ("strip.png", "column.png", "strip.gif"):
        assert by_name[name]["error"].startswith("extreme aspect ratio"), by_name[name]["error"]


def test_every_path_cell_maps_back_to_its_own_file(scored) -> None:
    expected, rows, _ = scored
    names = [path_from_cell(r["path"]) for r in rows]
    assert len(names) == len(set(names)) == len(expected)  # no two files share a cell
    assert not any(c in r["path"] for r in rows for c in "\r\n\t")  # one line, one cell each
    assert not any(chr(0x202E) in r["path"] for r in rows)  # no cell shows another name than its own


def test_the_csv_reads_the_same_with_pandas(scored) -> None:
    pandas = pytest.importorskip("pandas", reason="pandas is not installed")
    _, rows, out = scored
    frame = pandas.read_csv(out / "verdicts.csv", dtype=str, keep_default_na=False)
    assert frame.to_dict("records") == rows
