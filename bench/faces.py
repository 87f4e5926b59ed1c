"""How often the `face` column finds the face in pictures that all show one, and what it costs.

For the first N images of each source and class of ../shared/data (every one of them a face), the
share found by the column's check (embed/faces.py: a border, the frontal and profile cascades, the
mirror image, turned copies) and, as the baseline of the same run, by the frontal cascade alone as the
`face` preprocessing runs it (embed/preprocess.face_square). Each picture is decoded as `score`
decodes it for the column; the times are per picture, decoding excluded. Then the time of each on
pictures without a face (noise), where every pass of the column's check runs.

    python bench/faces.py [--data ../shared/data] [--per-source 60]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images import bench_parser

from faceaudit.data.decode import decode_image
from faceaudit.embed.faces import FACE_CHECK, shows_face
from faceaudit.embed.preprocess import face_square


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--per-source", type=int, default=60, help="images per source and class")
    args = parser.parse_args()
    side = FACE_CHECK["side"]
    checks = {
        "frontal only (baseline)": lambda image: face_square(image) is not None,
        "face column": shows_face,
    }
    print("| source / class | images | " + " | ".join(checks) + " |")
    print("|---|---|" + "---|" * len(checks))
    seconds = dict.fromkeys(checks, 0.0)
    total = 0
    for folder in sorted(p for p in args.data.glob("*/*") if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.is_file())[: args.per_source]
        images = [decode_image(p.read_bytes(), draft_size=(side, side)) for p in files]
        shares = []
        for name, check in checks.items():
            started = time.perf_counter()
            shares.append(np.mean([check(image) for image in images]))
            seconds[name] += time.perf_counter() - started
        total += len(images)
        found = " | ".join(f"{share:.0%}" for share in shares)
        print(f"| {folder.parent.name}/{folder.name} | {len(images)} | {found} |")
    baseline, column = (1000 * s / max(total, 1) for s in seconds.values())
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)) for _ in range(30)]
    empty = []
    for check in checks.values():
        started = time.perf_counter()
        assert not any(check(image) for image in noise), "a face found in noise"
        empty.append(1000 * (time.perf_counter() - started) / len(noise))
    ratio = column / baseline
    print(f"\nms per picture: frontal only {baseline:.1f}, face column {column:.1f} ({ratio:.2f}x)")
    print(
        f"ms per picture without a face: frontal only {empty[0]:.1f}, face column {empty[1]:.1f} "
        f"({empty[1] / empty[0]:.2f}x)"
    )


if __name__ == "__main__":
    main()
