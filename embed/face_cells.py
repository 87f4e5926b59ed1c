"""The `face` cells kept in the feature store, so that a picture is searched for a face once.

Scoring a dump again (another model, other samples, a report lost) reads every vector from the store,
but the face check decoded every picture again and ran its cascades: 2.8 s of 4.3 for 100 stored
images here. The cells live in the store like vectors of one number (1 found, 0 none),
in a folder named by what decides them: the check's settings and the OpenCV build whose cascades it
runs. Keeping them is best effort: a store this run cannot write to (read-only, say) costs only the
search next time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache

import numpy as np

from faceaudit.data.nofollow import UnsafePath
from faceaudit.embed.faces import FACE_CHECK, FOUND, NONE
from faceaudit.embed.store import FeatureStore, StoreError

log = logging.getLogger("faceaudit")


@cache
def opencv_version() -> str:
    """The OpenCV build whose cascades the check runs (whichever wheel provides cv2)."""
    import cv2

    return cv2.__version__


@cache
def check_fingerprint() -> str:
    """Names what a stored cell was found with; another check or OpenCV build gets its own folder."""
    described = {"face_check": FACE_CHECK, "opencv": opencv_version()}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def cell_store(store_dir: str) -> FeatureStore:
    return FeatureStore(store_dir, check_fingerprint())


def stored_cells(store_dir: str, hashes: Sequence[str]) -> dict[str, str]:
    """{hash: 'found' or 'none'} for the images whose cell the store holds (none where it cannot be
    read: the pictures are searched again)."""
    store = cell_store(store_dir)
    try:
        found, values = store.get_available(hashes)
    except (OSError, StoreError) as exc:
        log.info("face cells not read from %s (%s): the pictures are searched again", store.folder, exc)
        return {}
    return {h: FOUND if v[0] >= 0.5 else NONE for h, ok, v in zip(hashes, found, values, strict=True) if ok}


@contextmanager
def keeping_cells(store_dir: str) -> Iterator[Callable[[dict[str, str]], None]]:
    """A function that keeps a batch of cells (durable once it returns); a no-op where the store
    cannot be written, said once in the log."""
    store = cell_store(store_dir)
    provenance = {
        "fingerprint": store.fingerprint,
        "dim": 1,
        "holds": "the face column: 1 found, 0 none",
        "face_check": json.dumps(FACE_CHECK),
        "opencv": opencv_version(),
    }
    unkept = (OSError, UnsafePath, StoreError)
    try:
        writer = store.writer(provenance).__enter__()
    except unkept as exc:
        _not_kept(store, exc)
        yield lambda cells: None
        return
    failed = False

    def keep(cells: dict[str, str]) -> None:
        nonlocal failed
        if failed or not cells:
            return
        values = np.array([[1.0 if cell == FOUND else 0.0] for cell in cells.values()], dtype=np.float32)
        try:
            writer.append(list(cells), values)
        except unkept as exc:  # a full disk, say: the run goes on without keeping them
            failed = True
            _not_kept(store, exc)

    try:
        yield keep
    finally:
        try:
            writer.__exit__(None, None, None)
        except unkept as exc:
            _not_kept(store, exc)


def _not_kept(store: FeatureStore, exc: Exception) -> None:
    log.info("face cells not kept in %s (%s): they are searched for again next time", store.folder, exc)
