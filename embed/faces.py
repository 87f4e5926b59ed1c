"""Does a picture show a face at all? Every verdict's `face` column: `found` or `none`.

A verdict is about whatever the picture shows. `ai_generated` beside `face: none` tells an auditor that
no face could be found in what was judged (a crowd seen from afar, a hand, a logo, a head turned away),
so the verdict says little about a person. The check reads the decoded picture only: it changes no
vector and no verdict, and it is the same whatever the model's preprocessing.

The frontal cascade alone, as the face-placed input runs it (embed/preprocess.py), misses many faces a
person sees at once: a tight crop leaves the cascade's window no room around the face, and profiles or
tilted heads are not frontal. So the copy searched gets a border, the profile cascade runs beside the
frontal one, on the picture and its mirror image (the profile cascade knows one side only), and on
copies turned 25 degrees either way. `python bench/faces.py` measures what that buys per source.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from faceaudit.embed.preprocess import largest_face

FACE_CHECK = {
    "cascades": ("haarcascade_frontalface_alt2.xml", "haarcascade_profileface.xml"),
    "side": 320,  # the copy searched, pixels on its long side
    "border": 0.15,  # added on every side, as a share of that long side, in the picture's mean grey
    "mirrored": True,
    "turned": (-25, 25),  # degrees
    "scale_factor": 1.1,
    "min_neighbors": 3,
    "min_size": 0.15,  # of the bordered copy's short side
}
FOUND, NONE = "found", "none"


def searched_copies(image: Image.Image, check: dict = FACE_CHECK) -> list[Image.Image]:
    """The greyscale copies the cascades look at, cheapest first: as it is, mirrored, then turned."""
    gray = image.convert("L")
    factor = check["side"] / max(gray.size)
    gray = gray.resize((max(1, round(gray.width * factor)), max(1, round(gray.height * factor))))
    fill = int(np.asarray(gray).mean())
    gray = ImageOps.expand(gray, border=round(check["border"] * max(gray.size)), fill=fill)
    copies = [gray, ImageOps.mirror(gray)] if check["mirrored"] else [gray]
    return copies + [gray.rotate(angle, fillcolor=fill) for angle in check["turned"]]


def shows_face(image: Image.Image, check: dict = FACE_CHECK) -> bool:
    """Whether any of the cascades finds a face in any searched copy of the picture."""
    copies = searched_copies(image, check)
    return any(
        largest_face(copy, {**check, "cascade": name}) is not None
        for name in check["cascades"]
        for copy in copies
    )


def face_column(image: Image.Image) -> str:
    """The `face` cell of a verdict: 'found' or 'none'."""
    return FOUND if shows_face(image) else NONE
