"""`faceaudit ui`: a local page where an analyst drops an image and sees its verdict, at once.

Each upload goes through the very `Scorer` that `score` uses (same backbone, head, thresholds, maps),
loaded once at start-up. The upload is written to a temporary folder, scanned like any input (type
from its bytes, size and pixel limits), judged, and the folder deleted with the answer unless
`--keep` names a folder for uploads.

One image is judged at a time, because the backbone already uses every core; a few more may wait
their turn and the rest get an immediate "busy" reply, so a burst of uploads cannot pile up memory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import ctypes.util
import functools
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from faceaudit.data.atomic import write_bytes
from faceaudit.data.records import scan
from faceaudit.data.text import display_name
from faceaudit.explain.baselines import DEFAULT_BASELINE
from faceaudit.flows.outputs import csv_lines
from faceaudit.flows.scoring import COLUMNS, Scorer, picture_cells, smaller_than_input

PAGE = Path(__file__).resolve().parent / "templates" / "ui.html.j2"
# The page may load nothing from elsewhere: its own inline code, and images made in the browser.
SELF_ONLY = "default-src 'self' 'unsafe-inline' data: blob:"


class Busy(Exception):
    """Every place in the queue is taken, or the wait ran out."""


class Gate:
    """Admits one running job plus `waiting` queued ones; anyone beyond is refused at once, and a
    queued job that waits longer than `wait_s` gives up. A place is taken (`admit`) before the upload's
    body is read, so a burst of uploads never holds more than 1 + `waiting` bodies in memory."""

    def __init__(self, waiting: int = 4, wait_s: float = 60.0) -> None:
        self.capacity, self.wait_s = 1 + waiting, wait_s
        self._admitted = 0
        self._count_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place in the queue for the block, or raise Busy at once."""
        with self._count_lock:
            if self._admitted >= self.capacity:
                raise Busy(f"busy: {self._admitted} images are being judged or waiting; try again shortly")
            self._admitted += 1
        try:
            yield
        finally:
            with self._count_lock:
                self._admitted -= 1

    def run(self, job, *args):
        """Run `job` when its turn comes (call inside `admit`)."""
        if not self._run_lock.acquire(timeout=self.wait_s):
            raise Busy(f"busy: waited {self.wait_s:.0f} s for a turn; try again shortly")
        try:
            return job(*args)
        finally:
            self._run_lock.release()


@dataclass
class Judge:
    """Judges one uploaded file with a loaded `Scorer`."""

    scorer: Scorer
    store_dir: str
    samples: int | None = None
    keep_dir: Path | None = None
    scratch_dir: Path | None = None  # where uploads wait to be judged [default: the system's TMPDIR]

    def warm_up(self) -> None:
        """Judge one generated image end to end against a throwaway store, so the first analyst does not
        wait for the backbone, matplotlib and h5py to load, and memory starts at its working level."""
        import io

        import numpy as np
        from PIL import Image

        noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noise).save(buffer, format="PNG")
        with tempfile.TemporaryDirectory(prefix="warm-up-", dir=self.scratch_dir) as scratch:
            Judge(self.scorer, scratch, self.samples).judge("warm-up.png", buffer.getvalue())

    def judge(self, name: str, data: bytes) -> dict:
        """The upload's CSV row (as `score` writes it), its map as a data URI, and what the page needs
        to draw the verdict: the thresholds and whether the image is out of distribution."""
        scored_at = datetime.now(UTC).isoformat(timespec="seconds")
        with tempfile.TemporaryDirectory(prefix="upload-", dir=self.scratch_dir) as scratch:
            folder, out = Path(scratch) / "in", Path(scratch) / "out"
            folder.mkdir()
            (folder / "upload").write_bytes(data)
            records = scan(folder)
            self.scorer.embed(records, self.store_dir, str(folder), batch_size=1, workers=0)
            readable = [r for r in records if r.ok]
            predicted = self.scorer.predict([r.sha256 for r in readable], self.store_dir, self.samples)
            maps = self.scorer.draw_maps(
                readable, predicted, "all", ("occlusion",), out, self.samples, DEFAULT_BASELINE
            )
            row = self.scorer.rows(
                records, predicted, maps, picture_cells(readable, self.store_dir), scored_at
            )[0]
            row["path"] = name
            png = (out / row["occlusion_map"]).read_bytes() if row["occlusion_map"] else None
            # The map column names a file only where one is kept; the page shows the map either way.
            row["occlusion_map"] = self._keep(row, data, png) if self.keep_dir is not None else ""
        map_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii") if png else ""
        release_free_memory()
        thresholds = self.scorer.model.thresholds
        input_px = self.scorer.spec.preprocess.size
        return {
            "row": row,
            "csv": "".join(csv_lines(COLUMNS, [row])).split("\n", 1)[1],
            "map": map_uri,
            "thresholds": {"ai": thresholds.ai, "real": thresholds.real},
            "ood": bool(row["ood_score"] != "" and float(row["ood_score"]) > thresholds.ood),
            "small": smaller_than_input(row, input_px),
            "input_px": input_px,
        }

    def _keep(self, row: dict, data: bytes, png: bytes | None) -> str:
        """Save the upload (and its map) under --keep, never through a symlink; returns the map's
        path, or ''."""
        stem = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{(row['sha256'] or 'unreadable')[:16]}"
        write_bytes(self.keep_dir / f"{stem}-{safe_file_name(row['path'])}", data)
        if png is None:
            return ""
        write_bytes(self.keep_dir / f"{stem}-map.png", png)
        return str(self.keep_dir / f"{stem}-map.png")


def safe_file_name(name: str) -> str:
    """A name that is safe to create in a folder: no path parts, no odd characters, not too long."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "upload"
    return cleaned[:80]


def release_free_memory() -> None:
    """Hand memory freed by the last job back to the system (glibc keeps it otherwise), so the server's
    footprint returns to its resting level between bursts."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, looked up once (find_library may run ldconfig); None elsewhere."""
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def allowed_hosts(bound: str) -> frozenset[str] | None:
    """The names a request's Host may give for a server listening on `bound`: the loopback names and
    the address itself (127.0.0.2, a LAN address); None (any name) only for a server opened to every
    interface on purpose (--host 0.0.0.0), where its names cannot be known."""
    if bound in WILDCARD_HOSTS:
        return None
    import socket

    return LOOPBACK_NAMES | {bound.strip("[]").lower(), socket.gethostname().lower()}


def foreign_request(headers, allowed: frozenset[str] | None) -> str | None:
    """Why a request must be refused as coming from another web site, or None.

    Host must name this server as `allowed_hosts` says: a DNS-rebinding page reaches us under its own
    name. A request that says where it comes from (Origin, or the browser's Sec-Fetch-Site) must come
    from this page itself: a page elsewhere may send a no-cors POST, and must not get an image judged,
    stored or kept. A header that does not parse is refused the same way, never an error.
    """
    host = headers.get("host", "")
    try:
        name = urlsplit(f"//{host}").hostname
        origin = headers.get("origin")
        origin_host = urlsplit(origin).netloc if origin is not None else None
    except ValueError:
        return "refused: a malformed Host or Origin header"
    if allowed is not None and name not in allowed:
        return f"refused: Host {display_name(host)[:100]!r} does not name this server"
    if origin is not None and origin_host != host:
        return f"refused: requests from {display_name(origin)[:100]!r} are not accepted, only from this page"
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "refused: the request came from another site, only this page may upload"
    return None


def create_app(
    judge: Judge, gate: Gate, max_upload_bytes: int, allowed: frozenset[str] | None = LOOPBACK_NAMES
):
    """The FastAPI app: the page, one upload endpoint and a health check, for this page only."""
    import jinja2

    app = FastAPI(title="faceaudit", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def same_site_only(request: Request, call_next):
        reason = foreign_request(request.headers, allowed)
        if reason is not None:
            return JSONResponse({"error": reason}, status_code=403)
        return await call_next(request)

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = environment.from_string(PAGE.read_text()).render(
        columns=",".join(COLUMNS),
        model=judge.scorer.describe(),
        backbone=judge.scorer.spec.backbone.name,
        max_upload_mb=max_upload_bytes / 1e6,
    )

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": SELF_ONLY})

    @app.get("/api/health")
    def health() -> dict:
        return {"ok": True, "model": judge.scorer.ident}

    @app.post("/api/judge")
    async def judge_upload(request: Request) -> JSONResponse:
        name = display_name(unquote(request.headers.get("x-filename", "upload")))[:255] or "upload"
        try:
            with gate.admit():  # a place first, then the body: a refused upload is never kept
                body = await read_body(request, max_upload_bytes)
                if body is None:
                    too_big = f"{name}: larger than the {max_upload_bytes / 1e6:g} MB upload limit"
                    return JSONResponse({"error": too_big}, status_code=413)
                answer = await run_in_threadpool(gate.run, judge.judge, name, body)
        except SlowBody as exc:
            return JSONResponse({"error": f"{name}: {exc}"}, status_code=408, headers={"Connection": "close"})
        except Busy as exc:
            with contextlib.suppress(SlowBody):
                await read_body(request, 0)
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "5"})
        return JSONResponse(answer)

    return app


# A client that stops sending holds its place in the queue; past these it loses it (408), so a few
# stalled connections cannot keep every upload waiting (a 20 MB upload needs 170 KB/s to finish).
BODY_IDLE_S = 10.0
BODY_TOTAL_S = 120.0


class SlowBody(Exception):
    """The client sent its upload too slowly, or stopped sending."""


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None past `limit` bytes. Read to the end even then (keeping nothing
    beyond the limit): a reply sent while the client is still sending would reach it as a broken
    connection instead of the reason. SlowBody when a chunk takes over BODY_IDLE_S to come or the
    whole over BODY_TOTAL_S."""
    body, size = bytearray(), 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BODY_TOTAL_S
    chunks = request.stream().__aiter__()
    while True:
        wait = min(BODY_IDLE_S, deadline - loop.time())
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), timeout=max(wait, 0.0))
        except (StopAsyncIteration, RuntimeError):  # the end, or a stream already consumed
            break
        except TimeoutError:
            raise SlowBody(
                f"the upload stalled (no data for {BODY_IDLE_S:g} s, or unfinished after {BODY_TOTAL_S:g} s)"
            ) from None
        size += len(chunk)
        if size <= limit:
            body.extend(chunk)
    return bytes(body) if size <= limit else None


def serve(judge: Judge, host: str, port: int, max_upload_bytes: int, waiting: int = 4) -> None:
    """Warm up, then serve until interrupted."""
    import uvicorn

    from faceaudit.flows import progress
    from faceaudit.flows.orchestration import private_tempdir

    progress.enable(False)  # no bars per upload in the server's terminal
    with private_tempdir() as scratch:  # uploads wait here; removed when the server ends, even by kill -9
        judge.scratch_dir = scratch
        judge.warm_up()
        release_free_memory()
        app = create_app(judge, Gate(waiting=waiting), max_upload_bytes, allowed_hosts(host))
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def check_port_free(host: str, port: int) -> str | None:
    """None when `host:port` can be bound, else the reason (so a taken port fails before the model loads)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None
