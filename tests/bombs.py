"""JPEG files that are cheap to store and dear to decode, made in the test (issue 20's reproductions)."""

from __future__ import annotations

import io

from PIL import Image


def small_jpeg(side: int = 64, progressive: bool = False) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (128, 110, 90)).save(
        buffer, format="JPEG", progressive=progressive, quality=90
    )
    return buffer.getvalue()


def app_segment_bomb(segments: int) -> bytes:
    """A valid small JPEG with `segments` empty APP1 segments after its start marker (4 bytes each:
    60 MB is 15 million of them)."""
    body = small_jpeg()
    return body[:2] + b"\xff\xe1\x00\x02" * segments + body[2:]


def scan_bomb(side: int, scans: int) -> bytes:
    """A progressive side x side JPEG whose last, tiny scan is repeated until the file has `scans`
    scans: a few bytes each, but a decoder passes over every coefficient of the image for each."""
    body = small_jpeg(side, progressive=True)
    last = body.rindex(b"\xff\xda")
    scan = body[last:-2]  # up to the end-of-image marker
    have = body.count(b"\xff\xda")
    return body[:-2] + scan * max(0, scans - have) + body[-2:]


def metadata_bomb(megabytes: int) -> bytes:
    """A valid small JPEG behind `megabytes` MB of full-size APP2 segments (64 KB each): few segments,
    but more metadata than any photo carries."""
    body = small_jpeg()
    segment = b"\xff\xe2\xff\xff" + bytes(65533)
    return body[:2] + segment * (megabytes * 2**20 // len(segment)) + body[2:]
