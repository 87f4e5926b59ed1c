"""Output files that appear complete or not at all, and CSV cells a spreadsheet cannot run."""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

# A cell starting with one of these runs as a formula in Excel, LibreOffice or Google Sheets.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


LOCK_FILE = ".faceaudit.lock"


class OutputBusy(Exception):
    """Another run is writing the same output folder."""


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold `out` for one run, so two runs never interleave their files in it; a second is refused.

    The lock is a POSIX record lock: it ends with the process however it ends, and unlike an flock
    it is not inherited by forked DataLoader workers, which can outlive a killed run by seconds.
    Scratch files a killed run left behind are removed once the lock is ours.
    """
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
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
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        for scratch in [*out.glob(".*.tmp"), *out.glob("maps/*.tmp")]:
            with contextlib.suppress(FileNotFoundError):
                scratch.unlink()
        yield
    finally:
        os.close(fd)


def display_name(path: str) -> str:
    """A file name as valid UTF-8 text whatever its bytes: undecodable bytes become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def safe_text(value: str) -> str:
    """Text for a CSV cell: valid UTF-8 whatever the file name's bytes, and never a formula."""
    text = display_name(value) if isinstance(value, str) else str(value)
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def csv_lines(columns: list[str], rows: Iterable[dict]) -> Iterator[str]:
    """The CSV a line at a time: the header, then one line per row, cells made safe."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (safe_text(v) if isinstance(v, str) else v) for k, v in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def jsonl_lines(columns: list[str], rows: Iterable[dict]) -> Iterator[str]:
    """verdicts.jsonl: one JSON object per row with the CSV's columns, for scripts rather than
    spreadsheets: paths as they are (undecodable bytes as \\udcXX escapes), no formula guard, and
    null where the CSV has an empty cell."""
    for row in rows:
        record = {c: (None if row.get(c, "") == "" else row[c]) for c in columns}
        yield json.dumps(record, ensure_ascii=True) + "\n"


def json_text(data: dict) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"
