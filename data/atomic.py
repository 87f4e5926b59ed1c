"""Files that appear complete or not at all: written under a scratch name, flushed, renamed.

Every file faceaudit writes for others to read (store shards, models, reports, maps, caches) goes
through `commit`, so a reader, or a run after a crash, sees the old file or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path


def scratch_for(path: Path) -> Path:
    """The scratch name beside `path`: hidden, unique to this process, ending in .tmp (never read)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def commit(scratch: Path, target: Path) -> None:
    """Flush `scratch` to disk, rename it over `target`, and flush the folder's entry."""
    fd = os.open(scratch, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(scratch, target)
    fsync_dir(target.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort where the file system cannot)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: Path, scratch: Path | None = None) -> Iterator[Path]:
    """Yield a scratch path to write `path`'s new content to; committed when the block ends, removed
    if it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = scratch or scratch_for(path)
    try:
        yield scratch
        commit(scratch, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
        raise


def write_text(path: Path, text: str | Iterable[str]) -> None:
    """Write text (in pieces, so a big CSV never sits whole in memory) as one atomic replacement."""
    with replacing(path) as scratch, open(scratch, "w", encoding="utf-8", newline="") as handle:
        handle.writelines([text] if isinstance(text, str) else text)
