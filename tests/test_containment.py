"""Hostile inputs, round two: nothing outside OUT/STORE/--keep is touched, a file that changes after the
scan is a reason row (never a hang or a lost run), a damaged store or model is a one-line reason."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import copy_faces, faceaudit, fingerprint_folder, free_port, snapshot, write_image


def rows_of(out: Path) -> list[dict]:
    with open(out / "verdicts.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def dump(trained: dict, tmp_path: Path) -> Path:
    return copy_faces(trained, tmp_path / "in", 4)


def score(dump: Path, out: Path, store: Path, trained: dict, *extra: str):
    return faceaudit(
        "score", str(dump), "--out", str(out), "--store", str(store), "--model", str(trained["model"]),
        "--samples", "20", "--no-progress", *extra,
    )  # fmt: skip


# ---- 1. writes and deletes that would follow symlinks out of OUT or STORE ------------------------------


def test_nothing_is_written_or_deleted_through_a_planted_symlink(trained: dict, dump: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("DATA\n")
    (outside / "maps-elsewhere").mkdir()
    (outside / "maps-elsewhere" / ".stale.png.123.tmp").write_text("not faceaudit's\n")
    (outside / "store-elsewhere").mkdir()
    (outside / "drawn.png").write_bytes(b"someone else's picture")
    before = snapshot(outside)

    # The reproduction, through the command line: the lock would be truncated to hold a pid.
    out = tmp_path / "out-lock"
    out.mkdir()
    (out / ".faceaudit.lock").symlink_to(outside / "victim")
    result = score(dump, out, tmp_path / "store", trained, "--explain", "none")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is a symlink" in lines[0] and ".faceaudit.lock" in lines[0], lines
    assert snapshot(outside) == before

    # Other members, through the same flow in-process: maps/ (its stale scratch files would be cleaned
    # up, its maps drawn, outside), an output file, the store's own folder (batches written and deleted).
    from faceaudit.data.nofollow import UnsafePath
    from faceaudit.flows.score_flow import score_flow

    linked_store = tmp_path / "linked-store"
    linked_store.mkdir()
    fingerprint_folder(trained, linked_store).symlink_to(outside / "store-elsewhere")
    for name, target, store in (
        ("maps", outside / "maps-elsewhere", tmp_path / "store"),
        ("maps/0123456789abcdef-00000000-occlusion-blur.png", outside / "drawn.png", tmp_path / "store"),
        ("verdicts.csv", outside / "victim", tmp_path / "store"),
        ("report.html", outside / "victim", tmp_path / "store"),
        (None, None, linked_store),
    ):
        out = tmp_path / f"out-{str(name).replace('/', '-')}"
        out.mkdir()
        if name is not None:
            (out / name).parent.mkdir(exist_ok=True)
            (out / name).symlink_to(target)
        with pytest.raises(UnsafePath, match="is a symlink"):
            score_flow.fn(str(dump), str(out), str(store), str(trained["model"]), explain="all", samples=20)
        assert snapshot(outside) == before, name


def test_an_atomic_write_never_opens_a_planted_scratch_link(tmp_path: Path) -> None:
    from faceaudit.data.atomic import scratch_for, write_bytes, write_text
    from faceaudit.data.nofollow import UnsafePath

    victim = tmp_path / "victim"
    victim.write_text("DATA\n")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "run.json"
    scratch_for(target).symlink_to(victim)  # a guessable scratch name, planted before the write
    write_text(target, "{}\n")
    assert target.read_text() == "{}\n" and victim.read_text() == "DATA\n"
    assert not scratch_for(target).exists() and not scratch_for(target).is_symlink()
    (out / "kept.png").symlink_to(victim)  # a --keep or OUT file that is a link is refused, not followed
    with pytest.raises(UnsafePath, match="is a symlink"):
        write_bytes(out / "kept.png", b"x")
    assert victim.read_text() == "DATA\n"


# ---- 2. a file that changes after the scan ---------------------------------------------------------------


class Deadline:
    """Fail the test instead of hanging it: SIGALRM after `seconds`."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        def expired(*_):
            raise AssertionError(f"still running after {self.seconds} s: something blocked")

        signal.signal(signal.SIGALRM, expired)
        signal.alarm(self.seconds)

    def __exit__(self, *_) -> None:
        signal.alarm(0)


def test_files_changed_after_the_scan_become_reason_rows(trained: dict, dump: Path, tmp_path: Path) -> None:
    from faceaudit.data.records import scan
    from faceaudit.flows.report import thumbnail
    from faceaudit.flows.scoring import Scorer, picture_cells

    assert threading.current_thread() is threading.main_thread()  # SIGALRM needs it
    for i in range(4, 8):
        write_image(dump / f"photo{i}.png", seed=100 + i, fmt="PNG")
    elsewhere = write_image(tmp_path / "elsewhere.png", seed=999, fmt="PNG")
    scorer = Scorer.cached(trained["model"])
    store, out = str(tmp_path / "store"), tmp_path / "out"

    records = scan(dump)
    # After the scan, before the backbone reads them:
    (dump / "face0.png").unlink()  # deleted
    (dump / "face1.png").unlink()
    os.mkfifo(dump / "face1.png")  # a FIFO in its place: reading it would block forever
    (dump / "face2.png").unlink()
    (dump / "face2.png").symlink_to(elsewhere)  # a link to an image outside the folder
    shutil.copyfile(elsewhere, dump / "face3.png")  # another picture under the same name
    with Deadline(120):
        scorer.embed(records, store, str(dump), batch_size=2, workers=1)
        readable = [r for r in records if r.ok]
        predicted = scorer.predict([r.sha256 for r in readable], store, 20)
        # After embedding, before the maps: the rest change too.
        (dump / "photo4.png").unlink()
        (dump / "photo5.png").unlink()
        os.mkfifo(dump / "photo5.png")
        (dump / "photo6.png").unlink()
        (dump / "photo6.png").symlink_to(elsewhere)
        pictures = picture_cells(readable)  # reads the pictures again: the FIFO must not hang it either
        maps = scorer.draw_maps(readable, predicted, "all", ("occlusion",), out, 20, "blur")
        rows = scorer.rows(records, predicted, maps, pictures, "now")
        thumbnails = {r.rel: thumbnail(r) for r in records if r.sha256}

    by_path = {r["path"]: r for r in rows}
    assert len(rows) == 8
    changed = ["face0.png", "face1.png", "face2.png", "face3.png", "photo4.png", "photo5.png", "photo6.png"]
    for name in changed:
        row = by_path[name]
        assert row["verdict"] == "unreadable" and row["error"] and "\n" not in row["error"], name
    assert "gone" in by_path["face0.png"]["error"] and "gone" in by_path["photo4.png"]["error"]
    assert "FIFO" in by_path["face1.png"]["error"] and "FIFO" in by_path["photo5.png"]["error"]
    assert "symlink" in by_path["face2.png"]["error"] and "symlink" in by_path["photo6.png"]["error"]
    assert "changed since the scan" in by_path["face3.png"]["error"]
    # The image that stayed put is judged and mapped; nobody else's picture is shown under a name.
    kept = by_path["photo7.png"]
    assert (
        kept["verdict"] != "unreadable" and kept["occlusion_map"] and (out / kept["occlusion_map"]).is_file()
    )
    assert len(list((out / "maps").glob("*.png"))) == 1
    assert kept["face"] in ("found", "none") and (kept["width"], kept["height"]) == (48, 40)
    assert all(by_path[name][cell] == "" for name in changed for cell in ("face", "width", "height"))
    assert [name for name, uri in thumbnails.items() if uri] == ["photo7.png"]  # the report's pictures


# ---- 4. damaged stores, damaged model cards, names that are not UTF-8 -----------------------------------


def test_a_damaged_store_file_is_skipped_named_and_quarantined(trained: dict, dump: Path, tmp_path: Path):
    store = tmp_path / "store"
    shutil.copytree(trained["store"], store)
    folder = fingerprint_folder(trained, store)
    shard = sorted(folder.glob("shard-*.h5"))[0]
    (folder / "shard-truncated.h5").write_bytes(shard.read_bytes()[:3000])
    (folder / "batch-20260101T000000-1-abcdef-000000.h5").write_bytes(os.urandom(4096))
    with h5py.File(folder / "shard-wrong-types.h5", "w") as handle:  # valid HDF5, not a store file
        handle["sha256"] = np.arange(3)
        handle["key"] = np.arange(3, dtype=np.uint64)
        handle["vectors"] = np.zeros((3, 4), np.float32)

    result = score(dump, tmp_path / "out", store, trained, "--explain", "none")
    assert result.returncode == 0, result.stderr
    assert len(rows_of(tmp_path / "out")) == 4
    warned = [line for line in result.stderr.splitlines() if "damaged store file" in line]
    assert any("shard-truncated.h5" in line for line in warned)
    assert any("batch-20260101T000000" in line for line in warned)
    assert any("shard-wrong-types.h5: datasets of the wrong types" in line for line in warned)

    check = faceaudit("store", "check", str(store))
    assert check.returncode == 1 and check.stdout.count("damaged ") == 3
    moved = faceaudit("store", "check", str(store), "--quarantine")
    assert moved.returncode == 0 and moved.stdout.count("quarantined ") == 3
    assert sorted(p.name for p in (store / "quarantine" / folder.name).iterdir()) == [
        "batch-20260101T000000-1-abcdef-000000.h5",
        "shard-truncated.h5",
        "shard-wrong-types.h5",
    ]
    again = faceaudit("store", "check", str(store))
    assert again.returncode == 0 and "0 damaged" in again.stdout


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda card: card["thresholds"].update(ai="high"), "must be a finite number"),
        (lambda card: card["thresholds"].update(real=0.9, ai=0.2), "0 <= real <= ai <= 1"),
        (lambda card: card.update(n_samples=10**9), "'n_samples' must be a whole number"),
        (lambda card: card.update(n_samples="200"), "'n_samples' must be a whole number"),
        (lambda card: card["head"]["params"].update(hidden=[7, 3]), "the weights do not fit"),
        (lambda card: card["head"]["params"].update(members=3), "the weights do not fit"),
        (lambda card: card["head"]["params"].update(members=1), "the weights do not fit"),
        (lambda card: card["head"]["params"].update(members=0), "head parameter 'members' cannot be 0"),
        (lambda card: card["calibration"].update(slope=None), "calibration 'slope'"),
        (lambda card: card.update(thresholds=[0.5]), "'thresholds' must be an object"),
        (lambda card: card["probe"].update(reads="cls"), "the linear probe reads 'cls'"),
    ],
)
def test_a_bad_model_card_is_refused_before_any_work(trained: dict, tmp_path: Path, change, reason: str):
    from faceaudit.head.model import CARD_FILE, FaceauditModel, ModelError

    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    card = json.loads((model / CARD_FILE).read_text())
    change(card)
    (model / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match=reason.replace("(", r"\(")):
        FaceauditModel.load(model)


def test_a_card_nested_past_any_parser_is_refused(trained: dict, tmp_path: Path) -> None:
    from faceaudit.head.model import FaceauditModel, ModelError

    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    (model / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match="is not valid JSON"):
        FaceauditModel.load(model)


def test_the_command_line_refuses_a_bad_model_in_one_line(trained: dict, dump: Path, tmp_path: Path):
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    card = json.loads((model / "model.json").read_text())
    card["head"]["params"]["hidden"] = [999, 64]
    (model / "model.json").write_text(json.dumps(card))
    result = faceaudit("score", str(dump), "--out", str(tmp_path / "out"), "--model", str(model))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "the weights do not fit model.json" in result.stderr
    assert not (tmp_path / "out" / "verdicts.csv").exists()


# ---- 4 and 7: a folder name that is not UTF-8, and OUT inside INPUT_DIR ----------------------------------


def test_an_undecodable_input_folder_with_out_inside_it(trained: dict, dump: Path, tmp_path: Path) -> None:
    from faceaudit.flows.score_flow import score_flow

    folder = Path(os.fsdecode(bytes(tmp_path) + b"/dump-\xff"))
    dump.rename(folder)
    out, store = folder / "report", folder / "store"
    for _ in range(2):  # the second run must not score the first run's maps, CSV or store
        run = score_flow.fn(
            str(folder), str(out), str(store), str(trained["model"]), explain="all", samples=20
        )
        assert run["files"] == 4
        assert sorted(r["path"] for r in rows_of(out)) == [f"face{i}.png" for i in range(4)]
    assert len(list((out / "maps").glob("*.png"))) == 4
    page = (out / "report.html").read_bytes().decode("utf-8")  # valid UTF-8 whatever the folder's bytes
    assert "dump-\\xff" in page


def test_a_recorded_run_refuses_an_undecodable_name_in_one_line(trained: dict, dump: Path, tmp_path: Path):
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/dump-\xff"))
    dump.rename(folder)
    result = score(folder, tmp_path / "out", tmp_path / "store", trained, "--prefect")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "dump-\\xff: the name is not valid UTF-8" in result.stderr


def test_a_keep_folder_that_is_a_link_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "kept").symlink_to(tmp_path / "elsewhere")
    result = faceaudit("ui", "--keep", str(tmp_path / "kept"), "--port", str(free_port()))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "is a symlink" in result.stderr
    assert not list((tmp_path / "elsewhere").iterdir())


def test_nightly_never_takes_its_reports_or_store_for_a_dump(trained: dict, dump: Path, tmp_path: Path):
    from faceaudit.flows.nightly_flow import nightly_flow

    root = tmp_path / "dumps"
    root.mkdir()
    dump.rename(root / "2026-12-01")
    reports, store = root / "reports", root / "store"  # both inside the dumps root
    params = dict(dumps_root=str(root), reports_root=str(reports), store_dir=str(store), samples=20)
    first = nightly_flow.fn(**params, model_dir=str(trained["model"]), explain="none")
    again = nightly_flow.fn(**params, model_dir=str(trained["model"]), explain="none")
    assert first["dumps"] == again["dumps"] == 1 and list(first["scored"]) == ["2026-12-01"]
    assert again["up_to_date"] == ["2026-12-01"] and not again["scored"] and not again["failed"]
