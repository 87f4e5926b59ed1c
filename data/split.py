"""A split that depends only on an image's content hash, so adding images never moves old ones."""

from __future__ import annotations

SPLITS: tuple[str, str, str] = ("train", "val", "test")


def split_of(sha256: str, val: float = 0.15, test: float = 0.15) -> str:
    """'train', 'val' or 'test' from the first 8 hex digits of the hash, read as a uniform number."""
    position = int(sha256[:8], 16) / 0x1_0000_0000
    if position < test:
        return "test"
    if position < test + val:
        return "val"
    return "train"
