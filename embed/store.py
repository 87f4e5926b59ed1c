"""The feature store: vectors keyed by image content hash, one folder per embedding fingerprint.

Layout (all readable with plain h5py):

    STORE/<fingerprint[:16]>/spec.json            what made these vectors (backbone, preprocessing, pooling)
    STORE/<fingerprint[:16]>/shard-<run>.h5       complete shards: one per finished run, small ones folded
    STORE/<fingerprint[:16]>/batch-<run>-<n>.h5   batches a run has committed but not yet merged
    STORE/<fingerprint[:16]>/*.tmp                files being written: never read

The cells read from the pictures themselves (`face`, `width`, `height`) are kept the same way, in a
folder of their own (embed/face_cells.py).

Each .h5 file holds `sha256` (N,) S64 hex digests, `key` (N,) uint64 (the digest's first 8 bytes, for
fast look-ups) and `vectors` (N, dim) float32, with provenance in the file's attributes.

Crash safety comes from never modifying a complete file: every batch is written under a temporary
name, flushed to disk and renamed, so a kill loses at most the batch in flight. When a run ends it
merges its batches (and those of runs that died) into one shard, dropping hashes already stored, then
deletes the batches. A run holds an flock on `run-<id>.lock` while alive, which is how others tell a
dead run's leftovers from a live run's. No file is created, written or deleted through a symlink
(`data.nofollow`), and a damaged .h5 file is skipped with a warning, never a crash: `faceaudit store
check` lists such files and moves them aside.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from faceaudit.data.atomic import fsync_dir, replacing
from faceaudit.data.nofollow import (
    NotRegular,
    UnsafePath,
    open_file,
    open_regular,
    read_json,
    real_folder,
    remove_file,
)
from faceaudit.data.text import display_name, first_line
from faceaudit.data.version import code_version

FORMAT_VERSION = 1
_BATCH = re.compile(r"^batch-(?P<run>.+)-(?P<seq>\d{6})\.h5$")
_SHARD = re.compile(r"^shard-(?P<run>.+?)(?:-\d+)?\.h5$")
_TMP = re.compile(r"^(?:batch|shard)-(?:merge-)?(?P<run>\d{8}T\d{6}-\d+-[0-9a-f]{6})")


QUARANTINE = "quarantine"  # where `faceaudit store check --quarantine` moves damaged files
_log = logging.getLogger("faceaudit")
_warned: set[str] = set()  # damaged files already reported by this process
_found_damaged: dict[str, str] = {}  # files whose vectors failed to read in this process, and why

# More shards than this under this many rows each are folded into one at the next compaction.
MAX_SMALL_SHARDS = 16
SMALL_SHARD_ROWS = 4096


class StoreError(Exception):
    """The store cannot be used as asked (wrong fingerprint, missing vectors); one-line reason."""


def hash_keys(hashes: Sequence[str]) -> np.ndarray:
    """The uint64 look-up key of each hex digest: its first 16 hex digits."""
    return np.fromiter((int(h[:16], 16) for h in hashes), dtype=np.uint64, count=len(hashes))


class FeatureStore:
    """Vectors of one embedding fingerprint under a store folder."""

    def __init__(self, root: Path | str, fingerprint: str) -> None:
        self.root = Path(root)
        self.fingerprint = fingerprint
        self.folder = self.root / fingerprint[:16]
        self._index: _Index | None = None

    @property
    def expected(self) -> _Expected:
        """What each of this folder's files must hold (a file that differs is skipped as damaged)."""
        return _Expected(self.fingerprint, expected_dim(self.folder))

    # ---- reading -------------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Complete files, shards first, in a stable order (none in a fingerprint folder that is a
        symlink: the store follows no links, and `store check` lists such a folder)."""
        if self.folder.is_symlink() or not self.folder.is_dir():
            return []
        names = [p for p in self.folder.iterdir() if _SHARD.match(p.name) or _BATCH.match(p.name)]
        return sorted(names, key=lambda p: (not p.name.startswith("shard-"), p.name))

    def refresh(self) -> None:
        """Forget the cached index; the next read sees files written since."""
        self._index = None

    @property
    def index(self) -> _Index:
        if self._index is None:
            self._index = _Index.build(self)
        return self._index

    def __len__(self) -> int:
        return self.index.unique_count()

    def contains(self, hashes: Sequence[str]) -> np.ndarray:
        """Boolean mask: which of `hashes` already have a vector."""
        files, _ = self.index.locate(hashes)
        return files >= 0

    def get(self, hashes: Sequence[str]) -> np.ndarray:
        """(len(hashes), dim) float32 vectors in the order asked; StoreError if any is missing."""
        found, vectors = self.get_available(hashes)
        if not found.all():
            missing = int((~found).sum())
            raise StoreError(f"{missing} of {len(hashes)} images have no vector in {self.folder}")
        return vectors

    def get_available(self, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, vectors) for `hashes`: rows not found are zero. A file whose vectors turn out
        unreadable or not finite is left out from then on (with a warning), so its images count as
        missing and a run embeds them again rather than stopping or scoring NaN."""
        for _ in range(20):
            files, rows = self.index.locate(hashes)
            try:
                vectors = self.index.read(files, rows)
            except FileNotFoundError:  # a compaction replaced a file since the index was built
                self.refresh()
                continue
            except _Damaged as exc:
                path, reason = exc.args
                _mark_damaged(path, reason)
                self.refresh()
                continue
            return files >= 0, vectors
        raise StoreError(f"the store at {self.folder} kept changing while being read")

    def hashes(self) -> list[str]:
        """Every stored hash, once each."""
        return self.index.unique_hashes()

    def provenance(self) -> dict | None:
        """The attributes of the first complete file, or None for an empty store."""
        for path in self.files():
            with contextlib.suppress(FileNotFoundError):
                if (contents := _read(path, read=False)) is not None:
                    return {key: _plain(value) for key, value in contents.attrs.items()}
        return None

    # ---- writing -------------------------------------------------------------------------------

    def writer(self, provenance: dict) -> StoreWriter:
        """A writer for one run: commits batches as they come, merges them when closed."""
        return StoreWriter(self, provenance)

    def compact(self, own_run: str | None = None) -> int:
        """Merge the batches of `own_run` and of dead runs into one new shard; returns rows added.

        Serialised by a lock, and the new shard is renamed into place before any batch is deleted,
        so a crash here at worst leaves duplicates that the next compaction drops.
        """
        if not self.folder.is_dir():
            return 0
        real_folder(self.folder, create=False)
        if own_run is None and not os.access(self.folder, os.W_OK):
            # a read-only store (a shared copy) is read as it is: nothing of ours to merge into it
            _log.info("store %s is read-only: leftovers of dead runs are not merged", self.folder)
            return 0
        with _exclusive_lock(self.folder / "compact.lock"):
            batches: list[Path] = []
            dead: set[str] = set()
            for path in sorted(self.folder.glob("batch-*.h5")):
                run = _BATCH.match(path.name)["run"]
                if run == own_run or run in dead or _is_dead(self.folder, run):
                    if run != own_run:
                        dead.add(run)
                    batches.append(path)
            added = 0
            if batches:
                added = self._merge(batches, run_id=own_run or f"merge-{_new_run_id()}")
            self._remove_leftovers(dead)
            self._fold_small_shards()
            self.refresh()
            return added

    def _fold_small_shards(self) -> None:
        """Fold many small shards into one: short runs (each `ui` upload is one) would otherwise leave
        a file each, and every look-up opens every file."""
        small = []
        expected = self.expected
        for path in self.files():
            contents = _read(path, False, expected) if path.name.startswith("shard-") else None
            if contents is not None and contents.rows < SMALL_SHARD_ROWS:
                small.append(path)
        if len(small) > MAX_SMALL_SHARDS:
            self._merge(small, run_id=f"merge-{_new_run_id()}")

    def _merge(self, sources: list[Path], run_id: str) -> int:
        """Copy the rows of `sources` (batches, or shards being folded) that no other shard holds into
        one new shard, a file at a time, then delete the sources."""
        others = [p for p in self.files() if p.name.startswith("shard-") and p not in sources]
        expected = self.expected
        stored = _Index.build_from(others, expected)
        plan: list[tuple[Path, np.ndarray]] = []
        taken: set[bytes] = set()
        attrs: dict = {}
        readable = []  # damaged sources are left where they are, for `store check` to move aside
        for path in sources:
            contents = _read(path, expected=expected)
            if contents is None:
                continue
            readable.append(path)
            attrs = attrs or {**contents.attrs, "dim": contents.dim}
            batch_hashes = contents.hashes
            in_shards = stored.locate([h.decode() for h in batch_hashes])[0] >= 0
            keep = [i for i, h in enumerate(batch_hashes) if not in_shards[i] and h not in taken]
            taken.update(batch_hashes[keep])
            plan.append((path, np.array(keep, dtype=np.int64)))
        total = sum(len(keep) for _, keep in plan)
        if total:
            target = self.folder / f"shard-{run_id}.h5"
            suffix = 1
            while target.exists():
                target = self.folder / f"shard-{run_id}-{suffix}.h5"
                suffix += 1
            attrs.update(created_at=_now(), run_id=run_id)
            _write_atomic_from(target, plan, total, int(attrs["dim"]), attrs)
        for path in readable:
            remove_file(path)
        fsync_dir(self.folder)
        return total

    def _remove_leftovers(self, dead_runs: set[str]) -> None:
        """Delete temporary files and lock files of runs that are no longer alive."""
        for path in self.folder.glob("*.tmp"):
            match = _TMP.match(path.name)
            if match and (match["run"] in dead_runs or _is_dead(self.folder, match["run"])):
                remove_file(path)
        for path in self.folder.glob("run-*.lock"):
            run = path.name[len("run-") : -len(".lock")]
            if run in dead_runs or _is_dead(self.folder, run):
                remove_file(path)


class StoreWriter:
    """One run's writer. Use as a context manager; each `append` is durable once it returns."""

    def __init__(self, store: FeatureStore, provenance: dict) -> None:
        self.store = store
        self.run_id = _new_run_id()
        self.attrs = {
            **provenance,
            "faceaudit_version": code_version(),
            "format_version": FORMAT_VERSION,
            "run_id": self.run_id,
        }
        self._seq = 0
        self._lock_fd: int | None = None

    def __enter__(self) -> StoreWriter:
        folder = self.store.folder
        real_folder(self.store.root)
        real_folder(folder)
        spec = folder / "spec.json"
        if not spec.exists():
            with replacing(spec, folder / f"spec.json.{self.run_id}.tmp") as scratch:
                scratch.write_text(json.dumps({k: _plain(v) for k, v in self.attrs.items()}, indent=2))
        self._lock_fd = open_file(folder / f"run-{self.run_id}.lock", os.O_CREAT | os.O_RDWR)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        return self

    def append(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Commit one batch: on return it survives a crash."""
        if len(hashes) == 0:
            return
        if self._lock_fd is None:
            raise RuntimeError("use the writer as a context manager")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(hashes), int(self.attrs["dim"])):
            raise ValueError(f"expected {len(hashes)} vectors of {self.attrs['dim']}, got {vectors.shape}")
        target = self.store.folder / f"batch-{self.run_id}-{self._seq:06d}.h5"
        _write_atomic(target, list(hashes), vectors, {**self.attrs, "created_at": _now()})
        self._seq += 1

    def __exit__(self, *exc_info) -> None:
        try:
            if self._seq:
                self.store.compact(own_run=self.run_id)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
                remove_file(self.store.folder / f"run-{self.run_id}.lock")
            self.store.refresh()


class _Index:
    """Where each stored hash lives: sorted uint64 keys pointing at (file, row)."""

    def __init__(
        self,
        paths: list[Path],
        hashes: list[np.ndarray],
        keys: np.ndarray,
        files: np.ndarray,
        rows: np.ndarray,
    ) -> None:
        self.paths = paths
        self.hashes = hashes
        self.keys = keys
        self.files = files
        self.rows = rows

    @classmethod
    def build(cls, store: FeatureStore) -> _Index:
        # A concurrent compaction may delete a batch between listing and opening it; its rows are
        # then in a shard that a fresh listing shows.
        for _ in range(20):
            try:
                return cls.build_from(store.files(), store.expected)
            except FileNotFoundError:
                time.sleep(0.05)
        raise StoreError(f"the store at {store.folder} kept changing while being read")

    @classmethod
    def build_from(cls, paths: list[Path], expected: _Expected) -> _Index:
        """The index over the readable files among `paths`; the first readable file sets the
        dimension when spec.json does not, and files that differ from it are skipped as damaged."""
        hashes, keys, files, rows = [], [], [], []
        readable = []
        for path in paths:
            contents = _read(path, expected=expected)
            if contents is None:
                continue
            if expected.dim is None:
                expected = _Expected(expected.fingerprint, contents.dim)
            readable.append(path)
            hashes.append(contents.hashes)
            keys.append(contents.keys)
            files.append(np.full(len(keys[-1]), len(readable) - 1, dtype=np.int32))
            rows.append(np.arange(len(keys[-1]), dtype=np.int64))
        if not readable:
            empty = np.zeros(0, dtype=np.uint64)
            return cls([], [], empty, np.zeros(0, np.int32), np.zeros(0, np.int64))
        all_keys = np.concatenate(keys)
        order = np.argsort(all_keys, kind="stable")
        return cls(
            readable,
            hashes,
            all_keys[order],
            np.concatenate(files)[order],
            np.concatenate(rows)[order],
        )

    def locate(self, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(file, row) for each hash; file is -1 where the hash is not stored."""
        wanted = hash_keys(hashes)
        files = np.full(len(hashes), -1, dtype=np.int32)
        rows = np.zeros(len(hashes), dtype=np.int64)
        if len(self.keys) == 0 or len(hashes) == 0:
            return files, rows
        start = np.searchsorted(self.keys, wanted, side="left")
        stop = np.searchsorted(self.keys, wanted, side="right")
        for i in np.flatnonzero(stop > start):
            target = hashes[i].encode()
            for position in range(start[i], stop[i]):  # a 64-bit key collision is possible, if unlikely
                file, row = self.files[position], self.rows[position]
                if self.hashes[file][row] == target:
                    files[i], rows[i] = file, row
                    break
        return files, rows

    def read(self, files: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The vectors at (file, row); rows of file -1 stay zero. Raises _Damaged(path, reason) for a
        file whose vectors cannot be read or are not finite."""
        dim = 0
        blocks = {}
        for file in np.unique(files[files >= 0]):
            picks = np.flatnonzero(files == file)
            wanted_rows, inverse = np.unique(rows[picks], return_inverse=True)
            path = self.paths[file]
            try:
                with _regular_file(path) as name, h5py.File(name, "r", locking=False) as handle:
                    block = handle["vectors"][wanted_rows]
            except _Damaged as exc:
                raise _Damaged(path, str(exc)) from None
            except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
                if isinstance(exc, FileNotFoundError):
                    raise
                detail = first_line(exc)
                raise _Damaged(path, f"vectors cannot be read ({detail})") from None
            if not np.isfinite(block).all():
                raise _Damaged(path, "holds vectors that are not finite (NaN or infinite)")
            dim = block.shape[1]
            blocks[file] = (picks, block[inverse])
        out = np.zeros((len(files), dim), dtype=np.float32)
        for picks, block in blocks.values():
            out[picks] = block
        return out

    def hash_set(self) -> set[bytes]:
        return {h for array in self.hashes for h in array}

    def unique_hashes(self) -> list[str]:
        return sorted(h.decode() for h in self.hash_set())

    def unique_count(self) -> int:
        return len(self.hash_set())


class _Damaged(Exception):
    """A store file that cannot be read as one; the message says why."""


@dataclass
class _Contents:
    """A store file's row count and attributes, and its hashes and keys when they were read."""

    rows: int
    attrs: dict
    dim: int = 0
    hashes: np.ndarray | None = None
    keys: np.ndarray | None = None

    @property
    def fingerprint(self) -> str:
        return str(self.attrs.get("fingerprint", ""))


@dataclass(frozen=True)
class _Expected:
    """What every file of one fingerprint folder must hold: vectors of this fingerprint (the folder's
    name is its first 16 digits) and, once known, this dimension."""

    fingerprint: str
    dim: int | None = None


# A store file declares its row count in a few bytes; the look-up index holds 72 bytes a row
# (hash and key). Past this many rows one file would need over 1.4 GB before a vector is read.
MAX_ROWS_PER_FILE = 20_000_000
# Deflate, HDF5's usual filter, never packs more than about 1032 bytes into one; a dataset declaring
# more than that over what it holds is lying about its size (2^31 rows in 6 KB, chunks never written).
MAX_COMPRESSION = 1100
# Rows read at a time when `store check` reads every vector.
CHECK_BLOCK = 4096


@contextlib.contextmanager
def _regular_file(path: Path) -> Iterator[str]:
    """A name h5py can open that is sure to reach `path` as it is now, if it is a regular file:
    the file is opened without following a link and without blocking (a FIFO named like a shard
    would hang every reader), checked, and then handed over as /proc/self/fd/N. _Damaged otherwise."""
    try:
        fd = open_regular(path, follow_links=False)
    except NotRegular as exc:
        raise _Damaged(f"not a regular file ({exc.kind}), never read") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Damaged("a symlink; the store reads only its own regular files") from None
        if exc.errno == errno.ENOENT:
            raise FileNotFoundError(path) from None
        raise _Damaged(f"cannot be opened ({exc.strerror or exc})") from None
    try:
        by_fd = f"/proc/self/fd/{fd}"
        yield by_fd if os.path.exists(by_fd) else str(path)
    finally:
        os.close(fd)


def _check_layout(handle: h5py.File, expected: _Expected | None) -> _Contents:
    """The datasets every reader relies on, from the file's metadata only: names, types, shapes, data
    kept inside this file, a row count its size can hold, and the folder's fingerprint and dimension."""
    missing = [name for name in ("sha256", "key", "vectors") if name not in handle]
    if missing:
        raise _Damaged(f"no {', '.join(missing)} dataset")
    hashes, keys, vectors = handle["sha256"], handle["key"], handle["vectors"]
    if not all(isinstance(d, h5py.Dataset) for d in (hashes, keys, vectors)):
        raise _Damaged("sha256, key and vectors must be datasets")
    if hashes.dtype != np.dtype("S64") or keys.dtype != np.uint64 or vectors.dtype != np.float32:
        raise _Damaged("datasets of the wrong types")
    if hashes.ndim != 1 or vectors.ndim != 2 or not len(hashes) == len(keys) == vectors.shape[0]:
        raise _Damaged("datasets of different lengths or shapes")
    for dataset in (hashes, keys, vectors):
        if dataset.is_virtual or dataset.external:
            raise _Damaged(f"dataset {dataset.name} keeps its data outside this file; never read")
    rows = len(keys)
    if rows > MAX_ROWS_PER_FILE:
        raise _Damaged(f"declares {rows:,} rows, more than the {MAX_ROWS_PER_FILE:,} a store file may hold")
    for dataset in (hashes, keys, vectors):
        declared = dataset.size * dataset.dtype.itemsize
        held = dataset.id.get_storage_size()
        if declared > MAX_COMPRESSION * held + 4096:
            raise _Damaged(
                f"dataset {dataset.name} declares {declared:,} bytes but holds {held:,}; its size is not real"
            )
    contents = _Contents(rows, dict(handle.attrs), int(vectors.shape[1]))
    if expected is not None:
        found = contents.fingerprint
        if found and not found.startswith(expected.fingerprint[:16]):
            raise _Damaged(f"holds vectors of fingerprint {found[:16]}, not {expected.fingerprint[:16]}")
        if expected.dim is not None and contents.dim != expected.dim:
            raise _Damaged(f"holds vectors of dimension {contents.dim}, not {expected.dim}")
    return contents


def _load(
    path: Path, read: bool = True, expected: _Expected | None = None, every_vector: bool = False
) -> _Contents:
    """A store file checked for the layout every reader relies on, with its hashes and keys if `read`;
    with `every_vector`, every vector read too, a block at a time (a corrupt compressed chunk or a NaN
    is damage the metadata does not show). _Damaged otherwise; a file deleted meanwhile (a concurrent
    compaction) raises FileNotFoundError."""
    try:
        with _regular_file(path) as name, h5py.File(name, "r", locking=False) as handle:
            contents = _check_layout(handle, expected)
            if every_vector:
                _check_vectors(handle["vectors"])
            if read:
                contents.hashes, contents.keys = handle["sha256"][()], handle["key"][()]
            return contents
    except (FileNotFoundError, _Damaged):
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise _Damaged(f"not a readable HDF5 store file ({first_line(exc)})") from None


def _check_vectors(vectors: h5py.Dataset) -> None:
    """Read every vector, a block at a time; _Damaged for a block that cannot be read or is not finite."""
    for start in range(0, vectors.shape[0], CHECK_BLOCK):
        try:
            block = vectors[start : start + CHECK_BLOCK]
        except (OSError, ValueError, RuntimeError) as exc:
            raise _Damaged(f"vectors cannot be read ({first_line(exc)})") from None
        if not np.isfinite(block).all():
            raise _Damaged(f"holds vectors that are not finite (NaN or infinite) from row {start}")


def damage(path: Path, expected: _Expected | None = None) -> str | None:
    """Why the .h5 file at `path` cannot be read as a store file, or None when it can."""
    try:
        _load(path, expected=expected, every_vector=True)
    except _Damaged as exc:
        return str(exc)
    return None


def _warn(path: Path, reason: str) -> None:
    """Say once per process that a store file is skipped, and how to move it aside."""
    if str(path) not in _warned:
        _warned.add(str(path))
        _log.warning(
            "skipping damaged store file %s: %s (`faceaudit store check --quarantine %s` moves it aside)",
            display_name(str(path)),
            display_name(reason),
            display_name(str(path.parent.parent)),
        )


def _read(path: Path, read: bool = True, expected: _Expected | None = None) -> _Contents | None:
    """What `_load` gives, or None, with a warning once per process, for a damaged file (or one found
    damaged earlier in this process while its vectors were read)."""
    if str(path) in _found_damaged:
        return None
    try:
        return _load(path, read, expected)
    except _Damaged as exc:
        _warn(path, str(exc))
        return None


def _mark_damaged(path: Path, reason: str) -> None:
    """Leave `path` out of every later look-up in this process (its vectors failed to read)."""
    _found_damaged[str(path)] = reason
    _warn(path, reason)


def expected_dim(folder: Path) -> int | None:
    """The dimension spec.json (written by the folder's first writer) gives, or None."""
    try:
        dim = read_json(folder / "spec.json").get("dim")
    except (UnsafePath, OSError, ValueError, AttributeError, RecursionError):
        return None
    return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None


def check_store(root: Path | str) -> list[tuple[Path, str | None]]:
    """Every .h5 file of every fingerprint folder under `root`, with why it is damaged (None: sound).
    A fingerprint folder that is a symlink is listed as damaged itself and never entered."""
    found = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        folder = Path(entry.path)
        if entry.name == QUARANTINE:
            continue
        if entry.is_symlink():
            found.append((folder, "a symlinked fingerprint folder; the store follows no links"))
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        expected = _Expected(entry.name, expected_dim(folder))
        for path in sorted(folder.glob("*.h5")):
            with contextlib.suppress(FileNotFoundError):
                found.append((path, damage(path, expected)))
    return found


def quarantine(path: Path, root: Path | str) -> Path:
    """Move a damaged store file (or a linked fingerprint folder: the link itself) to
    ROOT/quarantine/<fingerprint folder>/, out of every look-up. The store, quarantine/ and the folders
    on both sides must be real folders, so nothing is moved from or into a place reached by a link."""
    root = real_folder(Path(root), create=False)
    if path.parent == root:  # a linked fingerprint folder: moved as the link it is
        into = "linked-folders"
    else:
        if path.parent.parent != root:
            raise UnsafePath(f"{path} is not a file of a fingerprint folder of {root}")
        real_folder(path.parent, create=False)
        into = path.parent.name
    folder = real_folder(real_folder(root / QUARANTINE) / into)
    target = folder / path.name
    if os.path.lexists(target):
        target = folder / f"{path.name}.{_new_run_id()}"
    os.replace(path, target)  # renames the entry itself, never a link's target
    return target


def _write_atomic(target: Path, hashes: list[str], vectors: np.ndarray, attrs: dict) -> None:
    """Write a complete file under a temporary name, flush it to disk, then rename it into place."""
    with (
        replacing(target, target.with_name(target.name + ".tmp")) as scratch,
        h5py.File(scratch, "w", locking=False) as handle,
    ):
        handle.create_dataset("sha256", data=np.array(hashes, dtype="S64"))
        handle.create_dataset("key", data=hash_keys(hashes))
        handle.create_dataset("vectors", data=vectors.astype(np.float32, copy=False))
        for key, value in attrs.items():
            handle.attrs[key] = value


def _write_atomic_from(
    target: Path, plan: list[tuple[Path, np.ndarray]], total: int, dim: int, attrs: dict
) -> None:
    """Like `_write_atomic`, copying the chosen rows of each batch file in turn (memory: one batch)."""
    with (
        replacing(target, target.with_name(target.name + ".tmp")) as scratch,
        h5py.File(scratch, "w", locking=False) as out,
    ):
        sha = out.create_dataset("sha256", shape=(total,), dtype="S64")
        key = out.create_dataset("key", shape=(total,), dtype=np.uint64)
        vectors = out.create_dataset("vectors", shape=(total, dim), dtype=np.float32)
        at = 0
        for path, keep in plan:
            if len(keep) == 0:
                continue
            with h5py.File(path, "r", locking=False) as batch:
                sha[at : at + len(keep)] = batch["sha256"][()][keep]
                key[at : at + len(keep)] = batch["key"][()][keep]
                vectors[at : at + len(keep)] = batch["vectors"][()][keep]
            at += len(keep)
        for name, value in attrs.items():
            out.attrs[name] = value


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    fd = open_file(path, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _is_dead(folder: Path, run: str) -> bool:
    """True when no live process holds run `run`'s lock."""
    try:
        fd = open_file(folder / f"run-{run}.lock", os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            return False
        raise
    finally:
        os.close(fd)
    return True


def _new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}-{secrets.token_hex(3)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _plain(value):
    """HDF5 attribute values as plain Python values."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
