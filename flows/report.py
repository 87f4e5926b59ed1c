"""report.html: one self-contained page to audit a run (thumbnails inline, maps beside it in maps/)."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from urllib.parse import quote

from faceaudit.data.atomic import write_text
from faceaudit.data.decode import UnreadableImage, decode_image
from faceaudit.data.nofollow import UnsafePath, read_json
from faceaudit.data.records import ImageRecord, read_scanned
from faceaudit.data.text import display_name
from faceaudit.flows.scoring import smaller_than_input

_TEMPLATE = Path(__file__).resolve().parent / "templates" / "report.html.j2"
THUMBNAIL_PX = 64


def thumbnail(record: ImageRecord) -> str:
    """A small inline JPEG as a data URI, or '' when the file cannot be drawn (or is no longer the
    file that was judged)."""
    try:
        image = decode_image(read_scanned(record))
    except UnreadableImage:
        return ""
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def threshold_text(value: float) -> str:
    """A threshold to 4 significant digits, or in full where those would round it onto 0 or 1 (0.99998
    shown as 1.000 would read as "only P(AI) = 1 is called AI")."""
    short = f"{value:.4g}"
    return short if float(short) not in (0.0, 1.0) or float(short) == value else repr(float(value))


def write_report(path: Path, rows: list[dict], run: dict, records) -> None:
    """Render the page straight to disk, a row (and its thumbnail) at a time."""
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters["threshold"] = threshold_text
    template = environment.from_string(_TEMPLATE.read_text())
    files = {record.rel: record for record in records if record.ok}

    def shown():
        for row in rows:
            source = files.get(row["path"])
            yield {
                **row,
                "display_path": display_name(row["path"]),
                "thumbnail": thumbnail(source) if source else "",
                "small": smaller_than_input(row, run["small"]["short_side_under_px"]),
            }

    # folder names are shown as text whatever their bytes (a name that is not UTF-8 stays readable)
    shown_run = {**run, **{key: display_name(run[key]) for key in ("input_dir", "out_dir") if key in run}}
    write_text(path, template.generate(rows=shown(), run=shown_run))


def write_index(reports_root: Path) -> None:
    """REPORTS_ROOT/index.html: a link to every dump's report.html there, newest name first, with its
    verdict counts and when it was scored (from its run.json)."""
    if not reports_root.is_dir():
        return
    items = []
    for folder in sorted(reports_root.iterdir(), key=lambda p: p.name, reverse=True):
        if folder.is_symlink() or not (folder / "report.html").is_file():
            continue
        try:  # a small regular file only: a FIFO named run.json must not hang the night
            run = read_json(folder / "run.json")
            counts = ", ".join(f"{count} {verdict}" for verdict, count in run["counts"].items())
            when = str(run.get("scored_at", ""))
        except (UnsafePath, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            counts, when = "no complete run.json", ""
        link = quote(os.fsencode(folder.name)) + "/report.html"
        items.append(
            f'<li><a href="{html.escape(link)}">{html.escape(display_name(folder.name))}</a> '
            f"{html.escape(when)}: {html.escape(counts)}</li>"
        )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>faceaudit reports</title></head>'
        f"<body><h1>faceaudit reports</h1><ul>{''.join(items)}</ul></body></html>\n"
    )
    write_text(reports_root / "index.html", page)
