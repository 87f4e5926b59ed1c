"""Trust nothing: a whole `score` run with the network cut off writes only where it was told to."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, snapshot

# Runs inside the child before faceaudit: every attempt to open an internet socket or resolve a name
# is written to $NET_LOG and refused. Unix sockets (DataLoader workers, asyncio) stay allowed.
NETWORK_GUARD = """
import os, socket, sys

LOG = os.environ["NET_LOG"]
NAME_EVENTS = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"}

def guard(event, args):
    blocked = event in NAME_EVENTS or (
        event == "socket.__new__" and args[1] in (socket.AF_INET, socket.AF_INET6)
    )
    if blocked:
        with open(LOG, "a") as log:
            log.write(f"{event} {args!r}\\n")
        raise OSError(f"network blocked by the test: {event}")

sys.addaudithook(guard)
from faceaudit.flows.cli import main
sys.argv = ["faceaudit", *sys.argv[1:]]
main()
"""


def test_score_offline_writes_only_out_store_and_cache(trained: dict, tiny_vit: Path, tmp_path: Path) -> None:
    home, scratch, cwd, cache = (tmp_path / name for name in ("home", "tmp", "cwd", "cache"))
    for folder in (home, scratch, cwd):
        folder.mkdir()
    out, store, log = tmp_path / "out", tmp_path / "store", tmp_path / "network.log"
    inputs = tmp_path / "in"  # eight pictures prove the point as well as eighty
    inputs.mkdir()
    for i, source in enumerate(sorted(trained["data"].rglob("*.png"))[::20]):
        (inputs / f"{i}-{source.name}").write_bytes(source.read_bytes())
    watched = (home, scratch, cwd, inputs, trained["model"], tiny_vit)
    before = snapshot(*watched)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "TMPDIR": str(scratch),
        "FACEAUDIT_CACHE_DIR": str(cache),
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "NET_LOG": str(log),
    }
    command = [sys.executable, "-c", NETWORK_GUARD, "score", str(inputs), "--out", str(out)]
    command += ["--store", str(store), "--model", str(trained["model"]), "--explain", "all"]
    command += ["--samples", "20", "--workers", "1", "--no-progress"]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert not log.exists(), log.read_text()  # not a single attempt, refused or not
    with open(out / "verdicts.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(list(inputs.rglob("*.png"))) and all(r["occlusion_map"] for r in rows)
    assert snapshot(*watched) == before  # HOME, /tmp, the working folder and the inputs untouched
    assert {p.name for p in tmp_path.iterdir()} == {"home", "tmp", "cwd", "cache", "out", "store", "in"}
