"""A JPEG's marker structure, walked before any decoder sees it, to bound the work and memory it asks for.

Two cheap files cost a decoder dearly: millions of empty APP segments (Pillow keeps a Python object for
each: 60 MB of them peaked at 2.7 GB) and a progressive image whose tiny scan is repeated thousands of
times (each scan is a pass over every coefficient of the image: 20,000 scans of 6000 x 6000 took 55 s).
Real files are far from both bounds: cameras and editors write under 30 segments before the image
(ICC profiles split into 64 KB pieces add at most 255) and progressive encoders write about 10 scans.
"""

from __future__ import annotations

MAX_SEGMENTS = 1024  # marker segments before the first scan (APPn, COM, tables, frame)
MAX_METADATA_BYTES = 32 * 2**20  # APPn and COM payloads together
MAX_SCANS = 100  # start-of-scan markers in the whole file
# Each scan is a pass over the image: scans x megapixels bounds the decoding work, and so its time
# (about 0.6 ms per megapixel-scan here: 0.4 s at the bound). A 40-megapixel photo in 12 scans is 480.
MAX_SCAN_MEGAPIXELS = 600

_SOS, _EOI = 0xDA, 0xD9
_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)
_NO_LENGTH = {0x01, 0xD8, *range(0xD0, 0xD8)}  # TEM, SOI, RST0-7: markers without a length field


def jpeg_structure_problem(data: bytes) -> str | None:
    """Why a JPEG asks for more work or memory than any real photo, or None. The walk reads only
    marker headers: a few microseconds for a normal file, linear in its size for any file."""
    segments = metadata = scans = pixels = 0
    pos, size = 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return None  # not where a marker should be: the decoder reports the damage itself
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI:
            return None
        if marker in _NO_LENGTH:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _FRAMES and pos + 9 <= size:
            pixels = int.from_bytes(data[pos + 5 : pos + 7], "big") * int.from_bytes(
                data[pos + 7 : pos + 9], "big"
            )
        if marker == _SOS:
            scans += 1
            if scans > MAX_SCANS:
                return f"too many scans: over {MAX_SCANS} (real progressive JPEGs have about 10)"
            if scans * pixels > MAX_SCAN_MEGAPIXELS * 1_000_000:
                return (
                    f"too much decoding work: {scans} scans of {pixels / 1e6:.1f} megapixels is over "
                    f"{MAX_SCAN_MEGAPIXELS} megapixel-scans"
                )
            pos = _after_entropy_data(data, pos + 2 + length)
            continue
        if scans == 0:
            segments += 1
            if segments > MAX_SEGMENTS:
                return f"too many marker segments: over {MAX_SEGMENTS} before the image data"
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            metadata += length
            if metadata > MAX_METADATA_BYTES:
                return f"too much metadata: over {MAX_METADATA_BYTES // 2**20} MB of APP and COM segments"
        pos += 2 + length
    return None


def _after_entropy_data(data: bytes, pos: int) -> int:
    """The offset of the first marker after a scan's entropy-coded data (where 0xFF is only ever
    followed by 0x00, a stuffed byte, or by a restart marker)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return len(data)
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1 if following == 0xFF else 2
            continue
        return pos
