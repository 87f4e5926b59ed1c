"""`faceaudit ui`: the real server on a loopback port, driven by real headless Chromium and by a burst."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from faceaudit.flows.scoring import COLUMNS
from tests.chromium import Page, chromium_path
from tests.conftest import ROOT, SHARED_DATA


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def post(url: str, data: bytes, name: str, timeout: float = 120) -> tuple[int, dict]:
    request = urllib.request.Request(url + "api/judge", data=data, method="POST")
    request.add_header("X-Filename", urllib.request.quote(name))
    request.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for_server(url: str, process: subprocess.Popen, timeout: float) -> float:
    """Poll the health check until the server answers; returns the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(url + "api/health", timeout=2) as response:
                assert json.loads(response.read())["ok"]
                return time.monotonic() - started
        except OSError:
            if process.poll() is not None or time.monotonic() - started > timeout:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.3)


@pytest.fixture(scope="module")
def server(trained: dict, tmp_path_factory):
    """`faceaudit ui` as a user starts it, with its temporary files in a folder the tests can watch."""
    base = tmp_path_factory.mktemp("ui")
    scratch = base / "tmp"
    scratch.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "faceaudit.flows.cli", "ui", "--model", str(trained["model"]),
         "--store", str(base / "store"), "--port", str(port), "--samples", "20", "--max-upload-mb", "1"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_server(url, process, timeout=120)
    except RuntimeError:
        process.kill()
        pytest.fail(f"the server did not start: {process.stderr.read()}")
    yield {"url": url, "process": process, "scratch": scratch}
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.skipif(
    chromium_path() is None, reason="no Chromium found (Debian's `chromium`; .ci/run installs it)"
)
def test_two_images_and_a_broken_file_in_chromium(server: dict, trained: dict, tmp_path: Path) -> None:
    # Two face photos when ../shared/data is here (CI), else two of the generated training images.
    photos = sorted(SHARED_DATA.glob("*/real/*.jpg")) + sorted(SHARED_DATA.glob("*/ai/*.jpg"))
    images = photos or sorted((trained["data"] / "alpha").rglob("*.png"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a picture")
    page = Page(server["url"])
    try:
        # Nothing on the page comes from anywhere but this server.
        external = "Array.from(document.querySelectorAll('[src],[href]')).filter(e => /^(https?:)?\\/\\//"
        external += ".test(e.getAttribute('src') || e.getAttribute('href'))).length"
        assert page.evaluate(external) == 0
        page.set_files("#files", [str(images[0]), str(images[-1]), str(broken)])
        settled = "document.querySelectorAll('.result:not([data-state=pending])').length === 3"
        page.wait_for(settled, 120, "three answers did not arrive")
        done = page.evaluate(
            "Array.from(document.querySelectorAll('.result[data-state=done]')).map(card => ({"
            "verdict: card.dataset.verdict, name: card.querySelector('.name').textContent,"
            "map: card.querySelector('img.map') ? card.querySelector('img.map').naturalWidth : 0,"
            "interval: card.querySelector('.bar .interval') !== null,"
            "figures: card.querySelector('.p-ai').textContent}))"
        )
        assert len(done) == 2
        assert {d["name"] for d in done} == {images[0].name, images[-1].name}
        assert all(d["verdict"] in ("ai_generated", "real", "uncertain") for d in done)
        assert all(d["map"] > 0 and d["interval"] and d["figures"].startswith("P(AI) ") for d in done)
        error = page.evaluate("document.querySelector('.result[data-state=error] .error').textContent")
        assert error.startswith("cannot decode JPEG: ")  # a one-line reason from the decoder
        # The download link carries the three answers as rows of verdicts.csv.
        text = page.evaluate("fetch(document.getElementById('download').href).then(r => r.text())")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert list(rows[0]) == COLUMNS and len(rows) == 3
        by_name = {r["path"]: r for r in rows}
        assert by_name["broken.jpg"]["verdict"] == "unreadable"
        assert {by_name[d["name"]]["verdict"] for d in done} == {d["verdict"] for d in done}
    finally:
        page.close()
    assert not [p for p in server["scratch"].rglob("*") if not p.is_dir()]  # the uploads were not kept


def test_an_answer_carries_its_csv_row_with_formulas_neutralised(server: dict, trained: dict) -> None:
    image = sorted((trained["data"] / "beta").rglob("*.png"))[0]
    status, answer = post(server["url"], image.read_bytes(), "=cmd|' -C calc'!A0.png")
    assert status == 200
    cells = answer["csv"].rstrip("\n").split(",")
    assert len(cells) == len(COLUMNS) and cells[0] == "'=cmd|' -C calc'!A0.png"
    assert answer["row"]["verdict"] in ("ai_generated", "real", "uncertain")
    assert answer["row"]["face"] == "none"  # a drawn square, not a face
    assert (answer["row"]["width"], answer["row"]["height"]) == (64, 64) and not answer["small"]


def test_a_small_upload_is_marked_small(server: dict, trained: dict) -> None:
    """A picture under the backbone's input on its short side is said to be small: enlarged on the way
    in, its verdict is less steady than a larger copy's."""
    from PIL import Image

    image = Image.open(sorted((trained["data"] / "beta").rglob("*.png"))[0])
    buffer = io.BytesIO()
    image.resize((40, 12)).save(buffer, format="PNG")
    status, answer = post(server["url"], buffer.getvalue(), "small.png")
    assert status == 200 and (answer["row"]["width"], answer["row"]["height"]) == (40, 12)
    assert answer["small"] and answer["input_px"] > 12


def test_an_uploaded_portrait_is_found_to_show_a_face(server: dict, trained: dict) -> None:
    from faceaudit.flows.demo import SAMPLE_FOLDER

    status, answer = post(server["url"], (SAMPLE_FOLDER / "real" / "biden.jpg").read_bytes(), "biden.jpg")
    assert status == 200 and answer["row"]["face"] == "found"


def test_a_too_large_upload_gets_a_reason_and_the_server_goes_on(server: dict, trained: dict) -> None:
    status, answer = post(server["url"], b"\0" * 4_000_000, "huge.png")
    assert status == 413 and answer["error"] == "huge.png: larger than the 1 MB upload limit"
    image = sorted((trained["data"] / "alpha").rglob("*.png"))[3]
    assert post(server["url"], image.read_bytes(), "after.png")[0] == 200


def test_fifty_concurrent_uploads(server: dict, trained: dict) -> None:
    """Each gets an answer or a clean 'busy', and the server stays up (its memory over such a burst is
    measured in bench/ui.py: a machine-dependent figure, not a test)."""
    images = sorted(trained["data"].rglob("*.png"))[:50]
    assert post(server["url"], images[0].read_bytes(), "first.png")[0] == 200
    with ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(lambda p: post(server["url"], p.read_bytes(), p.name, 180), images))
    statuses = [status for status, _ in replies]
    assert len(replies) == 50 and set(statuses) <= {200, 503} and 200 in statuses
    assert all(a["error"].startswith("busy: ") for s, a in replies if s == 503)
    assert all(a["row"]["verdict"] in ("ai_generated", "real", "uncertain") for s, a in replies if s == 200)
    assert server["process"].poll() is None
    assert post(server["url"], images[1].read_bytes(), "after.png")[0] == 200


def test_keep_saves_upload_and_map_and_without_it_nothing_stays(trained: dict, tmp_path: Path) -> None:
    from faceaudit.flows.scoring import Scorer
    from faceaudit.flows.ui import Judge

    scorer = Scorer.load(trained["model"])
    image = sorted((trained["data"] / "alpha").rglob("*.png"))[5]
    kept = tmp_path / "kept"
    answer = Judge(scorer, str(tmp_path / "store"), 20, kept).judge("../../etc/x y.png", image.read_bytes())
    names = sorted(p.name for p in kept.iterdir())
    assert len(names) == 2 and names[0].endswith("-map.png") and names[1].endswith("-x_y.png")
    assert (kept / names[1]).read_bytes() == image.read_bytes()
    assert answer["row"]["occlusion_map"] == str(kept / names[0])
    assert answer["map"].startswith("data:image/png;base64,")
    plain = Judge(scorer, str(tmp_path / "store"), 20).judge("x.png", image.read_bytes())
    assert plain["row"]["occlusion_map"] == "" and plain["map"] == answer["map"]
    assert sorted(p.name for p in kept.iterdir()) == names


def ask(url: str, path: str, headers: dict, data: bytes | None = None) -> tuple[int, dict | str]:
    """One request with the headers a browser on another site (or a rebinding page) would send."""
    request = urllib.request.Request(url + path, data=data, method="POST" if data is not None else "GET")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_other_web_sites_are_refused_in_one_line(server: dict, trained: dict) -> None:
    image = sorted((trained["data"] / "alpha").rglob("*.png"))[7].read_bytes()
    port = server["url"].rsplit(":", 1)[1].strip("/")
    # A page elsewhere POSTs the image as a no-cors text/plain Blob: its browser names the page.
    status, answer = ask(
        server["url"], "api/judge", {"Origin": "http://evil.example", "Content-Type": "text/plain"}, image
    )
    assert status == 403 and answer["error"].startswith("refused: ") and "\n" not in answer["error"]
    # Another member: the browser says cross-site without an Origin header.
    status, answer = ask(server["url"], "api/judge", {"Sec-Fetch-Site": "cross-site"}, image)
    assert status == 403 and answer["error"].startswith("refused: ")
    # DNS rebinding: the same server reached under another name, for the page and for the API.
    for path, data in (("", None), ("api/judge", image), ("api/health", None)):
        status, answer = ask(server["url"], path, {"Host": f"rebind.example:{port}"}, data)
        assert status == 403 and "does not name this server" in answer["error"]
    # A Host header that does not parse is refused the same way, not answered with a server error.
    for host in ("[", "[::1", "a:b:c]"):
        status, answer = ask(server["url"], "api/judge", {"Host": host}, image)
        assert status == 403 and answer["error"] == "refused: a malformed Host or Origin header"
    assert not [p for p in server["scratch"].rglob("*") if not p.is_dir()]  # nothing was written for them
    # The page itself, under each loopback name, still works.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        status, text = ask(server["url"], "api/judge", {"Host": host, "Origin": f"http://{host}"}, image)
        assert status == 200 and json.loads(text)["row"]["verdict"] != "unreadable"


def test_a_full_queue_refuses_before_the_body_is_read(trained: dict, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from faceaudit.flows.scoring import Scorer
    from faceaudit.flows.ui import Gate, Judge, create_app

    gate = Gate(waiting=0)
    kept = tmp_path / "kept"
    app = create_app(Judge(Scorer.cached(trained["model"]), str(tmp_path / "store"), 20, kept), gate, 10**6)
    image = sorted((trained["data"] / "alpha").rglob("*.png"))[8].read_bytes()
    with TestClient(app, base_url="http://127.0.0.1") as client:
        with gate.admit():  # the one place is taken, as by a long upload
            reply = client.post("/api/judge", content=image)
        assert reply.status_code == 503 and reply.json()["error"].startswith("busy: ")
        assert not kept.exists()  # never judged, never kept
        assert client.post("/api/judge", content=image).status_code == 200
    assert kept.is_dir() and len(list(kept.iterdir())) == 2


def test_a_server_on_another_loopback_address_still_checks_the_host() -> None:
    from faceaudit.flows.ui import allowed_hosts, foreign_request

    allowed = allowed_hosts("127.0.0.2")
    assert foreign_request({"host": "127.0.0.2:8765"}, allowed) is None
    assert foreign_request({"host": "localhost:8765"}, allowed) is None
    assert "does not name this server" in foreign_request({"host": "rebind.example:8765"}, allowed)
    assert allowed_hosts("0.0.0.0") is None  # opened to every interface on purpose, with a warning


def test_stalled_uploads_lose_their_place(server: dict, trained: dict) -> None:
    """Five clients send half an upload and stop; a sixth must still be judged, within a bounded wait."""
    from faceaudit.flows.ui import BODY_IDLE_S

    image = sorted((trained["data"] / "alpha").rglob("*.png"))[9].read_bytes()
    host, port = "127.0.0.1", int(server["url"].rsplit(":", 1)[1].strip("/"))
    stalled = []
    for _ in range(5):
        sock = socket.create_connection((host, port))
        sock.sendall(
            f"POST /api/judge HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"x" * 100
        )
        stalled.append(sock)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        while True:  # as a client that honours Retry-After: the stalled ones hold the queue at first
            status, answer = post(server["url"], image, "after-the-stall.png", timeout=BODY_IDLE_S * 6)
            if status != 503 or time.monotonic() - started > BODY_IDLE_S * 4:
                break
            time.sleep(1)
        assert status == 200 and answer["row"]["verdict"] != "unreadable", answer
        assert time.monotonic() - started < BODY_IDLE_S * 4
        replies = []
        for sock in stalled:
            sock.settimeout(BODY_IDLE_S * 2)
            replies.append(sock.recv(200).split(b"\r\n", 1)[0])
        assert set(replies) == {b"HTTP/1.1 408 Request Timeout"}
    finally:
        for sock in stalled:
            sock.close()
