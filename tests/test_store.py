"""embed/store.py on real HDF5 files: look-ups, durability of committed batches, merging, leftovers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from faceaudit.data.nofollow import UnsafePath
from faceaudit.embed.store import MAX_SMALL_SHARDS, FeatureStore, StoreError

FINGERPRINT = "f" * 64
PROVENANCE = {"fingerprint": FINGERPRINT, "dim": 4, "backbone": "test"}


def digests(n: int, start: int = 0) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(start, start + n)]


def vectors_for(hashes: list[str]) -> np.ndarray:
    """A vector that depends only on the hash, so any stored copy can be checked."""
    return np.array([[int(h[i : i + 4], 16) / 65535 for i in range(0, 16, 4)] for h in hashes], np.float32)


def test_append_get_contains_and_plain_h5py_layout(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, FINGERPRINT)
    hashes = digests(50)
    with store.writer(PROVENANCE) as writer:
        writer.append(hashes[:30], vectors_for(hashes[:30]))
        writer.append(hashes[30:], vectors_for(hashes[30:]))

    assert len(store) == 50
    np.testing.assert_array_equal(store.get(hashes[::-1]), vectors_for(hashes[::-1]))
    assert store.contains([hashes[0], "0" * 64]).tolist() == [True, False]
    with pytest.raises(StoreError, match="1 of 2 images have no vector"):
        store.get([hashes[0], "0" * 64])

    (shard,) = store.files()  # the run's batches were merged into one shard
    with h5py.File(shard, "r") as handle:
        assert handle["vectors"].shape == (50, 4)
        assert handle["sha256"][0].decode() == hashes[0]
        assert handle.attrs["fingerprint"] == FINGERPRINT
        assert handle.attrs["faceaudit_version"]


def test_merging_drops_hashes_already_stored(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, FINGERPRINT)
    first, second = digests(20), digests(20, start=10)
    with store.writer(PROVENANCE) as writer:
        writer.append(first, vectors_for(first))
    with store.writer(PROVENANCE) as writer:
        writer.append(second, vectors_for(second))
    total = sum(h5py.File(p, "r")["sha256"].shape[0] for p in store.files())
    assert total == 30 and len(store) == 30


def test_many_small_runs_are_folded_into_few_files(tmp_path: Path) -> None:
    """One image per run (as each `ui` upload is): the files stay few, every vector stays right."""
    store = FeatureStore(tmp_path, FINGERPRINT)
    hashes = digests(MAX_SMALL_SHARDS * 3)
    for digest in hashes:
        with store.writer(PROVENANCE) as writer:
            writer.append([digest], vectors_for([digest]))
        assert len(store.files()) <= MAX_SMALL_SHARDS + 1
    assert sorted(store.hashes()) == sorted(hashes)
    rows = sum(h5py.File(p, "r")["sha256"].shape[0] for p in store.files())
    assert rows == len(hashes)  # nothing doubled by folding
    np.testing.assert_array_equal(store.get(hashes), vectors_for(hashes))


def test_a_killed_writer_keeps_committed_batches_and_the_next_run_merges_them(tmp_path: Path) -> None:
    """A child process commits two batches, starts a third and dies by SIGKILL mid-write."""
    hashes = digests(30)
    script = textwrap.dedent(
        f"""
        import os, signal, numpy as np
        from faceaudit.embed.store import FeatureStore
        from tests.test_store import PROVENANCE, vectors_for, digests
        import faceaudit.embed.store as store_module
        hashes = digests(30)
        store = FeatureStore({str(tmp_path)!r}, {FINGERPRINT!r})
        real_replace = os.replace
        def die_on_third(src, dst, calls=[0]):
            calls[0] += str(src).endswith(".h5.tmp")
            if calls[0] == 3:  # the third batch is on disk under its temporary name, not yet renamed
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)
        store_module.os.replace = die_on_third
        with store.writer(PROVENANCE) as writer:
            for start in range(0, 30, 10):
                writer.append(hashes[start:start + 10], vectors_for(hashes[start:start + 10]))
        """
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True)
    assert result.returncode == -9, result.stderr.decode()

    store = FeatureStore(tmp_path, FINGERPRINT)
    names = sorted(p.name for p in store.folder.iterdir())
    assert sum(name.endswith(".h5.tmp") for name in names) == 1
    assert len(store) == 20  # the two committed batches; the one in flight is lost
    np.testing.assert_array_equal(store.get(hashes[:20]), vectors_for(hashes[:20]))

    assert store.compact() == 20  # a run with nothing to write still merges what the dead run left
    assert [p.name.startswith("shard-") for p in store.files()] == [True]
    with store.writer(PROVENANCE) as writer:
        writer.append(hashes[15:], vectors_for(hashes[15:]))
    names = sorted(p.name for p in store.folder.iterdir())
    assert not any(name.endswith(".tmp") or name.startswith(("batch-", "run-")) for name in names)
    assert len(store.files()) == 2
    assert len(store) == 30
    rows = [h for path in store.files() for h in h5py.File(path, "r")["sha256"][()]]
    assert len(rows) == len(set(rows)) == 30


def test_live_runs_batches_are_not_merged_by_others(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, FINGERPRINT)
    hashes = digests(10)
    with store.writer(PROVENANCE) as slow:
        slow.append(hashes[:5], vectors_for(hashes[:5]))
        with store.writer(PROVENANCE) as fast:
            fast.append(hashes[5:], vectors_for(hashes[5:]))
        batches = [p for p in store.files() if p.name.startswith("batch-")]
        assert len(batches) == 1 and slow.run_id in batches[0].name
    assert len(store.files()) == 2 and len(store) == 10


def plant_damaged_files(folder: Path, good: Path, outside: Path) -> dict[str, str]:
    """Every kind of file a store folder must survive, beside the sound shard `good`; returns each
    planted name and a word of the reason `store check` must give."""
    planted = {}

    def store_file(name: str, reason: str, rows: int = 2, **attrs) -> h5py.File:
        """A store file of hashes 100 + 10000 * n onwards (n: files planted so far)."""
        handle = h5py.File(folder / name, "w")
        handle.attrs.update({**PROVENANCE, **attrs})
        hashes = digests(rows, start=100 + 10000 * len(planted))
        planted[name] = reason
        handle["sha256"] = np.array(hashes, dtype="S64")
        handle["key"] = np.array([int(h[:16], 16) for h in hashes], dtype=np.uint64)
        return handle

    os.mkfifo(folder / "shard-fifo.h5")
    planted["shard-fifo.h5"] = "not a regular file"
    with store_file("shard-other-dim.h5", "dimension 3") as handle:
        handle["vectors"] = np.ones((2, 3), np.float32)
    with store_file("shard-other-fingerprint.h5", "fingerprint eeee", fingerprint="e" * 64) as handle:
        handle["vectors"] = np.ones((2, 4), np.float32)
    with store_file("shard-nan.h5", "not finite") as handle:
        handle["vectors"] = np.array([[1, 2, 3, 4], [np.nan, 0, 0, 0]], np.float32)
    with store_file("shard-external.h5", "outside this file") as handle:
        os.mkfifo(outside / "external-fifo")  # a reader that opened it would hang
        handle.create_dataset(
            "vectors", (2, 4), np.float32, external=[(str(outside / "external-fifo"), 0, 32)]
        )
    planted["shard-huge.h5"] = "rows"
    with h5py.File(folder / "shard-huge.h5", "w") as handle:  # 2^31 rows declared in a few KB
        handle.attrs.update(PROVENANCE)
        handle.create_dataset("sha256", (2**31,), "S64", chunks=(1024,))
        handle.create_dataset("key", (2**31,), np.uint64, chunks=(1024,))
        handle.create_dataset("vectors", (2**31, 4), np.float32, chunks=(1024, 4))
    with store_file("shard-gzip.h5", "cannot be read", rows=4096) as handle:
        noise = np.random.default_rng(0).random((4096, 4), np.float32)
        handle.create_dataset("vectors", data=noise, chunks=(512, 4), compression="gzip")
    raw = bytearray((folder / "shard-gzip.h5").read_bytes())
    with h5py.File(folder / "shard-gzip.h5", "r") as handle:
        offset = handle["vectors"].id.get_chunk_info(3).byte_offset
    raw[offset : offset + 16] = os.urandom(16)  # one compressed chunk corrupted
    (folder / "shard-gzip.h5").write_bytes(bytes(raw))
    (outside / "linked.h5").write_bytes(good.read_bytes())
    (folder / "shard-link.h5").symlink_to(outside / "linked.h5")
    planted["shard-link.h5"] = "symlink"
    return planted


def test_damaged_files_are_skipped_listed_and_quarantined_without_a_hang(tmp_path: Path) -> None:
    from faceaudit.embed.store import check_store, quarantine

    store = FeatureStore(tmp_path / "store", FINGERPRINT)
    with store.writer(PROVENANCE) as writer:
        writer.append(digests(3), vectors_for(digests(3)))
    good = store.files()[0]
    outside = tmp_path / "outside"
    outside.mkdir()
    planted = plant_damaged_files(store.folder, good, outside)
    (tmp_path / "store" / "eeeeeeeeeeeeeeee").symlink_to(outside)  # a linked fingerprint folder
    planted["eeeeeeeeeeeeeeee"] = "symlinked fingerprint folder"
    before = {p.name: p.read_bytes() for p in outside.iterdir() if p.is_file()}

    # every reader: the sound shard still answers; the damaged rows (hashes 100+) count as missing
    fresh = FeatureStore(tmp_path / "store", FINGERPRINT)
    assert fresh.contains(digests(3)).all()
    np.testing.assert_array_equal(fresh.get(digests(3)), vectors_for(digests(3)))
    damaged_rows = [h for n in range(6) for h in digests(2, start=100 + 10000 * n)]
    found, vectors = fresh.get_available(damaged_rows)
    assert not found.any() and np.isfinite(vectors).all()
    gzipped = digests(4096, start=60100)
    assert fresh.contains(gzipped).all()  # its metadata reads: the corrupt chunk shows only when read
    found, _ = fresh.get_available(gzipped)
    assert not found.any() and not fresh.contains(gzipped).any()  # from then on the file is left out
    with pytest.raises(StoreError, match="have no vector"):
        fresh.get(digests(1, start=100))

    listed = {path.name: reason for path, reason in check_store(tmp_path / "store")}
    assert listed[good.name] is None
    for name, word in planted.items():
        assert listed[name] is not None and word in listed[name], (name, listed[name])

    (tmp_path / "store" / "quarantine").symlink_to(outside)  # moving into it would leave the store
    with pytest.raises(UnsafePath, match="symlink"):
        quarantine(tmp_path / "store" / store.folder.name / "shard-nan.h5", tmp_path / "store")
    (tmp_path / "store" / "quarantine").unlink()
    for name in planted:
        path = tmp_path / "store" / (name if name.startswith("eeee") else f"{store.folder.name}/{name}")
        quarantine(path, tmp_path / "store")
    assert [(p.name, r) for p, r in check_store(tmp_path / "store")] == [(good.name, None)]
    assert {p.name: p.read_bytes() for p in outside.iterdir() if p.is_file()} == before


def test_wrong_vector_shape_is_refused(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, FINGERPRINT)
    with store.writer(PROVENANCE) as writer, pytest.raises(ValueError, match="expected 2 vectors of 4"):
        writer.append(digests(2), np.zeros((2, 3)))
    assert not [p for p in os.listdir(store.folder) if p.endswith(".h5")]
