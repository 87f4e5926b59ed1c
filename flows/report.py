"""report.html: one self-contained page to audit a run (thumbnails inline, maps beside it in maps/)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from data.atomic import write_text
from data.decode import UnreadableImage, decode_image
from flows.outputs import display_name

_TEMPLATE = Path(__file__).resolve().parent / "templates" / "report.html.j2"
THUMBNAIL_PX = 64


def thumbnail(path: Path) -> str:
    """A small inline JPEG as a data URI, or '' when the file cannot be drawn."""
    try:
        image = decode_image(path.read_bytes())
    except (UnreadableImage, OSError):
        return ""
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_report(path: Path, rows: list[dict], run: dict, records) -> None:
    """Render the page straight to disk, a row (and its thumbnail) at a time."""
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(_TEMPLATE.read_text())
    files = {record.rel: record.path for record in records if record.ok}

    def shown():
        for row in rows:
            source = files.get(row["path"])
            yield {
                **row,
                "display_path": display_name(row["path"]),
                "thumbnail": thumbnail(source) if source else "",
            }

    write_text(path, template.generate(rows=shown(), run=run))
