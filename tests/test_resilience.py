"""`faceaudit score` under kill -9 and beside other runs: nothing half-written, nothing lost or doubled."""

from __future__ import annotations

import csv
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import warm
from tests.conftest import (
    ROOT,
    alive,
    faceaudit,
    hash_rows,
    kill_after_progress,
    lock_held_elsewhere,
    wait_for,
)

VOLATILE = {"scored_at"}  # differs between any two runs


def score_command(folder: Path, out: Path, store: Path, model: Path) -> list[str]:
    return [*warm.CLI, *score_args(folder, out, store, model)]


def score_args(folder: Path, out: Path, store: Path, model: Path, explain: str = "all") -> list[str]:
    """`faceaudit score` on the test's tiny model: small batches and few samples, no progress bars."""
    return [
        "score",
        str(folder),
        "--out",
        str(out),
        "--store",
        str(store),
        "--model",
        str(model),
        "--explain",
        explain,
        "--samples",
        "20",
        "--batch-size",
        "4",
        "--workers",
        "1",
        "--no-progress",
    ]


def read_rows(out: Path) -> list[dict]:
    with open(out / "verdicts.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def comparable(rows: list[dict]) -> dict[str, dict]:
    return {r["path"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in rows}


def stored_rows(store: Path) -> dict[str, list[str]]:
    """The hashes each folder of the store holds: the vectors' and the face cells' (embed/face_cells.py)."""
    folders = {path.parent for path in store.rglob("*.h5")}
    return {folder.name: hash_rows(folder.glob("*.h5")) for folder in folders}


def written(out: Path, store: Path) -> set[str]:
    """Names of the files a run commits as it goes: store batches and maps."""
    maps = {p.name for p in (out / "maps").glob("*.png")} if (out / "maps").is_dir() else set()
    return {p.name for p in store.rglob("batch-*.h5")} | maps


def check_outputs_whole(out: Path, files: int) -> None:
    """Whatever is visible in OUT is complete: a whole CSV, a whole page."""
    if (out / "verdicts.csv").exists():
        assert len(read_rows(out)) == files
    if (out / "report.html").exists():
        assert (out / "report.html").read_text(encoding="utf-8").rstrip().endswith("</html>")


@pytest.fixture(scope="module")
def folder(trained: dict, tmp_path_factory) -> Path:
    """32 images from the training data, in their own folder (40 commits: the five kills need about 25)."""
    target = tmp_path_factory.mktemp("dump")
    for source in sorted(trained["data"].rglob("*.png"))[::3][:32]:
        shutil.copyfile(source, target / f"{source.parent.name}-{source.name}")
    return target


def test_kill_nine_five_times_then_resume_equals_an_uninterrupted_run(
    trained: dict, folder: Path, tmp_path: Path
) -> None:
    model, files = trained["model"], len(list(folder.iterdir()))
    clean_out, clean_store = tmp_path / "clean-out", tmp_path / "clean-store"
    warm.run(score_command(folder, clean_out, clean_store, model), cwd=ROOT, check=True)

    out, store = tmp_path / "out", tmp_path / "store"
    rng = random.Random(4)
    interrupted = 0
    orphans: set[int] = set()  # DataLoader workers of the killed runs
    for _ in range(5):
        # Until a kill has caught a run while it decodes, kill within its first batches (32 images, 8
        # batches): a later kill may come after the embedding loop, and its worker, have ended.
        wanted, sliver = rng.randint(1, 3 if not orphans else 12), rng.uniform(0.0, 0.05)
        interrupted += kill_after_progress(
            score_command(folder, out, store, model),
            lambda: written(out, store),
            wanted,
            sliver,
            watch=lambda: check_outputs_whole(out, files),
            orphans=orphans,
        )
        check_outputs_whole(out, files)
    assert interrupted >= 4, "the runs finished before they could be killed; the test proves nothing"
    assert orphans, "no run was killed while its decoding worker ran; the worker check proves nothing"
    wait_for(lambda: not any(alive(pid) for pid in orphans), 15, "the killed runs' workers to exit", 0.1)

    warm.run(score_command(folder, out, store, model), cwd=ROOT, check=True)
    assert comparable(read_rows(out)) == comparable(read_rows(clean_out))
    assert sorted(p.name for p in (out / "maps").iterdir()) == sorted(
        p.name for p in (clean_out / "maps").iterdir()
    )
    stored = stored_rows(store)
    assert len(stored) == 2  # vectors and face cells
    assert all(len(rows) == len(set(rows)) == files for rows in stored.values())  # each image once
    leftovers = [p for p in [*out.rglob("*"), *store.rglob("*")] if p.name.endswith(".tmp")]
    assert not leftovers and not list(store.rglob("batch-*"))


def test_two_runs_share_one_store(trained: dict, folder: Path, tmp_path: Path) -> None:
    """Started together on overlapping folders: both finish and every image is stored once."""
    first, second = tmp_path / "first", tmp_path / "second"
    images = sorted(folder.iterdir())
    for target, picked in ((first, images[:32]), (second, images[16:])):
        target.mkdir()
        for path in picked:
            shutil.copyfile(path, target / path.name)
    store = tmp_path / "store"
    runs = [
        warm.popen(
            score_command(dump, tmp_path / f"{dump.name}-out", store, trained["model"]),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for dump in (first, second)
    ]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    stored = stored_rows(store)
    assert len(stored) == 2  # vectors and face cells
    assert all(len(rows) == len(set(rows)) == len(images) for rows in stored.values())
    one, two = (comparable(read_rows(tmp_path / f"{d}-out")) for d in ("first", "second"))
    shared = set(one) & set(two)
    assert len(shared) == 16 and all(one[name] == two[name] for name in shared)


def test_a_second_run_on_the_same_out_is_refused(trained: dict, folder: Path, tmp_path: Path) -> None:
    """While another process holds OUT (a helper that takes the lock and waits to be told to let go:
    a handshake, not a race against the clock), `score` on it stops at once with a reason and exit code
    75; once the holder is gone, however it went, the next run goes ahead."""
    out, store = tmp_path / "out", tmp_path / "store"
    with lock_held_elsewhere(out) as holder:
        second = faceaudit(*score_args(folder, out, store, trained["model"], explain="none"))
        assert second.returncode == 75  # EX_TEMPFAIL: retry later
        assert second.stderr.strip() == (
            f"faceaudit: error: {out} is being written by another faceaudit run (pid {holder.pid}); "
            "wait for it to finish or choose another --out"
        )
        assert not (out / "verdicts.csv").exists()
    again = faceaudit(*score_args(folder, out, store, trained["model"], explain="none"))
    assert again.returncode == 0, again.stderr
    assert len(read_rows(out)) == len(list(folder.iterdir()))
