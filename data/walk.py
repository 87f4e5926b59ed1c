"""Walk an input folder the way a cautious user would: no hidden files, no escaping symlinks."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Names that promise an image; a folder named like this is reported so the user sees it.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Found:
    """One thing found under the root: a file to read, or something reported with a reason.
    `via_link`: the file was reached through a symlink (inside the root), so a later read may follow one."""

    path: Path
    rel: str
    error: str | None = None
    via_link: bool = False


def walk(root: Path | str, skip: Iterable[Path | str] = ()) -> Iterator[Found]:
    """Yield every non-hidden file under `root`, in a stable order, depth first.

    Symlinks are followed only to files inside `root`. Anything that cannot become an image
    (an escaping or looping symlink, a folder named `x.jpg`, a socket) is yielded with `error` set.
    Folders in `skip` (faceaudit's own output and store, when they lie inside `root`) are left out.
    The walk keeps its own stack, so a tree of any depth is walked without recursion.
    """
    root = Path(root)
    real_root = os.path.realpath(root)
    skipped = {found for found in map(identity, skip) if found is not None}
    listed = _listing(root, "")
    if isinstance(listed, Found):
        yield listed
        return
    stack: list[tuple[Iterator[os.DirEntry], str]] = [(iter(listed), "")]
    while stack:
        entries, prefix = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        rel = prefix + entry.name
        if entry.is_symlink():
            yield _symlink(path, rel, real_root)
        elif entry.is_dir(follow_symlinks=False):
            if identity(path) in skipped:
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield Found(path, rel, "a folder, not an image file")
            listed = _listing(path, rel)
            if isinstance(listed, Found):
                yield listed
            else:
                stack.append((iter(listed), rel + "/"))
        elif entry.is_file(follow_symlinks=False):
            yield Found(path, rel)
        else:
            yield Found(path, rel, "not a regular file")


def _listing(folder: Path, rel: str) -> list[os.DirEntry] | Found:
    """The folder's entries by name, or a Found saying why it cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as exc:
        return Found(folder, rel or ".", f"cannot list folder: {exc.strerror or exc}")


def identity(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of a folder, to recognise it under any name; None if it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _symlink(path: Path, rel: str, real_root: str) -> Found:
    try:
        target = os.path.realpath(path, strict=True)
    except OSError as exc:
        reason = "symlink loop" if "loop" in str(exc).lower() else "broken symlink"
        return Found(path, rel, reason)
    if os.path.commonpath([real_root, target]) != real_root:
        return Found(path, rel, "symlink points outside the input folder (not followed)")
    if os.path.isdir(target):
        return Found(path, rel, "symlinked folder (not followed, to avoid counting files twice)")
    if not os.path.isfile(target):
        return Found(path, rel, "symlink to something that is not a regular file")
    return Found(path, rel, via_link=True)
