"""`faceaudit score` as users run it every night: a folder in, one trustworthy row per file out."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from faceaudit.flows.demo import SAMPLE_FOLDER
from faceaudit.flows.outputs import path_from_cell
from tests.chromium import Page, chromium_path
from tests.conftest import faceaudit

HOSTILE_NAMES = [
    "=cmd|' -C calc'!A0.png",
    "+1 plus.png",
    "-minus.png",
    "@at.png",
    "comma, in name.png",
    'quote " in name.png',
    "new\nline.png",
    "<script>alert(1)<\\script>.png".replace("\\", ""),
]


@pytest.fixture(scope="module")
def dump(trained: dict, tmp_path_factory) -> Path:
    """Some training images under awkward names, plus files that cannot be read."""
    folder = tmp_path_factory.mktemp("dump")
    sources = sorted((trained["data"] / "alpha").rglob("*.png"))
    for i, name in enumerate(HOSTILE_NAMES):
        shutil.copyfile(sources[i * 9], folder / name)
    for source in sources[-6:]:
        shutil.copyfile(source, folder / source.name)
    shutil.copyfile(SAMPLE_FOLDER / "real" / "obama.jpg", folder / "portrait.jpg")  # a face to find
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (folder / "notes.txt").write_text("not an image")
    return folder


def score(dump: Path, out: Path, trained: dict, store: Path | None = None, *extra: str):
    result = faceaudit(
        "score",
        str(dump),
        "--out",
        str(out),
        "--model",
        str(trained["model"]),
        "--store",
        str(store or trained["store"]),
        "--samples",
        "40",
        *extra,
    )
    assert result.returncode == 0, result.stderr
    with open(out / "verdicts.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows, json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def first_run(dump: Path, trained: dict, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    rows, run = score(dump, out, trained, None, "--explain", "all", "--explain-method", "both")
    return out, rows, run


def test_every_file_is_one_row_and_counts_add_up(first_run, dump: Path) -> None:
    out, rows, run = first_run
    assert len(rows) == len(list(dump.iterdir())) == run["files"]
    assert sum(run["counts"].values()) == run["files"]
    by_path = {r["path"]: r for r in rows}
    assert by_path["broken.jpg"]["verdict"] == "unreadable" and by_path["broken.jpg"]["error"]
    assert by_path["notes.txt"]["error"] == "not an image: text"
    readable = [r for r in rows if r["verdict"] != "unreadable"]
    assert {r["verdict"] for r in readable} <= {"ai_generated", "real", "uncertain"}
    assert all(0.0 <= float(r["p_ai"]) <= 1.0 for r in readable)
    # An uncertain verdict says why (P(AI) inside the band, low but unlike every real collection known, or
    # unlike the training images); others don't.
    card = json.loads((Path(run["model"]["folder"]) / "model.json").read_text())
    model = card["thresholds"]
    for r in readable:
        if r["verdict"] != "uncertain":
            assert r["uncertain_reason"] == "", r
        elif float(r["ood_score"]) > model["ood"]:
            assert r["uncertain_reason"] == "ood", r
        else:  # the CSV's figures are rounded to 6 decimals
            p_ai = float(r["p_ai"])
            assert r["uncertain_reason"] in ("band", "unlike_real", "disagree"), r
            low, high = model["real"] + 1e-6, model["ai"] - 1e-6
            expected = {"unlike_real": p_ai <= low, "disagree": p_ai >= high, "band": low - 2e-6 <= p_ai}
            assert expected[r["uncertain_reason"]], r
    # Each verdict names the training family and source it looks most like, with a probability.
    for r in readable:
        assert r["nearest_source"] in card["nearest"]["groups"]
        family = card["nearest"]["families"][card["nearest"]["groups"].index(r["nearest_source"])]
        assert r["nearest_family"] == family and 0.0 < float(r["nearest_similarity"]) <= 1.0
    assert all(r["model_id"] == run["model"]["id"] for r in rows)
    # Whether each picture shows a face: the portrait does, the drawn squares do not; run.json counts.
    assert by_path["portrait.jpg"]["face"] == "found" and by_path["broken.jpg"]["face"] == ""
    assert {r["face"] for r in readable if r["path"] != "portrait.jpg"} == {"none"}
    assert run["faces"]["found"] == 1 and run["faces"]["none"] == len(readable) - 1
    # Each picture's size as shown (Obama's portrait is 910 x 1137), blank where it cannot be read.
    sizes = {r["path"]: (r["width"], r["height"]) for r in rows}
    assert sizes["portrait.jpg"] == ("910", "1137") and sizes["broken.jpg"] == ("", "")
    assert all(sizes[r["path"]] == ("64", "64") for r in readable if r["path"] != "portrait.jpg")
    # every readable image was explained (--explain all) both ways, and its maps are on disk
    for column in ("occlusion_map", "gradient_map"):
        assert all(r[column] and (out / r[column]).is_file() for r in readable)
    assert all(r["faithfulness"] and r["gradient_faithfulness"] for r in readable)
    assert run["embedding"]["weights_sha256"] and run["thresholds"]["ai"] >= 0.5


def test_formula_cells_are_neutralised_and_names_survive(first_run) -> None:
    _, rows, _ = first_run
    paths = [r["path"] for r in rows]
    for dangerous in ("=cmd|' -C calc'!A0.png", "+1 plus.png", "-minus.png", "@at.png"):
        assert "'" + dangerous in paths
    assert "comma, in name.png" in paths and 'quote " in name.png' in paths and "new\\x0aline.png" in paths
    assert not any(p.startswith(("=", "+", "-", "@")) for p in paths)
    assert not any(c in p for p in paths for c in "\r\n\t")  # one line per row in any reader
    assert "new\nline.png" in {path_from_cell(p) for p in paths}


def test_jsonl_has_the_csv_rows_with_raw_paths_and_nulls(first_run) -> None:
    out, rows, _ = first_run
    with open(out / "verdicts.jsonl", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    assert [list(r) for r in records] == [list(rows[0])] * len(rows)  # the CSV's columns, in order
    by_path = {r["path"]: r for r in records}
    assert set(by_path) >= set(HOSTILE_NAMES)
    assert set(by_path) == {path_from_cell(r["path"]) for r in rows}  # the CSV's cells map back to them
    assert "=cmd|' -C calc'!A0.png" in by_path  # no formula guard: scripts get the name as it is
    broken = by_path["broken.jpg"]
    assert broken["verdict"] == "unreadable" and broken["p_ai"] is None and broken["error"]
    judged = by_path["new\nline.png"]
    assert isinstance(judged["p_ai"], float) and judged["error"] is None


def test_rescoring_unchanged_input_embeds_and_draws_nothing(first_run, dump: Path, trained: dict) -> None:
    out, rows, _ = first_run
    maps = {p: p.stat().st_mtime_ns for p in (out / "maps").iterdir()}
    again_rows, again = score(dump, out, trained, None, "--explain", "all", "--explain-method", "both")
    assert again["newly_embedded"] == 0
    strip = [{k: v for k, v in r.items() if k != "scored_at"} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k != "scored_at"} for r in again_rows]
    assert {p: p.stat().st_mtime_ns for p in (out / "maps").iterdir()} == maps


def test_separate_stores_give_the_same_scores(first_run, dump: Path, trained: dict, tmp_path: Path) -> None:
    _, rows, _ = first_run
    other_rows, other = score(dump, tmp_path / "out", trained, tmp_path / "fresh-store", "--explain", "none")
    assert other["newly_embedded"] > 0
    for mine, theirs in zip(rows, other_rows, strict=True):
        assert mine["verdict"] == theirs["verdict"]
        if mine["p_ai"]:
            assert abs(float(mine["p_ai"]) - float(theirs["p_ai"])) <= 1e-6


def test_face_cells_are_kept_in_the_store_and_read_back(first_run, dump: Path, trained: dict, tmp_path: Path):
    """A run keeps each picture's `face`, `width` and `height` cells in its store, and a later run
    reads them instead of decoding and searching the picture again: cells planted unlike what the
    picture shows come back."""
    from faceaudit.embed.face_cells import PictureCells, check_fingerprint, keeping_cells, stored_cells

    _, rows, first = first_run
    cells = {
        r["sha256"]: PictureCells(r["face"], int(r["width"]), int(r["height"])) for r in rows if r["face"]
    }
    assert {c.face for c in cells.values()} == {"found", "none"}  # the portrait, and the rest
    assert stored_cells(str(trained["store"]), list(cells)) == cells

    planted = tmp_path / "planted"
    shutil.copytree(trained["store"], planted)
    shutil.rmtree(planted / check_fingerprint()[:16])
    input_px = first["small"]["short_side_under_px"]
    assert first["small"]["count"] == 0  # every picture of the dump is larger than the input
    unlike = {
        sha: PictureCells("none" if c.face == "found" else "found", c.height + 1, c.width + 2)
        for sha, c in cells.items()
    }
    small = sorted(unlike)[0]  # one planted smaller than the input on its short side
    unlike[small] = unlike[small]._replace(width=input_px + 5, height=input_px - 1)
    with keeping_cells(str(planted)) as keep:
        keep(unlike)
    out = tmp_path / "out"
    again, run = score(dump, out, trained, planted, "--explain", "none")
    assert run["newly_embedded"] == 0
    read = {
        r["sha256"]: PictureCells(r["face"], int(r["width"]), int(r["height"])) for r in again if r["face"]
    }
    assert read == unlike
    # The small one is counted and marked in the report, beside a note to look for a larger copy.
    assert run["small"] == {"short_side_under_px": input_px, "count": 1}
    html = (out / "report.html").read_text()
    assert html.count('class="pixels small"') == 1 and "Judge the largest copy" in html
    import cv2

    assert run["faces"]["opencv"] == cv2.__version__  # which cascades decided the cells


def test_report_has_one_row_per_csv_row_and_escapes_names(first_run) -> None:
    out, rows, _ = first_run
    html = (out / "report.html").read_text()
    assert html.count('<tr class="v-') == len(rows)
    assert html.count('<td class="face-found">found</td>') == 1  # the portrait's, beside its verdict
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_bad_explain_choice_is_refused(tmp_path: Path) -> None:
    result = faceaudit("score", str(tmp_path), "--out", str(tmp_path / "o"), "--explain", "some")
    assert result.returncode == 2 and "'some' is not one of 'flagged', 'all', 'none'" in result.stderr


@pytest.mark.skipif(
    chromium_path() is None, reason="no Chromium found (Debian's `chromium`; .ci/run installs it)"
)
def test_report_in_real_chromium(first_run) -> None:
    """Loaded from file://, the page shows one row per CSV row; a filter click hides the others."""
    out, rows, run = first_run
    page = Page((out / "report.html").resolve().as_uri())
    try:
        visible = "Array.from(document.querySelectorAll('#verdicts tbody tr')).filter(r => !r.hidden).length"
        assert page.evaluate(visible) == len(rows)
        assert page.evaluate("document.querySelector('td.path').textContent.length > 0")
        page.evaluate("document.querySelector('#filters button[data-verdict=unreadable]').click()")
        assert page.evaluate(visible) == run["counts"]["unreadable"] == 2
        shown = page.evaluate(
            "Array.from(document.querySelectorAll('#verdicts tbody tr')).filter(r => !r.hidden)"
            ".map(r => r.getAttribute('data-verdict'))"
        )
        assert set(shown) == {"unreadable"}
        # The hostile name is shown as text, not run: no alert() element or script was created from it.
        assert page.evaluate("document.querySelectorAll('script').length") == 1
        assert page.evaluate(
            "Array.from(document.querySelectorAll('td.path')).some(td => td.textContent.includes('<script>'))"
        )
        # Sorting by P(AI) puts the highest first on the second click.
        page.evaluate("document.querySelector('#filters button[data-verdict=all]').click()")
        headers = "Array.from(document.querySelectorAll('#verdicts th'))"
        column = page.evaluate(f"{headers}.findIndex(th => th.textContent === 'P(AI)')")
        assert column >= 0
        page.evaluate(f"document.querySelectorAll('#verdicts th')[{column}].click()")
        page.evaluate(f"document.querySelectorAll('#verdicts th')[{column}].click()")
        first = page.evaluate(f"document.querySelector('#verdicts tbody tr').cells[{column}].textContent")
        assert float(first) == max(float(r["p_ai"]) for r in rows if r["p_ai"])
    finally:
        page.close()
