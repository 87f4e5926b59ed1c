"""Hostile inputs, round three (issue 20): no file outside OUT or the store changes, no input hangs or
exhausts a run, the record matches the verdicts, and every failure a user can cause is one line."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.bombs import app_segment_bomb, metadata_bomb, scan_bomb
from tests.conftest import copy_faces, faceaudit, fingerprint_folder, snapshot


def rows_of(out: Path) -> dict[str, dict]:
    with open(out / "verdicts.csv", newline="", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


@pytest.fixture
def dump(trained: dict, tmp_path: Path) -> Path:
    return copy_faces(trained, tmp_path / "in", 3)


def score(dump: Path, out: Path, store: Path, trained: dict, *extra: str, model: Path | None = None):
    return faceaudit(
        "score", str(dump), "--out", str(out), "--store", str(store),
        "--model", str(model or trained["model"]), "--samples", "20", "--no-progress", *extra,
    )  # fmt: skip


def one_line_refusal(result) -> str:
    """The one line a refused run printed (exit 2, nothing else on stderr)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceaudit: error: "), result.stderr
    return lines[0]


# ---- 1. nothing outside OUT or the store changes, through a link of either kind -------------------------


def test_hard_links_and_symlinked_quarantine_change_nothing_outside(
    trained: dict, dump: Path, tmp_path: Path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("IMPORTANT\n")
    (outside / "snapshot.csv").write_text("an older verdicts.csv, kept by a cp -al snapshot\n")
    out = tmp_path / "out"
    out.mkdir()
    os.link(outside / "victim", out / ".faceaudit.lock")  # the reproduction
    os.link(outside / "snapshot.csv", out / "verdicts.csv")  # another member: a file replaced by the run
    before = snapshot(outside)
    result = score(dump, out, tmp_path / "store", trained, "--explain", "none")
    assert result.returncode == 0, result.stderr
    assert len(rows_of(out)) == 3 and snapshot(outside) == before

    # store check --quarantine: a linked quarantine/ and a linked quarantine/<fp> are refused in a line.
    store = tmp_path / "store"
    folder = fingerprint_folder(trained, store)
    (folder / "shard-broken.h5").write_bytes(b"not HDF5")
    (store / "quarantine").symlink_to(outside)
    check = faceaudit("store", "check", str(store), "--quarantine")
    assert check.returncode == 1 and "symlink" in check.stderr and len(check.stderr.splitlines()) == 1
    (store / "quarantine").unlink()
    (store / "quarantine").mkdir()
    (store / "quarantine" / folder.name).symlink_to(outside)
    check = faceaudit("store", "check", str(store), "--quarantine")
    assert check.returncode == 1 and "symlink" in check.stderr and "Traceback" not in check.stderr
    assert snapshot(outside) == before and (folder / "shard-broken.h5").exists()


# ---- 2. one model, read once per run, decides and is recorded -----------------------------------------


def test_a_model_rewritten_during_a_run_neither_decides_nor_is_recorded(trained: dict, tmp_path: Path):
    from faceaudit.embed.store import FeatureStore
    from faceaudit.flows.score_flow import predict
    from faceaudit.flows.scoring import _BY_ID, _LOADED, Scorer
    from faceaudit.head.model import ModelError

    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    scorer = Scorer.cached(model)  # what a run does at its start
    hashes = FeatureStore(trained["store"], scorer.spec.fingerprint).hashes()[:4]
    before = predict.fn(str(model), scorer.ident, hashes, str(trained["store"]), 20)

    card = json.loads((model / "model.json").read_text())  # `train --model-out` replaces the card
    card["thresholds"].update(ai=0.0, real=0.0, probe_agrees=0.0)  # every confident face called AI
    (model / "model.json").write_text(json.dumps(card))
    during = predict.fn(str(model), scorer.ident, hashes, str(trained["store"]), 20)
    assert during == before  # the run's own model still decides

    _LOADED.clear()  # a task in another process, which must load the folder again
    _BY_ID.clear()
    with pytest.raises(ModelError, match="changed during this run"):
        predict.fn(str(model), scorer.ident, hashes, str(trained["store"]), 20)


# ---- 3 and 4. hangs and memory bombs: a reason row, the rest judged --------------------------------------


def test_jpeg_bombs_become_reason_rows_quickly(trained: dict, dump: Path, tmp_path: Path) -> None:
    (dump / "segments.jpg").write_bytes(app_segment_bomb(2_000_000))  # 8 MB of empty APP1 segments
    (dump / "metadata.jpg").write_bytes(metadata_bomb(40))  # 40 MB in 640 full APP2 segments
    (dump / "scans.jpg").write_bytes(scan_bomb(6000, 20_000))  # 1.4 MB, 20,000 scans of 36 megapixels
    (dump / "small-scans.jpg").write_bytes(scan_bomb(256, 5_000))  # little work per scan, too many scans
    (dump / "fewer-scans.jpg").write_bytes(scan_bomb(3000, 80))  # under the scan count, over the work
    result = score(dump, tmp_path / "out", tmp_path / "store", trained, "--explain", "none")
    assert result.returncode == 0, result.stderr
    rows = rows_of(tmp_path / "out")
    assert "too many marker segments" in rows["segments.jpg"]["error"]
    assert "too much metadata" in rows["metadata.jpg"]["error"]
    assert "refused before decoding" in rows["scans.jpg"]["error"]
    assert "too many scans" in rows["small-scans.jpg"]["error"]
    assert "too much decoding work" in rows["fewer-scans.jpg"]["error"]
    assert {rows[f"face{i}.png"]["verdict"] for i in range(3)} <= {"real", "ai_generated", "uncertain"}


def test_fifos_and_lying_shards_in_the_store_neither_hang_nor_stop_a_run(
    trained: dict, dump: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(trained["store"], store)
    folder = fingerprint_folder(trained, store)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(folder / "shard-x.h5")  # the reproduction
    os.mkfifo(outside / "fifo")
    with h5py.File(folder / "shard-external.h5", "w") as handle:  # data kept in an external FIFO
        handle["sha256"] = np.array([b"0" * 64], dtype="S64")
        handle["key"] = np.zeros(1, np.uint64)
        handle.create_dataset("vectors", (1, 4), np.float32, external=[(str(outside / "fifo"), 0, 16)])
    with h5py.File(folder / "shard-huge.h5", "w") as handle:  # 2^31 rows declared in a few KB
        handle.create_dataset("sha256", (2**31,), "S64", chunks=(1024,))
        handle.create_dataset("key", (2**31,), np.uint64, chunks=(1024,))
        handle.create_dataset("vectors", (2**31, 4), np.float32, chunks=(1024, 4))

    result = score(dump, tmp_path / "out", store, trained, "--explain", "none")
    assert result.returncode == 0, result.stderr
    assert len(rows_of(tmp_path / "out")) == 3
    check = faceaudit("store", "check", str(store))
    assert check.returncode == 1
    assert "shard-x.h5: not a regular file" in check.stdout
    assert "shard-external.h5: dataset /vectors keeps its data outside this file" in check.stdout
    assert "shard-huge.h5: declares 2,147,483,648 rows" in check.stdout


def test_a_fifo_named_run_json_in_a_report_folder_does_not_hang_the_night(
    trained: dict, dump: Path, tmp_path: Path
) -> None:
    from tests import warm

    root = tmp_path / "dumps"
    root.mkdir()
    dump.rename(root / "d")
    (tmp_path / "reports" / "d").mkdir(parents=True)
    os.mkfifo(tmp_path / "reports" / "d" / "run.json")  # read to decide whether "d" is up to date
    result = warm.run(
        [*warm.CLI, "nightly", str(root), "--out", str(tmp_path / "reports"),
         "--store", str(tmp_path / "store"), "--model", str(trained["model"]), "--samples", "20",
         "--explain", "none"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "scored d:" in result.stdout and len(rows_of(tmp_path / "reports" / "d")) == 3
    assert 'href="d/report.html"' in (tmp_path / "reports" / "index.html").read_text()


def test_a_fifo_in_place_of_model_json_is_one_line(trained: dict, dump: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    (model / "model.json").unlink()
    os.mkfifo(model / "model.json")
    line = one_line_refusal(score(dump, tmp_path / "out", tmp_path / "store", trained, model=model))
    assert "model.json is not a regular file" in line


# ---- 5. images from outside never reach reports, reports are never scored --------------------------------


def test_nightly_and_score_keep_dumps_reports_and_store_apart(trained: dict, dump: Path, tmp_path: Path):
    root = tmp_path / "dumps"
    root.mkdir()
    dump.rename(root / "2026-12-01")
    private = tmp_path / "private"
    private.mkdir()
    shutil.copyfile(root / "2026-12-01" / "face0.png", private / "secret.png")
    (root / "2026-12-02").symlink_to(private)  # a dump that is a link to a folder outside the root

    common = ["--store", str(tmp_path / "store"), "--model", str(trained["model"]), "--samples", "20"]
    night = faceaudit("nightly", str(root), "--out", str(tmp_path / "reports"), "--explain", "none", *common)
    assert night.returncode == 1
    assert "failed 2026-12-02: a symlink to a folder" in night.stderr
    assert not (tmp_path / "reports" / "2026-12-02").exists()
    assert len(rows_of(tmp_path / "reports" / "2026-12-01")) == 3

    line = one_line_refusal(faceaudit("nightly", str(root), "--out", str(root), *common))
    assert "would put reports inside the dumps" in line
    line = one_line_refusal(faceaudit("nightly", str(root), "--out", str(root / "2026-12-01" / "r"), *common))
    assert "would put reports inside the dumps" in line
    line = one_line_refusal(
        faceaudit(
            "score",
            str(root / "2026-12-01"),
            "--out",
            str(tmp_path / "o"),
            "--store",
            str(root / "2026-12-01"),
        )
    )
    assert "is the input folder itself" in line


# ---- 7. a damaged store or OUT is skipped with a warning, never the run; NaN never reaches an output ----


def test_damaged_store_files_and_map_notes_do_not_stop_a_run(trained: dict, dump: Path, tmp_path: Path):
    store = tmp_path / "store"
    out = tmp_path / "out"
    first = score(dump, out, store, trained, "--explain", "all")
    assert first.returncode == 0, first.stderr
    folder = fingerprint_folder(trained, store)
    shard = sorted(folder.glob("shard-*.h5"))[0]
    with h5py.File(shard, "r+") as handle:  # every stored vector of the dump turned NaN
        handle["vectors"][...] = np.nan
    with h5py.File(shard, "r") as handle:
        dim, fingerprint = handle["vectors"].shape[1], handle.attrs["fingerprint"]
    with h5py.File(folder / "shard-other-dim.h5", "w") as handle:
        handle.attrs["fingerprint"] = fingerprint
        handle["sha256"] = np.array([b"1" * 64], dtype="S64")
        handle["key"] = np.zeros(1, np.uint64)
        handle["vectors"] = np.zeros((1, dim + 1), np.float32)
    note = sorted((out / "maps").glob("*.png.json"))[0]
    note.write_text("abc")

    again = score(dump, out, store, trained, "--explain", "all")
    assert again.returncode == 0, again.stderr
    assert "shard-other-dim.h5: holds vectors of dimension" in again.stderr
    assert "not finite" in again.stderr
    rows = rows_of(out)
    assert all(row["p_ai"] not in ("", "nan") and row["verdict"] != "unreadable" for row in rows.values())
    for line in (out / "verdicts.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in verdicts.jsonl"))
    assert note.read_text() == "" or np.isfinite(float(note.read_text()))  # drawn again, noted afresh

    check = faceaudit("store", "check", str(store))
    assert check.returncode == 1 and "not finite" in check.stdout and "dimension" in check.stdout


def test_a_read_only_store_holding_every_vector_still_scores(trained: dict, dump: Path, tmp_path: Path):
    store = tmp_path / "store"
    assert score(dump, tmp_path / "first", store, trained, "--explain", "none").returncode == 0
    folders = [store, *[p for p in store.rglob("*") if p.is_dir()]]
    for path in folders:
        path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        result = faceaudit(
            "score", str(dump), "--out", str(tmp_path / "out"), "--store", str(store),
            "--model", str(trained["model"]), "--samples", "20", "--explain", "none", as_user=True,
        )  # fmt: skip
    finally:
        for path in folders:
            path.chmod(stat.S_IRWXU)
    assert result.returncode == 0, result.stderr
    assert len(rows_of(tmp_path / "out")) == 3


# ---- 8 and 9. what a user can get wrong is one line, exit 2 ----------------------------------------------


def _card(change):
    def edit(model: Path) -> None:
        card = json.loads((model / "model.json").read_text())
        change(card)
        (model / "model.json").write_text(json.dumps(card))

    return edit


BAD_MODELS = {
    "no weights": (lambda m: (m / "model.safetensors").unlink(), "model.safetensors does not exist"),
    "dangling weights": (
        lambda m: ((m / "model.safetensors").unlink(), (m / "model.safetensors").symlink_to(m / "gone")),
        "model.safetensors does not exist",
    ),
    "card is a list": (lambda m: (m / "model.json").write_text("[]"), "not a JSON object"),
    "embedding.describe not an object": (
        _card(lambda c: c["embedding"].update(describe="scale")),
        "its description its preprocessing and pooling",
    ),
    "threshold 1e400 as digits": (
        lambda m: (m / "model.json").write_text(
            (m / "model.json").read_text().replace('"ood": ', '"ood": 1' + "0" * 400 + ', "was": ', 1)
        ),
        "threshold 'ood' must be a finite number",
    ),
    "dropout 1.5": (_card(lambda c: c["head"]["params"].update(dropout=1.5)), "'dropout' cannot be 1.5"),
    "a layer of no units": (
        _card(lambda c: c["head"]["params"].update(hidden=[0, 64])),
        "'hidden' cannot be",
    ),
    "a negative learning rate": (_card(lambda c: c["head"]["params"].update(lr=-1e-3)), "'lr' cannot be"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_a_bad_model_folder_is_one_line(trained: dict, tmp_path: Path, case: str) -> None:
    from faceaudit.head.model import FaceauditModel, ModelError

    change, reason = BAD_MODELS[case]
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    change(model)
    with pytest.raises(ModelError, match=reason.replace("(", r"\(")):
        FaceauditModel.load(model)


def test_unusable_places_are_one_line_before_any_work(trained: dict, dump: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "o1" / "report.html").mkdir(parents=True)
    (tmp_path / "o2" / ".faceaudit.lock").mkdir(parents=True)
    store = tmp_path / "store"
    cases = {
        ("--out", str(tmp_path / "o1")): "report.html is a folder",
        ("--out", str(tmp_path / "o2")): ".faceaudit.lock is a folder",
        ("--out", str(tmp_path / "afile" / "sub")): "cannot create folder",
        ("--out", "/proc/x"): "cannot create folder /proc/x",
        ("--out", str(tmp_path / "o3"), "--store", str(tmp_path / "afile" / "sub")): "cannot create folder",
    }
    for args, reason in cases.items():
        result = faceaudit("score", str(dump), "--model", str(trained["model"]), "--store", str(store), *args)
        assert reason in one_line_refusal(result), args
    assert one_line_refusal(faceaudit("score", str(dump), "--out", str(tmp_path / "o4"), "--model", "/nope"))
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    _card(lambda c: c["embedding"].pop("describe"))(model)
    line = one_line_refusal(
        faceaudit("score", str(dump), "--out", str(tmp_path / "o5"), "--model", str(model))
    )
    assert "no 'embedding.describe'" in line


# ---- 10. names cannot forge log lines or reach a terminal or page raw ------------------------------------


def test_file_names_cannot_forge_log_lines_or_carry_escapes(trained: dict, dump: Path, tmp_path: Path):
    forged = "x\n00:00:00.000 | INFO    | faceaudit - all files verified.jpg"
    names = [forged, "clear\x1b[2J\x1b[31mred.jpg", "invoice\u202egnp.exe"]
    for name in names:
        (dump / name).write_bytes(b"not an image")  # unreadable: its name is logged as a warning
    out = tmp_path / "out"
    result = score(dump, out, tmp_path / "store", trained, "--explain", "none")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
    assert not any(line.startswith("00:00:00.000") for line in result.stderr.splitlines())
    assert "x\\x0a00:00:00.000" in result.stderr
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "\x1b" not in page and "\u202e" not in page and "invoice\\u202egnp.exe" in page


# ---- 12. a dump gone after the night started fails; it is never "scored" ----------------------------------


def test_a_dump_gone_or_replaced_by_a_file_fails(trained: dict, dump: Path, tmp_path: Path) -> None:
    from faceaudit.flows.score_flow import InputGone, score_flow

    params = dict(
        store_dir=str(tmp_path / "store"), model_dir=str(trained["model"]), explain="none", samples=20
    )
    gone = tmp_path / "gone"
    with pytest.raises(InputGone, match="not a folder"):
        score_flow.fn(str(gone), str(tmp_path / "out-gone"), **params)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(InputGone, match="not a folder"):
        score_flow.fn(str(tmp_path / "a-file"), str(tmp_path / "out-file"), **params)
    assert not (tmp_path / "out-gone").exists() and not (tmp_path / "out-file").exists()


# ---- 6 and 11. what a killed run or server left in TMPDIR goes with the next -----------------------------


def test_the_private_tmpdir_of_a_run_killed_with_9_is_removed(tmp_path: Path) -> None:
    """What a dask run or the upload page keeps in its private TMPDIR goes when it is killed -9."""
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT, wait_for

    code = (
        "import sys, time; from faceaudit.flows.orchestration import private_tempdir\n"
        "with private_tempdir() as scratch:\n"
        "    (scratch / 'upload').write_bytes(b'an upload being judged')\n"
        "    print(scratch, flush=True); time.sleep(600)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    scratch = Path(process.stdout.readline().strip())
    assert scratch.parent == tmp_path and (scratch / "upload").is_file()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    wait_for(lambda: not scratch.exists(), 10, "the killed run's private TMPDIR to be removed")
    assert not list(tmp_path.iterdir())
