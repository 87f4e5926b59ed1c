"""Drive the system's headless Chromium over the DevTools protocol: load a page, run script in it.

No Selenium or browser download: Debian's `chromium` and the `websockets` client Prefect brings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One headless Chromium with one page; `evaluate` returns the script's value."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="faceaudit-chromium-")
        self.process = subprocess.Popen(
            [chromium_path(), *FLAGS, f"--user-data-dir={self.profile}", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not start")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
        self._id = 0
        # The first page target can still be about:blank, already "complete", before the URL loads.
        loaded = "document.readyState === 'complete' && location.href !== 'about:blank'"
        self.wait_for(loaded, deadline - time.monotonic(), "the page did not finish loading")

    def send(self, method: str, params: dict | None = None) -> dict:
        """One DevTools protocol command; returns its result."""
        self._id += 1
        self.socket.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        result = self.send("Runtime.evaluate", params)
        if "exceptionDetails" in result:
            raise RuntimeError(str(result["exceptionDetails"]))
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, message: str):
        """Evaluate `expression` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise RuntimeError(message)
            time.sleep(0.1)
        return value

    def set_files(self, selector: str, paths: list[str]) -> None:
        """Choose files in an <input type=file>, as a user picking them would (fires its change event)."""
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": paths})

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
