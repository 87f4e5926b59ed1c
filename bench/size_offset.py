"""Whether a size offset mends the halved verdicts: the built-in model's logits corrected by a slope per
octave of enlargement, fitted on halved training images, judged on halved test copies two ways.

A face whose short side is under the backbone's input size (224 px) is enlarged on the way in, and
halving a 256 px face moves the head's logit (docs/features.md, "Halved faces"). If that move depended
on the enlargement alone, subtracting `slope * octaves` (octaves = log2(224 / short side), 0 for a
face at or above 224 px) from the head's logit, and another slope from the texture probe's, would
undo it. The slopes are fitted by least squares on up to `--train-images` training images under 448
px and their halves, either lossless (bicubic, kept in memory, as `train`'s robustness copies are) or
saved as JPEG at quality 90 (as an upload pipeline that shrinks would save them); `mean` is the two
averaged. Each is judged with the built-in thresholds on the test split, its lossless halves and its
JPEG halves. No training or test image is under 224 px except real photos (utkface, facemask-real,
a few of pixabay-portraits), so the offset leaves the test split's own verdicts nearly as they are.

A second table asks whether the band could keep the halved verdicts instead: the best that any (AI,
real) threshold pair on the built-in head gives while keeping the issue's floor, chosen on the test
split itself (an upper bound on re-fitting the band, never a choice to ship). A third asks the same of
a second band used only for pictures the backbone enlarges (short side under 224 px), the built-in
band kept for the rest: one band per kind of copy, again chosen on the test split's copies.

    python bench/size_offset.py [--data ../shared/data] [--store DIR] [--model DIR] [--train-images 1200]
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images import bench_parser
from rescale import agreement, floor_figures, judged_inputs

from faceaudit.flows.models import resolve_model
from faceaudit.flows.perturb import jpeg, perturbed_vectors, resize
from faceaudit.head.model import FaceauditModel
from faceaudit.head.thresholds import decide, verdict_rates
from faceaudit.head.uncertainty import summarize

INPUT = 224  # the default backbone's input size
SMALL = 448  # halving a larger image leaves it at or above the input size
# The figures every table row prints after its first cell (`figures`, `cells`).
FIGURE_COLUMNS = (
    "test coverage | real called AI, pooled / worst | AI called real "
    "| lossless halves: ffhq-stylegan agreement / worst source | real called AI | AI called real "
    "| JPEG halves: ffhq-stylegan agreement / worst source | real called AI | AI called real"
)


def octaves(short_side: np.ndarray) -> np.ndarray:
    """Octaves of enlargement on the way into the backbone: 0 at or above its input size."""
    return np.maximum(0.0, np.log2(INPUT / np.asarray(short_side, dtype=float)))


def logits(model: FaceauditModel, X: np.ndarray) -> dict:
    """What the verdict is decided from: the head's sampled logit margins, the texture probe's logit,
    the OOD score and the looks-real likeness."""
    X = model.project(X)
    sampled = model.head.sample_logits(X, model.n_samples, 0)
    p = np.clip(model.probe.p_ai(X), 1e-9, 1 - 1e-9)
    return {
        "margin": sampled[..., 1] - sampled[..., 0],
        "probe": np.log(p / (1 - p)),
        "ood": model.ood.score(X),
        "looks": model.nearest.looks_real(model.ood.whiten(X)),
    }


def decided(model: FaceauditModel, parts: dict, shift: np.ndarray, slopes: tuple[float, float]) -> tuple:
    """What `decide` reads, with `slopes[0] * shift` taken off the head's logit and `slopes[1] *
    shift` off the probe's: P(AI), the OOD score, and the AI and real verdicts' gates."""
    t, calibrator = model.thresholds, model.calibrator
    margin = parts["margin"] - slopes[0] * shift[None, :]
    p_ai = summarize(1 / (1 + np.exp(-(calibrator.slope * margin + calibrator.intercept)))).p_ai
    probe = 1 / (1 + np.exp(-(parts["probe"] - slopes[1] * shift)))
    return p_ai, parts["ood"], probe >= t.probe_agrees, parts["looks"] >= t.looks_real


def verdicts(
    model: FaceauditModel, parts: dict, shift: np.ndarray, slopes: tuple[float, float]
) -> np.ndarray:
    """The model's verdicts with its thresholds, the logits offset as `decided` says."""
    p_ai, ood, ai_gate, real_gate = decided(model, parts, shift, slopes)
    return decide(p_ai, ood, model.thresholds, ai_gate, real_gate)


def slope(original: dict, halved: dict, shift: np.ndarray) -> tuple[float, float]:
    """Least-squares slopes through the origin of the head's and the probe's logit moves on `shift`."""
    head = halved["margin"].mean(0) - original["margin"].mean(0)
    probe = halved["probe"] - original["probe"]
    return float(shift @ head / (shift @ shift)), float(shift @ probe / (shift @ shift))


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--store", type=Path, default=None, help="feature store (default: the user's)")
    parser.add_argument("--model", default=None, help="model folder (default: the built-in model)")
    parser.add_argument("--train-images", type=int, default=1200, help="small training images halved")
    args = parser.parse_args()
    model = FaceauditModel.load(resolve_model(args.model))
    if model.probe is None or model.nearest is None:
        parser.error("the model has no texture probe or nearest-source part; train it with this code")
    spec, data, lossless_test, _ = judged_inputs(args.data, args.store)
    short = np.zeros(len(data.records))  # the pictures' short sides; views (read nowhere) keep 0
    for i in np.flatnonzero(data.view == 0):
        short[i] = min(Image.open(data.records[i].path).size)
    test = np.flatnonzero(data.originals_in("test"))
    small = np.flatnonzero(data.originals_in("train") & (short < SMALL))
    small = np.random.default_rng(0).permutation(small)[: args.train_images]

    def jpeg_half(image: Image.Image) -> Image.Image:
        return jpeg(90)(resize(0.5)(image))

    halves = {
        "lossless": perturbed_vectors([data.records[i] for i in small], spec, resize(0.5), 16, "halves"),
        "jpeg": perturbed_vectors([data.records[i] for i in small], spec, jpeg_half, 16, "JPEG halves"),
    }
    jpeg_test = perturbed_vectors([data.records[i] for i in test], spec, jpeg_half, 16, "JPEG test halves")
    train_parts = logits(model, data.X[small])
    shift = octaves(short[small] / 2) - octaves(short[small])
    slopes = {kind: slope(train_parts, logits(model, X), shift) for kind, X in halves.items()}
    slopes["mean"] = tuple(float(np.mean(pair)) for pair in zip(*slopes.values(), strict=True))
    slopes = {"none": (0.0, 0.0), **slopes}
    print(f"{len(small)} training images under {SMALL} px halved; slopes per octave (head, probe):")
    for kind, pair in slopes.items():
        print(f"  {kind}: {pair[0]:+.3f}, {pair[1]:+.3f}")

    y, groups = data.y[test], data.groups[test]
    judged = {
        "test": (logits(model, data.X[test]), octaves(short[test])),
        "lossless": (logits(model, lossless_test), octaves(short[test] / 2)),
        "jpeg": (logits(model, jpeg_test), octaves(short[test] / 2)),
    }
    print_header("slopes fitted on")
    for kind, pair in slopes.items():
        v = {name: verdicts(model, parts, shift_of, pair) for name, (parts, shift_of) in judged.items()}
        print(f"| {kind} | " + " | ".join(cells(figures(v, groups, y))) + " |", flush=True)
    unshifted = {name: parts for name, (parts, _) in judged.items()}
    band_frontier(model, unshifted, groups, y)
    small_band_frontier(model, unshifted, short[test], groups, y)


def print_header(first: str) -> None:
    """A markdown table's header: `first`'s columns, then the figures' (`cells`)."""
    header = f"| {first} | {FIGURE_COLUMNS} |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")


def figures(v: dict, groups: np.ndarray, y: np.ndarray) -> dict:
    """The test split's figures for the verdicts `v` of the test images and of their two kinds of
    halves: the floor's (`floor_figures`), and per kind of copy each source's agreement and the two
    error shares among the copies."""
    out = floor_figures(v["test"], y, groups)
    for copies in ("lossless", "jpeg"):
        rates = verdict_rates(v[copies], y)
        out[copies] = {
            "agree": agreement(v["test"], v[copies], groups),
            "real_called_ai": rates["real"]["ai_generated"],
            "ai_called_real": rates["ai"]["real"],
        }
    return out


def cells(f: dict) -> list[str]:
    """A table row's cells after its first, as the header above the rows names them."""
    row = [
        f"{f['coverage']:.1%}",
        f"{f['real_called_ai']:.1%} / {max(f['accused'].values()):.1%}",
        f"{f['ai_called_real']:.1%}",
    ]
    for copies in ("lossless", "jpeg"):
        agree = f[copies]["agree"]
        worst = min(agree, key=agree.get)
        row += [
            f"{agree['ffhq-stylegan']:.1%} / {worst} {agree[worst]:.1%}",
            f"{f[copies]['real_called_ai']:.1%}",
            f"{f[copies]['ai_called_real']:.1%}",
        ]
    return row


def print_moves(model: FaceauditModel, judged: dict, groups: np.ndarray) -> None:
    """How far halving moves each face's calibrated logit (averaged over the Monte Carlo samples), per
    source (mean and spread, lossless halves), beside the band's width in logits: a spread that is a
    good part of the width flips verdicts near either threshold whatever the band."""
    t, c = model.thresholds, model.calibrator
    width = np.log(t.ai / (1 - t.ai)) - np.log(t.real / (1 - t.real))
    move = c.slope * (judged["lossless"]["margin"].mean(0) - judged["test"]["margin"].mean(0))
    print(f"calibrated logit moves on lossless halves, per source (the band is {width:.2f} wide):")
    for g in np.unique(groups):
        print(f"  {g}: {move[groups == g].mean():+.2f}, spread {move[groups == g].std():.2f}")


def keeps_floor(f: dict) -> bool:
    """Whether `floor_figures` keep the issue's floor: real called AI <= 1% pooled and <= 2% per real
    source, AI called real <= 5%."""
    return f["real_called_ai"] <= 0.01 and max(f["accused"].values()) <= 0.02 and f["ai_called_real"] <= 0.05


def band_grid() -> Iterator[tuple[float, float]]:
    """The (AI, real) threshold pairs the oracles try: a 100 x 100 grid, AI 0.5-0.995, real 0-0.495."""
    for t_ai, t_real in itertools.product(np.linspace(0.5, 0.995, 100), np.linspace(0.0, 0.495, 100)):
        yield float(t_ai), float(t_real)


def as_judged(model: FaceauditModel, parts: dict) -> tuple:
    """What `decide` reads for `parts` with no offset taken off (`decided` with zero slopes)."""
    return decided(model, parts, np.zeros(len(parts["ood"])), (0.0, 0.0))


def with_band(model: FaceauditModel, inputs: tuple, band: tuple[float, float]) -> np.ndarray:
    """Verdicts of `as_judged` inputs with the (AI, real) thresholds `band`, the model's others kept."""
    p, ood, *gates = inputs
    return decide(p, ood, replace(model.thresholds, ai=band[0], real=band[1]), *gates)


def band_frontier(model: FaceauditModel, judged: dict, groups: np.ndarray, y: np.ndarray) -> None:
    """Whether any band on this head could keep the halved verdicts: every (AI, real) threshold pair
    on a grid is judged on the test split itself, and among the pairs that keep the issue's floor
    there (real called AI <= 1% pooled and <= 2% per source, AI called real <= 5%), the one with the
    highest worst-source agreement on lossless halves is printed for each least coverage. An oracle,
    chosen on the test split: a bound on what re-fitting the band could give, never a band to ship."""
    print("\nAny band on this head, chosen on the test split itself (an upper bound, not a choice):")
    rows = {}
    inputs = {name: as_judged(model, parts) for name, parts in judged.items()}
    for band in band_grid():
        f = figures({name: with_band(model, it, band) for name, it in inputs.items()}, groups, y)
        if keeps_floor(f):
            rows[band] = f
    print_header("test coverage at least | band (AI, real)")
    for least in (0.7, 0.75, 0.78, 0.8):
        kept = {band: f for band, f in rows.items() if f["coverage"] >= least}
        if not kept:
            print(f"| {least:.0%} | none keeps the floor |")
            continue
        band = max(kept, key=lambda b: min(kept[b]["lossless"]["agree"].values()))
        shown = f"{band[0]:.3f}, {band[1]:.3f}"
        print(f"| {least:.0%} | {shown} | " + " | ".join(cells(kept[band])) + " |", flush=True)


def small_band_frontier(
    model: FaceauditModel, judged: dict, short: np.ndarray, groups: np.ndarray, y: np.ndarray
) -> None:
    """Whether a band of their own for enlarged pictures could keep the halved verdicts: the originals
    keep the model's verdicts, and each halved copy whose short side is under the input size is judged
    with an (AI, real) pair from the grid. Per kind of copy, the pair with the highest worst-source
    agreement is printed twice: among all pairs, and among those whose copies keep the floor's bounds
    (the built-in band's row for comparison). An oracle again, chosen on the test split's copies: if
    even it misses 90%, no rule that shifts or widens the band by the picture's size can reach it."""
    print()
    print_moves(model, judged, groups)
    print("A second band for enlarged copies only, chosen on the test split's copies (an upper bound):")
    print(
        "| copies | band for the enlarged copies | (AI, real) | ffhq-stylegan agreement / worst source "
        "| real called AI among the copies, pooled / worst | AI called real among the copies |"
    )
    print("|---|---|---|---|---|---|")
    built_in = (model.thresholds.ai, model.thresholds.real)
    verdict = with_band(model, as_judged(model, judged["test"]), built_in)
    enlarged = short / 2 < INPUT
    for copies in ("lossless", "jpeg"):
        inputs = as_judged(model, judged[copies])
        as_built = with_band(model, inputs, built_in)
        rows = {"the built-in band": built_in}
        best = {"the best of all": -1.0, "the best that keeps the floor on the copies": -1.0}
        for band in band_grid():
            half = np.where(enlarged, with_band(model, inputs, band), as_built)
            worst = min(agreement(verdict, half, groups).values())
            for name, kept in zip(best, (True, keeps_floor(floor_figures(half, y, groups))), strict=True):
                if kept and worst > best[name]:
                    best[name], rows[name] = worst, band
        for name, band in rows.items():
            half = np.where(enlarged, with_band(model, inputs, band), as_built)
            agree, f = agreement(verdict, half, groups), floor_figures(half, y, groups)
            worst = min(agree, key=agree.get)
            print(
                f"| {copies} ({int(enlarged.sum())} enlarged) | {name} | {band[0]:.3f}, {band[1]:.3f} | "
                f"{agree['ffhq-stylegan']:.1%} / {worst} {agree[worst]:.1%} | "
                f"{f['real_called_ai']:.1%} / {max(f['accused'].values()):.1%} | {f['ai_called_real']:.1%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
