"""Files that appear complete or not at all: written under a scratch name, flushed, renamed.

Every file faceaudit writes for others to read (store shards, models, reports, maps, caches) goes
through `commit`, so a reader, or a run after a crash, sees the old file or the new one, never a part.
None of it goes through a symlink (see `data.nofollow`): the folder must be real, the scratch file is
created new, and a target that is a link is refused rather than replaced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from faceaudit.data.nofollow import create_new, open_file, real_folder, refuse_link, remove_file


def scratch_for(path: Path) -> Path:
    """The scratch name beside `path`: hidden, unique to this process, ending in .tmp (never read)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def commit(scratch: Path, target: Path) -> None:
    """Flush `scratch` to disk, rename it over `target`, and flush the folder's entry."""
    fd = open_file(scratch, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    refuse_link(target)
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
    """Yield a scratch path (created new and empty, so a writer that opens it by name truncates only
    our own file) to write `path`'s new content to; committed when the block ends, removed if it
    raises."""
    real_folder(path.parent)
    refuse_link(path)
    scratch = scratch or scratch_for(path)
    os.close(create_new(scratch))
    try:
        yield scratch
        commit(scratch, path)
    except BaseException:
        remove_file(scratch)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes as one atomic replacement."""
    with replacing(path) as scratch, open(open_file(scratch, os.O_WRONLY), "wb") as handle:
        handle.write(data)


def write_text(path: Path, text: str | Iterable[str]) -> None:
    """Write text (in pieces, so a big CSV never sits whole in memory) as one atomic replacement.
    Text that cannot be UTF-8 (a lone surrogate from an undecodable file name) is written escaped
    rather than failing the run."""
    with (
        replacing(path) as scratch,
        open(
            open_file(scratch, os.O_WRONLY), "w", encoding="utf-8", errors="backslashreplace", newline=""
        ) as handle,
    ):
        handle.writelines([text] if isinstance(text, str) else text)
