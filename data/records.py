"""One record per thing found in a folder: its hash, its sniffed type, its label, or why it is unusable."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from data.labels import label_and_group
from data.sniff import HEAD_BYTES, describe_non_image, sniff_format
from data.walk import walk

# Larger files are refused before reading: no face photo needs 256 MB.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass
class ImageRecord:
    """What the pipeline knows about one file. `error` is set when the file cannot be used."""

    path: Path
    rel: str
    sha256: str | None = None
    size: int = 0
    format: str | None = None
    label: str | None = None
    group: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def iter_records(
    root: Path | str,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[ImageRecord]:
    """Walk `root`, hash each file's bytes and sniff its type. Never raises for a bad file."""
    root = Path(root)
    base_folders = [root.resolve().name]
    for found in walk(root):
        folders = base_folders + found.rel.split("/")[:-1]
        label, group = label_and_group(folders)
        record = ImageRecord(path=found.path, rel=found.rel, label=label, group=group, error=found.error)
        if record.error is None:
            _hash_and_sniff(record, max_bytes)
        yield record


def scan(
    root: Path | str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_record: Callable[[ImageRecord], None] | None = None,
) -> list[ImageRecord]:
    """All records under `root`, in walk order; `on_record` is called after each (for progress)."""
    records = []
    for record in iter_records(root, max_bytes):
        records.append(record)
        if on_record is not None:
            on_record(record)
    return records


def _hash_and_sniff(record: ImageRecord, max_bytes: int) -> None:
    digest = hashlib.sha256()
    try:
        with open(record.path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
            digest.update(head)
            size = len(head)
            while chunk := handle.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    record.error = f"file too large: over {max_bytes // (1024 * 1024)} MB"
                    return
                digest.update(chunk)
    except OSError as exc:
        record.error = f"cannot read file: {exc.strerror or exc}"
        return
    record.size = size
    record.sha256 = digest.hexdigest()
    record.format = sniff_format(head)
    if record.format is None:
        record.error = describe_non_image(head)
