"""`faceaudit ui` with the built-in model: seconds per answer (with its occlusion map) and a burst.

Starts the real server on a free loopback port (the model loads and warms up before it listens), then:
1. posts N different real images one after another and prints the seconds for each answer (target:
   under 5 s per image on this 2-core machine, map included);
2. posts 50 images at once and prints how many were answered and how many told "busy", and the
   server's resident memory before and after (target: back within +-20%).

    python bench/ui.py [--data ../shared/data] [--count 5] [--burst 50]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from images import bench_parser, first_images  # noqa: E402

from tests.test_ui import free_port, post, resident_mib, wait_for_server  # noqa: E402


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--burst", type=int, default=50)
    args = parser.parse_args()
    records = first_images(args.data, args.count + args.burst)
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "faceaudit.flows.cli",
                "ui",
                "--port",
                str(port),
                "--store",
                str(Path(scratch) / "store"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        try:
            print(f"start-up (model load and warm-up): {wait_for_server(url, process, 300):.1f} s")
            seconds = []
            for record in records[: args.count]:
                started = time.perf_counter()
                status, answer = post(url, record.path.read_bytes(), record.path.name)
                seconds.append(time.perf_counter() - started)
                verdict = answer["row"]["verdict"] if status == 200 else answer["error"]
                print(f"  {record.rel}: {seconds[-1]:.2f} s, {verdict}, map: {bool(answer.get('map'))}")
            print(
                f"one image with its occlusion map: median {statistics.median(seconds):.2f} s, "
                f"max {max(seconds):.2f} s (target < 5 s)"
            )

            burst = records[args.count :]
            before = resident_mib(process.pid)
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=len(burst)) as pool:
                replies = list(pool.map(lambda r: post(url, r.path.read_bytes(), r.path.name, 600), burst))
            took = time.perf_counter() - started
            statuses = [status for status, _ in replies]
            answered, busy = statuses.count(200), statuses.count(503)
            after = resident_mib(process.pid)
            print(
                f"{len(burst)} concurrent uploads: {answered} answered, {busy} busy, "
                f"{len(statuses) - answered - busy} other, in {took:.1f} s; "
                f"server alive: {process.poll() is None}"
            )
            print(
                f"server memory: {before:.0f} MiB before, {after:.0f} MiB after ({after / before:.3f}x; "
                "target within 0.8-1.2x)"
            )
        finally:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
