"""The cells read from the picture itself (`face`, `width`, `height`), kept in the feature store, so
that a picture is decoded and searched for a face once.

Scoring a dump again (another model, other samples, a report lost) reads every vector from the store,
but the face check decoded every picture again and ran its cascades: 2.8 s of 4.3 for 100 stored
images here. The cells live in the store like vectors of three numbers (1 found or 0 none, width,
height), in a folder named by what decides them: the check's settings, the OpenCV build whose
cascades it runs and the cells held. Keeping them is best effort: a store this run cannot write to
(read-only, say) costs only the search next time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import NamedTuple

import numpy as np

from faceaudit.data.nofollow import UnsafePath
from faceaudit.embed.faces import FACE_CHECK, FOUND, NONE
from faceaudit.embed.store import FeatureStore, StoreError

log = logging.getLogger("faceaudit")


class PictureCells(NamedTuple):
    """What a verdict's row says of the picture itself, not of the model's view of it: whether a face
    was found, and the picture's size in pixels as a viewer shows it."""

    face: str
    width: int
    height: int


@cache
def opencv_version() -> str:
    """The OpenCV build whose cascades the check runs (whichever wheel provides cv2)."""
    import cv2

    return cv2.__version__


@cache
def check_fingerprint() -> str:
    """Names what a stored cell was found with; another check or OpenCV build gets its own folder."""
    described = {"face_check": FACE_CHECK, "opencv": opencv_version(), "cells": PictureCells._fields}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def cell_store(store_dir: str) -> FeatureStore:
    return FeatureStore(store_dir, check_fingerprint())


def stored_cells(store_dir: str, hashes: Sequence[str]) -> dict[str, PictureCells]:
    """{hash: cells} for the images whose cells the store holds (none where it cannot be read: the
    pictures are searched again)."""
    store = cell_store(store_dir)
    try:
        found, values = store.get_available(hashes)
    except (OSError, StoreError) as exc:
        log.info("picture cells not read from %s (%s): the pictures are searched again", store.folder, exc)
        return {}
    return {
        h: PictureCells(FOUND if v[0] >= 0.5 else NONE, int(v[1]), int(v[2]))
        for h, ok, v in zip(hashes, found, values, strict=True)
        if ok
    }


@contextmanager
def keeping_cells(store_dir: str) -> Iterator[Callable[[dict[str, PictureCells]], None]]:
    """A function that keeps a batch of cells (durable once it returns); a no-op where the store
    cannot be written, said once in the log."""
    store = cell_store(store_dir)
    provenance = {
        "fingerprint": store.fingerprint,
        "dim": len(PictureCells._fields),
        "holds": "the face column (1 found, 0 none), then the width and height columns",
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

    def keep(cells: dict[str, PictureCells]) -> None:
        nonlocal failed
        if failed or not cells:
            return
        # float32 holds every whole number up to 2**24 exactly: any size decode_image accepts
        values = np.array([(c.face == FOUND, c.width, c.height) for c in cells.values()], dtype=np.float32)
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
    log.info("picture cells not kept in %s (%s): they are searched for again next time", store.folder, exc)
