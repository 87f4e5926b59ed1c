"""Picking and copying benchmark images, shared by the bench scripts."""

from __future__ import annotations

import shutil
from pathlib import Path

from faceaudit.data.records import ImageRecord, scan


def first_images(folder: Path, count: int = 0) -> list[ImageRecord]:
    """Readable images under `folder` in content-hash order (a fixed, source-mixed sample); 0 means all."""
    records = sorted((r for r in scan(folder) if r.ok), key=lambda r: r.sha256)
    return records[:count] if count else records


def copy_images(records: list[ImageRecord], folder: Path) -> Path:
    """Copy `records` into `folder`, keeping their relative paths (and so their labels)."""
    for record in records:
        target = folder / record.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record.path, target)
    return folder
