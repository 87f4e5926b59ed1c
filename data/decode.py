"""Turn image bytes into an RGB picture without trusting them.

Guards: the type comes from the bytes, a JPEG's marker structure is walked first (segment and scan
counts, `data.jpeg_structure`), the pixel count and the aspect ratio are checked from the
header before any pixel is decoded (decompression bombs; a 40000 x 1 strip that preprocessing would
enlarge to millions of pixels), EXIF orientation is applied, and every mode ends as 8-bit RGB. Every
later step works on an image whose long side is at most MAX_ASPECT times its short side, so the
enlargements of preprocessing stay within MAX_ASPECT x (input size)^2 pixels.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from faceaudit.data.jpeg_structure import jpeg_structure_problem
from faceaudit.data.sniff import describe_non_image, sniff_format
from faceaudit.data.text import first_line

# 40 megapixels: bigger than any camera photo we expect, far below what would exhaust memory.
DEFAULT_MAX_PIXELS = 40_000_000
# No face picture is ten times wider than tall; a strip like that is refused with its reason.
MAX_ASPECT = 10
ORIENTATION = 0x0112  # the EXIF tag; values 5-8 turn the picture a quarter


class UnreadableImage(Exception):
    """The bytes are not a usable image; the message is a one-line reason for the report."""


def decode_image(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode bytes to an 8-bit RGB image, or raise UnreadableImage with a reason.

    `draft_size` lets a JPEG decode at a reduced scale when the caller will shrink it anyway.
    """
    fmt = sniff_format(data[:64])
    if fmt is None:
        raise UnreadableImage(describe_non_image(data[:64]))
    if fmt == "JPEG" and (problem := jpeg_structure_problem(data)) is not None:
        raise UnreadableImage(f"refused before decoding: {problem}")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns or raises at its fixed limit; we apply ours below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
            if width * height > max_pixels:
                raise UnreadableImage(
                    f"too many pixels: {width}x{height} exceeds the limit of {max_pixels:,}"
                )
            if width < 1 or height < 1:
                raise UnreadableImage(f"empty image: {width}x{height}")
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise UnreadableImage(
                    f"extreme aspect ratio: {width}x{height} is more than {MAX_ASPECT}:1, not a face picture"
                )
            if draft_size is not None and fmt == "JPEG":
                image.draft("RGB", draft_size)
            image.seek(0)  # first frame of an animation
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"decompression bomb refused: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, KeyError) as exc:
        # Pillow signals corrupt data with several exception types; all mean the same thing here.
        reason = first_line(exc)
        raise UnreadableImage(f"cannot decode {fmt}: {reason}") from None


def shown_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a picture `decode_image` accepted, as a viewer shows it (EXIF orientation
    applied), read from its header: the size an auditor can check, whatever a draft decode made of it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data), formats=[sniff_format(data[:64])]) as image:
            width, height = image.size
            turned = image.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
    return (height, width) if turned else (width, height)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is laid over white, 16-bit depth scaled down."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # float32, not float64: the copy of a 40-megapixel image stays at 160 MB
        array = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array *= 255.0 / top
        array += 0.5
        gray = np.clip(array, 0, 255, out=array).astype(np.uint8)
        del array
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
