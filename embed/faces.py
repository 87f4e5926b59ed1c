"""Does a picture show a face at all? Every verdict's `face` column: `found` or `none`.

A verdict is about whatever the picture shows. `ai_generated` beside `face: none` tells an auditor that
no face could be found in what was judged (a crowd seen from afar, a hand, a logo, a head turned away),
so the verdict says little about a person. The check reads the decoded picture only: it changes no
vector and no verdict, and it is the same whatever the model's preprocessing.

The frontal cascade alone, as the face-placed input runs it (embed/preprocess.py), misses many faces a
person sees at once: a tight crop leaves the cascade's window no room around the face, and profiles or
tilted heads are not frontal. So the copy searched gets a border; the frontal cascade looks at it as it
is and turned 25 degrees either way; the profile cascade, which knows heads turned one way only, looks
at it and at its mirror image. The passes stop at the first face found, so a face costs one or two of
them; a picture without one pays all five. `python bench/faces.py` measures what they buy per source.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from faceaudit.embed.preprocess import largest_face

FACE_CHECK = {
    "cascades": {"frontal": "haarcascade_frontalface_alt2.xml", "profile": "haarcascade_profileface.xml"},
    # (cascade, copy), in the order they run: the likeliest to find a face first.
    "passes": (
        ("frontal", "as it is"),
        ("profile", "as it is"),
        ("profile", "mirrored"),
        ("frontal", "turned -25"),
        ("frontal", "turned 25"),
    ),
    "side": 320,  # the copy searched, pixels on its long side...
    "most_enlarged": 2.0,  # ...but a smaller picture is enlarged at most this much (5x would cost 25x)
    "border": 0.15,  # added on every side, as a share of that long side, in the picture's mean grey
    "scale_factor": 1.1,
    "min_neighbors": 3,
    "min_size": 0.15,  # of the bordered copy's short side
}
FOUND, NONE = "found", "none"


def bordered_gray(image: Image.Image, check: dict = FACE_CHECK) -> tuple[Image.Image, int]:
    """The greyscale copy the cascades search (long side `side`, with the border) and its fill grey."""
    gray = image.convert("L")
    factor = min(check["side"] / max(gray.size), check["most_enlarged"])
    gray = gray.resize((max(1, round(gray.width * factor)), max(1, round(gray.height * factor))))
    fill = int(np.asarray(gray).mean())
    return ImageOps.expand(gray, border=round(check["border"] * max(gray.size)), fill=fill), fill


def _copy(gray: Image.Image, fill: int, how: str) -> Image.Image:
    if how == "mirrored":
        return ImageOps.mirror(gray)
    if how.startswith("turned "):
        return gray.rotate(float(how.removeprefix("turned ")), fillcolor=fill)
    return gray


def shows_face(image: Image.Image, check: dict = FACE_CHECK) -> bool:
    """Whether a pass of `check` finds a face in the picture; the passes stop at the first found."""
    gray, fill = bordered_gray(image, check)
    return any(
        largest_face(_copy(gray, fill, how), {**check, "cascade": check["cascades"][name]}) is not None
        for name, how in check["passes"]
    )


def face_column(image: Image.Image) -> str:
    """The `face` cell of a verdict: 'found' or 'none'."""
    return FOUND if shows_face(image) else NONE
