"""Output files that appear complete or not at all, and CSV cells a spreadsheet cannot run."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

# A cell starting with one of these runs as a formula in Excel, LibreOffice or Google Sheets.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def write_atomic(path: Path, text: str) -> None:
    """Write under a temporary name, flush to disk, rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(scratch, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(scratch, path)


def display_name(path: str) -> str:
    """A file name as valid UTF-8 text whatever its bytes: undecodable bytes become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def safe_text(value: str) -> str:
    """Text for a CSV cell: valid UTF-8 whatever the file name's bytes, and never a formula."""
    text = display_name(value) if isinstance(value, str) else str(value)
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def csv_text(columns: list[str], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (safe_text(v) if isinstance(v, str) else v) for k, v in row.items()})
    return buffer.getvalue()


def json_text(data: dict) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"
