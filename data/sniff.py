"""Decide what a file is from its first bytes, never from its name."""

from __future__ import annotations

# Formats we decode, by signature. Values are Pillow format names.
_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

# Things people name `.jpg` that are not images, so the reason can say what they are.
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable"),
)

HEAD_BYTES = 64


def sniff_format(head: bytes) -> str | None:
    """Return the Pillow format name of an image we accept, or None."""
    for signature, name in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def describe_non_image(head: bytes) -> str:
    """A short human description of bytes that are not an accepted image."""
    if not head:
        return "empty file"
    for signature, what in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return f"not an image: {what}"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")):
        return "not a raster image: SVG/XML text"
    if text.startswith((b"<!doctype html", b"<html")):
        return "not an image: HTML text"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "not an image: unrecognised binary data"
    return "not an image: text"
