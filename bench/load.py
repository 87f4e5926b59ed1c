"""Load and memory: does `faceaudit score` stream a big dump, and does the store answer fast when large?

1. Generates N small images (default 2,000 and 10,000, all different), trains a tiny model on a tiny
   2-layer ViT, and scores each folder in a fresh process (`--explain none`, fresh store): prints
   images/s and the process's peak resident memory. Streaming means the 10,000 peak stays near the
   2,000 one (the ratio is printed; the target is no growth beyond noise).
2. Writes a store of 1,000,000 synthetic 384-d vectors through the real writer, then times, from a
   freshly opened store, which hashes of a 10,000-image dump are already stored (target < 1 s).

    python bench/load.py [--sizes 2000,10000] [--store-rows 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
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

from faceaudit.embed.store import FeatureStore  # noqa: E402
from tests.conftest import make_learnable_folder, save_tiny_backbone  # noqa: E402


def generate(folder: Path, count: int, seed: int) -> Path:
    """`count` distinct 40x40 JPEGs: noise on a random base colour, half with a fine checkerboard."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:40, 0:40]
    checker = 60 * (((yy + xx) % 2)[..., None] - 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.normal(128, 30, (1, 1, 3)) + rng.normal(0, 8, (40, 40, 3)) + (checker if i % 2 else 0)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)
    return folder


def faceaudit(*args: str) -> tuple[float, float, str]:
    """Run the real command line; (seconds, peak RSS in MiB of the process, stdout)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "faceaudit.flows.cli", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"faceaudit {args[0]} failed:\n{output}")
    return seconds, usage.ru_maxrss / 1024, output


def score_load(scratch: Path, sizes: list[int]) -> None:
    backbone = save_tiny_backbone(scratch / "backbone")
    data = make_learnable_folder(scratch / "labelled")
    model = scratch / "model"
    faceaudit(
        "train",
        str(data),
        "--model-out",
        str(model),
        "--store",
        str(scratch / "train-store"),
        "--backbone",
        str(backbone),
        "--samples",
        "50",
        "--no-progress",
    )
    peaks = {}
    print(f"{'images':>8} {'seconds':>8} {'images/s':>9} {'peak MiB':>9}")
    for size in sizes:
        folder = generate(scratch / f"dump-{size}", size, seed=size)
        seconds, peak, _ = faceaudit(
            "score",
            str(folder),
            "--out",
            str(scratch / f"out-{size}"),
            "--store",
            str(scratch / f"s-{size}"),
            "--model",
            str(model),
            "--explain",
            "none",
            "--no-progress",
        )
        peaks[size] = peak
        print(f"{size:>8} {seconds:>8.1f} {size / seconds:>9.1f} {peak:>9.0f}")
    if len(sizes) > 1:
        small, big = min(sizes), max(sizes)
        print(
            f"peak memory {big:,} vs {small:,} images: {peaks[big] / peaks[small]:.3f}x "
            f"(+{peaks[big] - peaks[small]:.0f} MiB for {big / small:.0f}x the images)"
        )


def store_lookup(scratch: Path, rows: int, dim: int = 384, dump: int = 10_000) -> None:
    fingerprint = "f" * 64
    store = FeatureStore(scratch / "big-store", fingerprint)
    hashes = [hashlib.sha256(i.to_bytes(8, "little")).hexdigest() for i in range(rows)]
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    provenance = {"fingerprint": fingerprint, "dim": dim, "backbone": "synthetic"}
    with store.writer(provenance) as writer:
        for start in range(0, rows, 100_000):
            chunk = hashes[start : start + 100_000]
            writer.append(chunk, rng.standard_normal((len(chunk), dim), dtype=np.float32))
    print(f"store of {rows:,} x {dim} vectors written and merged in {time.perf_counter() - started:.1f} s")
    # A dump whose first half is already stored, second half new.
    asked = hashes[rows - dump // 2 :] + [
        hashlib.sha256(b"new" + bytes([i % 256, i // 256])).hexdigest() for i in range(dump - dump // 2)
    ]
    started = time.perf_counter()
    fresh = FeatureStore(scratch / "big-store", fingerprint)
    found = fresh.contains(asked)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    fresh.contains(asked)
    warm = time.perf_counter() - started
    assert found.sum() == dump // 2, found.sum()
    print(
        f"which of {dump:,} hashes are stored, in a store of {rows:,}: {cold:.3f} s from a fresh open "
        f"(index build included), {warm * 1000:.1f} ms with the index built; target < 1 s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2000,10000", help="dump sizes to score, comma-separated")
    parser.add_argument("--store-rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        scratch = args.keep or Path(temporary)
        scratch.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("FACEAUDIT_CACHE_DIR", str(scratch / "cache"))
        score_load(scratch, [int(s) for s in args.sizes.split(",") if s])
        if args.store_rows:
            store_lookup(scratch, args.store_rows)


if __name__ == "__main__":
    main()
