"""Find image files, read them safely, hash them and read labels from their folders.

Knows files only: no torch, no Prefect. A file that cannot be used becomes a record with a one-line
reason; nothing in here raises on bad input during a scan.
"""

from faceaudit.data.decode import DEFAULT_MAX_PIXELS, UnreadableImage, decode_image
from faceaudit.data.labels import CLASSES, label_and_group
from faceaudit.data.records import ImageRecord, scan
from faceaudit.data.split import SPLITS, split_of
from faceaudit.data.walk import Found, walk

__all__ = [
    "CLASSES",
    "DEFAULT_MAX_PIXELS",
    "SPLITS",
    "Found",
    "ImageRecord",
    "UnreadableImage",
    "decode_image",
    "label_and_group",
    "scan",
    "split_of",
    "walk",
]
