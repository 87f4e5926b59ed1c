"""One record per thing found in a folder: its hash, its sniffed type, its label, or why it is unusable."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from faceaudit.data.decode import UnreadableImage
from faceaudit.data.labels import label_and_group
from faceaudit.data.nofollow import NotRegular, open_regular
from faceaudit.data.sniff import HEAD_BYTES, describe_non_image, sniff_format
from faceaudit.data.walk import walk

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
    via_link: bool = False  # reached through a symlink inside the input folder

    @property
    def ok(self) -> bool:
        return self.error is None


def read_scanned(record: ImageRecord) -> bytes:
    """The file's bytes exactly as the scan hashed them, or UnreadableImage saying what changed.

    Every read after the scan (decoding for the backbone, maps, thumbnails) comes through here: the
    path must still be a regular file (a FIFO or device put in its place is never read, so nothing
    hangs), of the scanned size, with the scanned hash (a file swapped for another, or for a link to
    one outside the folder, is caught), and a file that was not a link must not have become one.
    """
    with os.fdopen(_open_regular(record.path, record.via_link), "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size != record.size:
            raise UnreadableImage(f"changed since the scan: {size:,} bytes, was {record.size:,}")
        data = handle.read(record.size + 1)
    if len(data) != record.size or hashlib.sha256(data).hexdigest() != record.sha256:
        raise UnreadableImage("changed since the scan: its content is not what was hashed")
    return data


def _open_regular(path: Path, follow_link: bool) -> int:
    """A read descriptor for `path` (`open_regular`), refused with the reason a row shows."""
    try:
        return open_regular(path, follow_link)
    except NotRegular as exc:
        raise UnreadableImage(f"not a regular file ({exc.kind}): not read") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableImage("is a symlink now, was a file when scanned (not followed)") from None
        if exc.errno == errno.ENOENT:
            raise UnreadableImage("file is gone (deleted or moved while the run read it)") from None
        raise UnreadableImage(f"cannot read file: {exc.strerror or exc}") from None


def iter_records(
    root: Path | str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    skip: Iterable[Path | str] = (),
) -> Iterator[ImageRecord]:
    """Walk `root` (leaving out the folders in `skip`), hash each file's bytes and sniff its type.
    Never raises for a bad file."""
    root = Path(root)
    base_folders = [root.resolve().name]
    for found in walk(root, skip):
        folders = base_folders + found.rel.split("/")[:-1]
        label, group = label_and_group(folders)
        record = ImageRecord(
            path=found.path,
            rel=found.rel,
            label=label,
            group=group,
            error=found.error,
            via_link=found.via_link,
        )
        if record.error is None:
            _hash_and_sniff(record, max_bytes)
        yield record


def scan(
    root: Path | str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_record: Callable[[ImageRecord], None] | None = None,
    skip: Iterable[Path | str] = (),
) -> list[ImageRecord]:
    """All records under `root`, in walk order; `on_record` is called after each (for progress)."""
    records = []
    for record in iter_records(root, max_bytes, skip):
        records.append(record)
        if on_record is not None:
            on_record(record)
    return records


def _hash_and_sniff(record: ImageRecord, max_bytes: int) -> None:
    digest = hashlib.sha256()
    try:
        fd = _open_regular(record.path, record.via_link)
    except UnreadableImage as exc:
        record.error = str(exc)
        return
    try:
        with os.fdopen(fd, "rb") as handle:
            if os.fstat(fd).st_size > max_bytes:
                record.error = f"file too large: over {max_bytes // (1024 * 1024)} MB"
                return
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
