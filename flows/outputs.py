"""Output files that appear complete or not at all, and CSV cells a spreadsheet cannot run."""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from faceaudit.data.nofollow import open_file, real_folder, remove_matching
from faceaudit.data.text import unsafe_char

# A cell starting with one of these runs as a formula in Excel, LibreOffice or Google Sheets (tab, CR
# and LF never reach a cell: they are escaped first).
_FORMULA_STARTS = ("=", "+", "-", "@")
_GUARD = "'"


LOCK_FILE = ".faceaudit.lock"


class OutputBusy(Exception):
    """Another run is writing the same output folder."""


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold `out` for one run, so two runs never interleave their files in it; a second is refused.

    The lock is a POSIX record lock: it ends with the process however it ends, and unlike an flock
    it is not inherited by forked DataLoader workers, which can outlive a killed run by seconds.
    Scratch files a killed run left behind are removed once the lock is ours. Nothing here goes
    through a symlink: a lock file or a maps/ folder that is a link is refused (UnsafePath); a lock
    file with another name elsewhere (a hard link) is locked but never written.
    """
    real_folder(out)
    fd = open_file(out / LOCK_FILE, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise OutputBusy(
                f"{out} is being written by another faceaudit run (pid {holder}); "
                "wait for it to finish or choose another --out"
            ) from None
        raise
    try:
        if os.fstat(fd).st_nlink == 1:  # a hard link's other name (a `cp -al` snapshot) keeps its bytes
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_matching(out, ".*.tmp")
        if os.path.lexists(out / "maps"):  # a link there is refused, not entered
            remove_matching(real_folder(out / "maps", create=False), "*.tmp")
        yield
    finally:
        os.close(fd)


def path_cell(path: str) -> str:
    """The `path` cell for a file name: one line, never a formula, and reversible (`path_from_cell`).

    Rules, applied to the name's bytes: a backslash is written `\\\\`; a byte that is not part of
    valid UTF-8, and every byte of a control character (tab, CR, LF, DEL, U+0080-U+009F, U+2028-9,
    the bidirectional controls), is written `\\xNN` (two lowercase hex digits); everything else is
    kept. Then a cell that starts with = + - @ or ' gets one more ' in front. Two different names
    never give the same cell.
    """
    parts = []
    for char in os.fsencode(path).decode("utf-8", "surrogateescape"):
        code = ord(char)
        if char == "\\":
            parts.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as surrogateescape holds it
            parts.append(f"\\x{code - 0xDC00:02x}")
        elif unsafe_char(code):
            parts.append("".join(f"\\x{byte:02x}" for byte in char.encode("utf-8")))
        else:
            parts.append(char)
    cell = "".join(parts)
    return _GUARD + cell if cell.startswith((*_FORMULA_STARTS, _GUARD)) else cell


_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def path_from_cell(cell: str) -> str:
    """The file name (as `os` functions take it) that `path_cell` wrote as `cell`: join it to the scored
    folder to reach the file. ValueError for a cell `path_cell` cannot have written."""
    if cell.startswith(_GUARD):
        cell = cell[1:]
    raw, at = bytearray(), 0
    for match in _ESCAPE.finditer(cell):
        raw += cell[at : match.start()].encode("utf-8")
        token = match.group(1)
        raw += b"\\" if token == "\\" else bytes([int(token[1:], 16)])
        at = match.end()
    rest = cell[at:]
    if "\\" in rest or any(unsafe_char(ord(c)) for c in cell):
        raise ValueError(f"not a path cell written by faceaudit: {cell!r}")
    raw += rest.encode("utf-8")
    return os.fsdecode(bytes(raw))


def safe_text(value: str) -> str:
    """Text for any other CSV cell: valid UTF-8, one line (control characters become spaces), never
    a formula."""
    text = "".join(
        " " if unsafe_char(ord(c)) else c for c in os.fsencode(value).decode("utf-8", "backslashreplace")
    )
    return _GUARD + text if text.startswith((*_FORMULA_STARTS, _GUARD)) else text


def csv_lines(columns: list[str], rows: Iterable[dict]) -> Iterator[str]:
    """The CSV a line at a time: the header, then one line per row; the path cell by `path_cell`,
    every other text cell by `safe_text`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: (path_cell(v) if k == "path" else safe_text(v)) if isinstance(v, str) else v
                for k, v in row.items()
            }
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def jsonl_lines(columns: list[str], rows: Iterable[dict]) -> Iterator[str]:
    """verdicts.jsonl: one JSON object per row with the CSV's columns, for scripts rather than
    spreadsheets: paths as they are (undecodable bytes as \\udcXX escapes), no formula guard, and
    null where the CSV has an empty cell."""
    for row in rows:
        record = {c: (None if row.get(c, "") == "" or _not_finite(row[c]) else row[c]) for c in columns}
        yield json.dumps(record, ensure_ascii=True) + "\n"


def _not_finite(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def json_text(data: dict) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"
