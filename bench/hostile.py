"""Peak memory of `faceaudit score` on files whose pixels cost far more than their bytes.

Scores, each in a fresh process with the built-in model (`--explain none`, fresh store):
1. a baseline folder of three ordinary pictures;
2. the same three plus the hostile strips of issue 13 (`Image.new('RGB', (40000, 1))` saved as a
   ~200-byte PNG, its 1 x 30000 twin, a 20000 x 3 GIF);
3. the same three plus a 6000 x 6000 16-bit greyscale PNG (36 megapixels: under the pixel limit, so
   it is decoded and judged: the most a single allowed picture costs);
4. the same three plus issue 20's JPEG bombs: 60 MB of empty APP1 segments before a small picture
   (15 million segments), and a 1.4 MB progressive 6000 x 6000 JPEG whose tiny last scan is repeated
   to 20,000 scans.
Prints each run's peak resident memory, the ratio to the baseline, and the verdict rows of the hostile
files. The target: the strip run's peak under 1 GiB.

    python bench/hostile.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.bombs import app_segment_bomb, scan_bomb  # noqa: E402
from tests.conftest import write_image  # noqa: E402

TARGET_MIB = 1024


def score(folder: Path, out: Path) -> tuple[float, float, int]:
    """(seconds, peak RSS in MiB, exit code) of one `faceaudit score` process."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "faceaudit.flows.cli", "score", str(folder), "--out", str(out)]
    command += ["--store", str(out / "store"), "--explain", "none", "--no-progress"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Work in this folder and keep it.")
    args = parser.parse_args()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="faceaudit-bench-hostile-"))
    folders = {name: scratch / name for name in ("baseline", "strips", "big", "jpeg-bombs")}
    for folder in folders.values():
        for i in range(3):
            write_image(folder / f"photo{i}.jpg", seed=i, size=(320, 320))
    Image.new("RGB", (40000, 1)).save(folders["strips"] / "strip.png")
    Image.new("L", (1, 30000)).save(folders["strips"] / "column.png")
    Image.new("P", (20000, 3)).save(folders["strips"] / "strip.gif")
    deep = (np.arange(6000 * 6000, dtype=np.uint32) % 65536).astype(np.uint16).reshape(6000, 6000)
    Image.fromarray(deep).save(folders["big"] / "sixteen-bit.png")
    (folders["jpeg-bombs"] / "app-segments.jpg").write_bytes(app_segment_bomb(15_000_000))
    (folders["jpeg-bombs"] / "scans.jpg").write_bytes(scan_bomb(6000, 20_000))
    sizes = {
        p.name: p.stat().st_size
        for folder in folders.values()
        for p in sorted(folder.iterdir())
        if not p.name.startswith("photo")
    }
    print("hostile files (bytes):", ", ".join(f"{name} {size:,}" for name, size in sizes.items()))

    peaks, times = {}, {}
    for name, folder in folders.items():
        times[name], peaks[name], code = score(folder, scratch / f"out-{name}")
        ratio = peaks[name] / peaks["baseline"]
        print(
            f"{name:10s} exit {code}, {times[name]:5.1f} s ({times[name] / times['baseline']:.2f} x), "
            f"peak RSS {peaks[name]:7.1f} MiB ({ratio:.2f} x baseline)"
        )
        with open(scratch / f"out-{name}" / "verdicts.csv", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["path"] in sizes:
                    print(f"  {row['path']}: {row['verdict']} {row['error']}")
    verdict = "under" if peaks["strips"] < TARGET_MIB else "OVER"
    print(f"target: the strip run's peak under {TARGET_MIB} MiB: {verdict}")


if __name__ == "__main__":
    main()
