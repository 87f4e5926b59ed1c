"""Read a class label and a group (the image's source) from the folders an image lives in."""

from __future__ import annotations

import re
from collections.abc import Sequence

# Index 0 is "real", 1 is "ai": heads predict the probability of index 1.
CLASSES: tuple[str, str] = ("real", "ai")

# A leading class index is allowed, as public benchmarks number their classes: 0_real/, 1_fake/.
_INDEX = r"^(\d+[_-])?"
_AI_FOLDER = re.compile(_INDEX + r"(ai([^a-z]|$)|fake|synthetic)|generated", re.IGNORECASE)
# GenImage and its kin call their photographs `nature`.
_REAL_FOLDER = re.compile(_INDEX + r"(real|nature$)", re.IGNORECASE)


def class_of_folder(name: str) -> str | None:
    """'ai' or 'real' for a folder named like a class: real*/ai*/fake*, Kaggle's "AI-Generated Images",
    and the benchmark spellings 0_real/1_fake and nature/; else None."""
    if _AI_FOLDER.search(name):
        return "ai"
    if _REAL_FOLDER.search(name):
        return "real"
    return None


def label_and_group(folders: Sequence[str]) -> tuple[str | None, str | None]:
    """Label from the nearest class-named folder, group from the folder above it.

    `folders` runs from the outermost folder to the one holding the file.
    """
    for depth in range(len(folders) - 1, -1, -1):
        label = class_of_folder(folders[depth])
        if label is not None:
            group = folders[depth - 1] if depth > 0 else None
            return label, group
    return None, None
