"""What finding the face costs: `scale-face` against `scale`, per picture, decoded as the embed flow
decodes it (JPEG draft at the input size), square and non-square pictures apart (only the non-square
ones run the face finder). Both are timed in the same run, on the same decoded pictures.

    python bench/preprocess.py [--data ../shared/data] [--images 400]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images import bench_parser, first_images

from faceaudit.data.decode import decode_image
from faceaudit.embed.preprocess import Preprocess


def seconds_per_picture(preprocess: Preprocess, pictures: list) -> float:
    started = time.perf_counter()
    for picture in pictures:
        preprocess(picture)
    return (time.perf_counter() - started) / max(len(pictures), 1)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args()
    records = first_images(args.data, args.images)
    if not records:
        sys.exit(f"no images under {args.data}")
    scale, placed = Preprocess("scale"), Preprocess("scale-face")
    decoded = [decode_image(r.path.read_bytes(), draft_size=scale.draft_size()) for r in records]
    square = [p for p in decoded if p.width == p.height]
    other = [p for p in decoded if p.width != p.height]
    for name, pictures in (("square", square), ("not square", other)):
        if not pictures:
            continue
        base, face = seconds_per_picture(scale, pictures), seconds_per_picture(placed, pictures)
        print(
            f"{name:10} ({len(pictures)} pictures): scale {base * 1000:.1f} ms, scale-face "
            f"{face * 1000:.1f} ms per picture, ratio {face / base:.2f}"
        )


if __name__ == "__main__":
    main()
