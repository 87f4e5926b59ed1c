"""Scoring speed of already-stored images, printed (target: 1,000 images without maps under 10 s).

Copies N images from the data folder into a scratch folder, scores it once (embedding what the store
lacks), then times a second `faceaudit score --explain none` of the same folder as a whole command.

    python bench/score.py [--data ../shared/data] [--count 1000] [--store DIR]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from images import bench_parser, copy_images, first_images  # noqa: E402


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args()
    records = first_images(args.data, args.count)
    with tempfile.TemporaryDirectory() as scratch:
        folder = copy_images(records, Path(scratch) / "dump")
        store = args.store or Path(scratch) / "store"
        command = [
            sys.executable,
            "-m",
            "faceaudit.flows.cli",
            "score",
            str(folder),
            "--out",
            str(Path(scratch) / "out"),
            "--store",
            str(store),
            "--explain",
            "none",
            "--no-progress",
        ]
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        run = json.loads((Path(scratch) / "out" / "run.json").read_text())
    print(
        f"re-scoring {run['files']} stored images without maps: {seconds:.2f} s as a whole command "
        f"({run['timings']['total_s']:.2f} s in the flow, {run['newly_embedded']} embedded; target < 10 s)"
    )


if __name__ == "__main__":
    main()
