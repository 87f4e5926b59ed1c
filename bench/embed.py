"""Embedding throughput and a feature-choice probe, printed; nothing here is asserted.

Throughput, in one run on one machine:
  flow       the whole `embed` flow (scan, hash, decode in a worker, forward, pool, HDF5 writes)
  forward    the bare backbone forward + pooling on pre-decoded tensors, same batch size
  reference  the reference design's loop: batch 16, each image resized to 128 px, the transformers
             image processor called on each batch inside the loop, no workers

Probe: logistic regression, 5-fold, within each source, pooled, and across sources, on the vectors of
each preprocessing and pooling choice, so that the defaults are chosen on evidence.

    python bench/embed.py [--data ../shared/data] [--limit N] [--skip-probe] [--skip-throughput]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images import bench_parser, copy_images, first_images

from faceaudit.data.decode import decode_image
from faceaudit.embed.backbone import Backbone
from faceaudit.embed.default_backbone import cache_root
from faceaudit.embed.pooling import Pooling
from faceaudit.embed.preprocess import Preprocess
from faceaudit.embed.runner import Embedder
from faceaudit.embed.spec import EmbeddingSpec, make_spec


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    parser.add_argument("--sample", type=int, default=256, help="images timed for forward and reference")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-probe", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    records = first_images(args.data, args.limit)
    print(f"{len(records)} images from {args.data}")
    if not args.skip_throughput:
        throughput(records, args)
    if not args.skip_probe:
        probe(records)


# ---- throughput -------------------------------------------------------------------------------------


def throughput(records, args) -> None:
    from faceaudit.flows.embed_flow import embed_flow

    spec = make_spec()
    sample = records[: args.sample]
    pixels = np.stack([spec.preprocess(decode_image(r.path.read_bytes())) for r in sample])
    embedder = Embedder(spec)
    embedder(pixels[: args.batch_size])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(pixels), args.batch_size):
        embedder(pixels[start : start + args.batch_size])
    forward_rate = len(pixels) / (time.perf_counter() - started)
    reference_rate = reference_loop(sample, spec)

    with tempfile.TemporaryDirectory() as scratch:
        folder = args.data
        if args.limit:
            folder = copy_images(records, Path(scratch) / "images")
        started = time.perf_counter()
        summary = embed_flow.fn(
            str(folder), str(Path(scratch) / "store"), batch_size=args.batch_size, workers=args.workers
        )
        flow_seconds = time.perf_counter() - started
        flow_rate = summary.new / flow_seconds
        started = time.perf_counter()
        again = embed_flow.fn(str(folder), str(Path(scratch) / "store"), batch_size=args.batch_size)
        rerun_seconds = time.perf_counter() - started
    print(
        f"\nthroughput, batch {args.batch_size}, {len(sample)} images for forward/reference, "
        f"{summary.new} for the flow, {os.cpu_count()} cores, torch threads {threads()}:"
    )
    print(f"  flow (whole, wall clock incl. model load) {flow_rate:7.2f} images/s")
    print(f"  bare forward + pooling                   {forward_rate:7.2f} images/s")
    print(f"  reference-design loop                    {reference_rate:7.2f} images/s")
    print(f"  flow / forward   = {flow_rate / forward_rate:.2f}   (target >= 0.85)")
    print(f"  flow / reference = {flow_rate / reference_rate:.2f}   (target >= 2)")
    print(
        f"  re-run on {again.already_stored} stored images: {again.new} embedded, "
        f"{rerun_seconds:.2f} s in the flow (target < 5 s for 1,000)"
    )


def threads() -> int:
    import torch

    return torch.get_num_threads()


def reference_loop(sample, spec: EmbeddingSpec) -> float:
    """The reference design's loop, timed; its model is ours (every layer: it reads the last)."""
    import torch
    from PIL import Image
    from transformers import BitImageProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    processor = BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224})
    model = Backbone(spec.backbone).model
    started = time.perf_counter()
    for start in range(0, len(sample), 16):
        batch = [Image.open(r.path).convert("RGB").resize((128, 128)) for r in sample[start : start + 16]]
        inputs = processor(images=batch, return_tensors="pt")
        with torch.no_grad():
            model(**inputs).last_hidden_state[:, 0].numpy()
    return len(sample) / (time.perf_counter() - started)


# ---- probe ------------------------------------------------------------------------------------------

VARIANTS = {
    "cls, last layer": ("cls", (12,)),
    "mean, last layer": ("mean", (12,)),
    "cls+mean, last layer": ("cls+mean", (12,)),
    "cls, layers 4,8,12": ("cls", (4, 8, 12)),
    "cls+mean, layers 4,8,12": ("cls+mean", (4, 8, 12)),
    "cls+mean+std, layers 4,8,12": ("cls+mean+std", (4, 8, 12)),
    "cls+mean+std, layers 4,6,8": ("cls+mean+std", (4, 6, 8)),
    "cls+mean, layers 3,6,9,12": ("cls+mean", (3, 6, 9, 12)),
    "cls+mean, all 12 layers": ("cls+mean", tuple(range(1, 13))),
}


class Downsized(Preprocess):
    """The reference design's input: the image resized to 128 px, then squeezed to the input size."""

    def fit(self, image):
        return super().fit(image.resize((128, 128), 3))


def probe(records) -> None:
    groups = np.array([r.group for r in records])
    labels = np.array([1 if r.label == "ai" else 0 for r in records])
    base = make_spec()
    preprocessings = {
        "crop (native pixels)": Preprocess("crop", base.preprocess.size),
        "resize to input": Preprocess("resize", base.preprocess.size),
        "128 px then resize": Downsized("resize", base.preprocess.size),
    }
    print("\nprobe: logistic regression, 5-fold accuracy (%)")
    header = f"  {'preprocess':22} {'pooling':28}" + "".join(f"{g[:16]:>17}" for g in sorted(set(groups)))
    print(header + f"{'pooled':>9}{'cross A->B':>12}{'cross B->A':>12}")
    for pre_name, pre in preprocessings.items():
        features = probe_features(records, base, pre)
        for var_name, matrix in features.items():
            row = probe_scores(matrix, labels, groups)
            print(
                f"  {pre_name:22} {var_name:28}"
                + "".join(f"{v:17.1f}" for v in row[:-3])
                + f"{row[-3]:9.1f}{row[-2]:12.1f}{row[-1]:12.1f}"
            )


def probe_features(records, base: EmbeddingSpec, pre: Preprocess) -> dict[str, np.ndarray]:
    """Every variant's vectors from one forward pass per image; cached between bench runs."""
    import hashlib

    import torch

    key = hashlib.sha256(
        ("|".join(r.sha256 for r in records) + repr(pre) + type(pre).__name__ + repr(VARIANTS)).encode()
    )
    cache = cache_root() / "bench" / f"probe-{key.hexdigest()[:16]}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return {name: stored[f"v{i}"] for i, name in enumerate(VARIANTS)}
    backbone = Backbone(base.backbone)  # every layer: the variants read up to the last
    out: dict[str, list[np.ndarray]] = {name: [] for name in VARIANTS}
    started = time.perf_counter()
    for start in range(0, len(records), 16):
        batch = np.stack([pre(decode_image(r.path.read_bytes())) for r in records[start : start + 16]])
        with torch.inference_mode():
            states = backbone.hidden_states(torch.from_numpy(batch))
            for name, (kind, layers) in VARIANTS.items():
                pooled = Pooling(kind, layers)(states, 1, backbone.norm)
                out[name].append(pooled.numpy())
        done = start + len(batch)
        rate = done / (time.perf_counter() - started)
        print(
            f"\r  embedding for the probe: {done}/{len(records)} ({rate:.1f} images/s)",
            end="",
            file=sys.stderr,
        )
    print(file=sys.stderr)
    features = {name: np.concatenate(parts) for name, parts in out.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **{f"v{i}": features[name] for i, name in enumerate(VARIANTS)})
    return features


def probe_scores(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> list[float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model():
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = []
    names = sorted(set(groups))
    for name in names:
        mask = groups == name
        scores.append(100 * cross_val_score(model(), x[mask], y[mask], cv=folds).mean())
    scores.append(100 * cross_val_score(model(), x, y, cv=folds).mean())
    a, b = (groups == names[0]), (groups == names[-1])
    scores.append(100 * model().fit(x[a], y[a]).score(x[b], y[b]))
    scores.append(100 * model().fit(x[b], y[b]).score(x[a], y[a]))
    return scores


if __name__ == "__main__":
    main()
