"""Walk an input folder the way a cautious user would: no hidden files, no escaping symlinks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Names that promise an image; a folder named like this is reported so the user sees it.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Found:
    """One thing found under the root: a file to read, or something reported with a reason."""

    path: Path
    rel: str
    error: str | None = None


def walk(root: Path | str) -> Iterator[Found]:
    """Yield every non-hidden file under `root`, in a stable order, depth first.

    Symlinks are followed only to files inside `root`. Anything that cannot become an image
    (an escaping or looping symlink, a folder named `x.jpg`, a socket) is yielded with `error` set.
    """
    root = Path(root)
    real_root = os.path.realpath(root)
    yield from _walk_dir(root, real_root, "")


def _walk_dir(folder: Path, real_root: str, prefix: str) -> Iterator[Found]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        yield Found(folder, prefix.rstrip("/") or ".", f"cannot list folder: {exc.strerror or exc}")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        rel = prefix + entry.name
        if entry.is_symlink():
            yield _symlink(path, rel, real_root)
        elif entry.is_dir(follow_symlinks=False):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield Found(path, rel, "a folder, not an image file")
            yield from _walk_dir(path, real_root, rel + "/")
        elif entry.is_file(follow_symlinks=False):
            yield Found(path, rel)
        else:
            yield Found(path, rel, "not a regular file")


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
    return Found(path, rel)
