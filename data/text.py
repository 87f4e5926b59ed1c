"""Names from the file system, shown safely: in logs, on the terminal, in Prefect, in HTML pages.

A file name may hold any bytes but '/' and NUL: a line break that forges a log line, ESC sequences
that clear a terminal or recolour it, right-to-left overrides that show `x<U+202E>gnp.exe` as
`xexe.png`. Every name faceaudit shows goes through `display_name`, which keeps a name one line of
valid UTF-8 and writes each such character as an escape; the CSV's reversible cells are in
`flows.outputs`.
"""

from __future__ import annotations

import os


def unsafe_char(code: int) -> bool:
    """Characters that would break a CSV row or a line on screen (controls, DEL, C1, line separators),
    or show a name other than it is (the bidirectional controls: x<U+202E>gnp.exe shows as xexe.png)."""
    return (
        code < 0x20
        or code == 0x7F
        or 0x80 <= code < 0xA0
        or code in (0x2028, 0x2029, 0x061C, 0x200E, 0x200F)
        or 0x202A <= code <= 0x202E
        or 0x2066 <= code <= 0x2069
    )


def display_name(text: str | os.PathLike) -> str:
    """`text` as one line of valid UTF-8 that shows what it is: bytes that are not UTF-8 become \\xNN,
    control and bidirectional characters \\xNN (C0, DEL) or \\uNNNN; everything else is kept."""
    parts = []
    for char in os.fsencode(os.fspath(text)).decode("utf-8", "surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as surrogateescape holds it
            parts.append(f"\\x{code - 0xDC00:02x}")
        elif unsafe_char(code):
            parts.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            parts.append(char)
    return "".join(parts)


def first_line(exc: BaseException) -> str:
    """An exception as a short reason: its message's first line, or its type where it has none
    (libraries put tracebacks and whole request bodies in their messages)."""
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__
