"""Creating, truncating, renaming and deleting files without ever going through a symlink.

An output folder, a store or a `--keep` folder may hold links planted by someone else (or left by a
tool); a write that follows one lands outside the folder the user named. Every file faceaudit changes
goes through these helpers: the folder it lives in must be a real folder (not a link), the file is
opened with O_NOFOLLOW, new files are created with O_EXCL, and a deletion never enters a linked
folder. The folders written into (OUT, OUT/maps, the store and its fingerprint folders, --keep) must
themselves be real folders: a link there is refused too (nightly makes OUT under the reports root,
where a planted link would otherwise be followed). The folders above them may be links.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path


class UnsafePath(Exception):
    """A path faceaudit would change goes through a symlink or is not what it must be; one-line reason."""


def real_folder(folder: Path, create: bool = True) -> Path:
    """`folder`, created if asked, refused unless it is a folder and not a symlink."""
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a dangling link or a file: refused below
            pass
        except OSError as exc:  # a file on the way (afile/sub), /proc, no permission
            raise UnsafePath(f"cannot create folder {folder}: {exc.strerror or exc}") from None
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        raise UnsafePath(f"{folder} does not exist") from None
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"{folder} is a symlink; faceaudit does not write through symlinks")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{folder} is not a folder")
    return folder


def refuse_link(path: Path) -> None:
    """Refuse `path` if it is a symlink (a file faceaudit is about to replace or delete)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise UnsafePath(f"{path} is a symlink; faceaudit does not write through symlinks")


def open_file(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open with O_NOFOLLOW, refusing anything but a regular file; returns the descriptor."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"{path} is a symlink; faceaudit does not write through symlinks") from None
        if exc.errno == errno.EISDIR:
            raise UnsafePath(f"{path} is a folder, not a file faceaudit can write") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def create_new(path: Path) -> int:
    """A new, empty regular file at `path` (a leftover of the same name, file or link, is removed
    first, never followed); returns a descriptor open for writing."""
    remove_file(path)
    return open_file(path, os.O_CREAT | os.O_EXCL | os.O_RDWR)


def remove_file(path: Path) -> bool:
    """Delete `path` if it is a file or a link (the link itself, never its target); folders stay.
    Returns whether something was removed."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def remove_matching(folder: Path, pattern: str) -> int:
    """Delete the files in `folder` whose names match `pattern`, only if `folder` is a real folder;
    returns how many were removed."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return 0
    except FileNotFoundError:
        return 0
    return sum(remove_file(path) for path in folder.glob(pattern))


class NotRegular(UnsafePath):
    """A path that is a FIFO, a device, a socket or a folder: never read (a read could block forever,
    or never end)."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is not a regular file ({kind})")
        self.kind = kind


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a reason a person reads."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a file"


def open_regular(path: Path, follow_links: bool = True) -> int:
    """A (blocking) read descriptor for `path`, opened without blocking and checked first: a FIFO named
    like an input, a shard or a model file answers at once (NotRegular) instead of hanging the run.
    Without `follow_links`, a link raises OSError ELOOP. Other OSErrors (gone, no permission) pass."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegular(path, file_kind(mode))
    os.set_blocking(fd, True)
    return fd


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of `path` (links followed: a model folder may be a link), read once, refused
    (UnsafePath) unless it is a regular file of at most `limit` bytes."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise UnsafePath(f"{path} does not exist") from None
    except OSError as exc:
        raise UnsafePath(f"{path} cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        if size > limit:
            raise UnsafePath(f"{path} is {size:,} bytes, more than the {limit:,} it may be")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafePath(f"{path} grew past {limit:,} bytes while being read")
    return data


# Far above any run.json, spec.json or night.json faceaudit writes.
MAX_JSON_BYTES = 16 * 2**20


def read_json(path: Path, limit: int = MAX_JSON_BYTES):
    """The JSON value in `path`, read as `read_regular` reads; UnsafePath, or ValueError (RecursionError
    for nesting no file of ours has) for text that is not JSON."""
    return json.loads(read_regular(path, limit))
