"""What halving a face does to its verdict, and whether projecting out the directions along which the
training views move vectors makes the verdict hold.

The built-in recipe (`flows/folds.fit_within`: the default head, texture probe, OOD, nearest source and
band, fitted on the training split with its augmented views) is trained once per number of view
directions projected out (head/projection.py) and seed; k = 0 is the recipe without the projection,
the baseline of the same run. With `--mixture`, the heads of all the seeds are also judged as one (each
draws an equal share of the Monte Carlo samples, as `train --members` does), calibrated and banded on
validation as one head is.

Each fit is judged on the test split, on the test split's 0.5x copies (made in memory as `train` makes
them) and on the demo's two real portraits, as they are and re-saved as JPEG (quality 90) at six widths.
Nothing here is chosen on the test split: the rows, validation coverage among them, are printed for a
person to choose by.
`docs/features.md` ("Halved faces") holds the table this printed.

    python bench/rescale.py [--data ../shared/data] [--store DIR] [--directions 0,64] [--seeds 0] [--mixture]
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images import bench_parser

from faceaudit.data.decode import decode_image
from faceaudit.embed.augment import DEFAULT_VIEWS, Augmentation
from faceaudit.embed.runner import embed_images, shared_embedder
from faceaudit.embed.spec import EmbeddingSpec, make_spec
from faceaudit.flows.folds import fit_within, texture_columns_of
from faceaudit.flows.labelled import LabelledSet, load_labelled
from faceaudit.flows.perturb import perturbed_vectors, resize
from faceaudit.head.calibration import fit_calibrator
from faceaudit.head.fit import fit_band
from faceaudit.head.mc_dropout import MCDropoutHead
from faceaudit.head.model import FaceauditModel
from faceaudit.head.thresholds import Bounds, verdict_rates

PORTRAITS = Path(__file__).resolve().parent.parent / "flows" / "sample_faces" / "images" / "real"
WIDTHS = (240, 320, 480, 640, 960, 1400)


def portraits(spec: EmbeddingSpec) -> list[Image.Image]:
    """The demo's real portraits as they are and re-saved at each of WIDTHS, decoded as `score` does."""
    out = []
    for path in sorted(PORTRAITS.glob("*.jpg")):
        copies = [path.read_bytes()]
        image = Image.open(path).convert("RGB")
        for width in WIDTHS:
            buffer = io.BytesIO()
            image.resize((width, round(image.height * width / image.width)), Image.Resampling.BICUBIC).save(
                buffer, format="JPEG", quality=90
            )
            copies.append(buffer.getvalue())
        out += [spec.preprocess.fit(decode_image(c, draft_size=spec.preprocess.draft_size())) for c in copies]
    return out


def judged_inputs(data_dir: Path, store: Path | None):
    """What a halving bench judges with: the spec, the labelled data with its training views (the
    user's store unless `store`), the test split's 0.5x copies and the portraits' vectors."""
    from faceaudit.flows.defaults import default_store_dir

    spec = make_spec()
    store_dir = str(store or default_store_dir())
    data = load_labelled(str(data_dir), spec, store_dir, 16, 1, Augmentation(), DEFAULT_VIEWS)
    test = np.flatnonzero(data.originals_in("test"))
    halved = perturbed_vectors([data.records[i] for i in test], spec, resize(0.5), 16, "halved")
    return spec, data, halved, embed_images(portraits(spec), spec, shared_embedder(spec), 8)


def fit(data: LabelledSet, spec: EmbeddingSpec, k: int, seed: int) -> tuple[FaceauditModel, float]:
    """The recipe fitted with k directions removed and its validation coverage."""
    params = {"hidden": (64, 64), "seed": seed}  # the built-in model's head, another seed if asked
    model, report = fit_within(
        data,
        np.ones(len(data.y), bool),
        "mc-dropout",
        params,
        Bounds(),
        200,
        texture_columns=texture_columns_of(spec),
        directions=k,
    )
    return model, report["uncertain_band_on_validation"]["coverage"]


def as_members(heads: list[MCDropoutHead]) -> MCDropoutHead:
    """The seeds' fitted heads as one `MCDropoutHead(members=N)`, what `train --members N` would fit with
    the same seeds, without fitting them again. Their standardisation is the same (one training split)."""
    first = heads[0]
    head = MCDropoutHead(**{**first.get_params(), "members": len(heads)})
    head.mean_, head.scale_, head.n_features_in_ = first.mean_, first.scale_, first.n_features_in_
    head.weights_ = {name: np.stack([h.weights_[name] for h in heads]) for name in first.weights_}
    return head


def mixture(models: list[FaceauditModel], data: LabelledSet) -> tuple[FaceauditModel, float]:
    """The seeds' heads as one mixture, calibrated and banded on validation as one head is. The rest
    (projection, probe, OOD, nearest source) does not depend on the head's seed: the first model's."""
    val = data.originals_in("val")
    head = as_members([m.head for m in models])
    logits = head.sample_logits(models[0].project(data.X[val]), models[0].n_samples)
    model = replace(models[0], head=head, calibrator=fit_calibrator(logits, data.y[val])[0])
    band = fit_band(model, data.X[val], data.y[val], data.groups[val], Bounds())
    return model, band["coverage"]


@dataclass
class TestFigures:
    """What the halving benches read off a fitted model: the test split, its halved copies, the portraits."""

    coverage: float
    real_called_ai: float
    accused: dict[str, float]  # real photos called AI, per real source
    ai_called_real: float
    stylegan_caught: float
    agreement: dict[str, float]  # verdicts kept on the halved copies, per source
    halved_real_called_ai: float
    portraits_accused: int
    portraits: int


def floor_figures(verdict: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
    """The issue's floor read off verdicts (shares of all faces of a class, `verdict_rates`): coverage,
    real photos called AI pooled and per real source, AI faces called real."""
    pooled = verdict_rates(verdict, y)
    real = y == 0
    return {
        "coverage": pooled["coverage"],
        "real_called_ai": pooled["real"]["ai_generated"],
        "accused": {
            g: verdict_rates(verdict[groups == g], y[groups == g])["real"]["ai_generated"]
            for g in np.unique(groups[real])
        },
        "ai_called_real": pooled["ai"]["real"],
    }


def agreement(verdict: np.ndarray, copies: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Per source, the share of images whose copy got the same verdict."""
    return {g: float(np.mean((verdict == copies)[groups == g])) for g in np.unique(groups)}


def test_figures(
    model: FaceauditModel, data: LabelledSet, halved: np.ndarray, portrait_X: np.ndarray
) -> TestFigures:
    test = data.originals_in("test")
    y, groups = data.y[test], data.groups[test]
    verdict, half = model.score(data.X[test]).verdict, model.score(halved).verdict
    shown = model.score(portrait_X).verdict
    return TestFigures(
        **floor_figures(verdict, y, groups),
        stylegan_caught=float(np.mean(verdict[(groups == "ffhq-stylegan") & (y == 1)] == "ai_generated")),
        agreement=agreement(verdict, half, groups),
        halved_real_called_ai=verdict_rates(half, y)["real"]["ai_generated"],
        portraits_accused=int(np.sum(shown == "ai_generated")),
        portraits=len(shown),
    )


def judge(
    model: FaceauditModel, val_coverage: float, data: LabelledSet, halved: np.ndarray, portrait_X: np.ndarray
) -> str:
    """One table row: the fitted model judged on the test split, its halved copies and the portraits."""
    f = test_figures(model, data, halved, portrait_X)
    worst = min(f.agreement, key=f.agreement.get)
    return (
        f"{val_coverage:.1%} | {f.coverage:.1%} | {f.real_called_ai:.1%} / {max(f.accused.values()):.1%} | "
        f"{f.stylegan_caught:.0%} | {worst} {f.agreement[worst]:.1%} | {f.halved_real_called_ai:.1%} | "
        f"{f.portraits_accused} of {f.portraits}"
    )


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--store", type=Path, default=None, help="feature store (default: the user's)")
    parser.add_argument("--directions", default="0,64", help="comma-separated numbers of directions")
    parser.add_argument("--seeds", default="0", help="comma-separated head seeds")
    parser.add_argument(
        "--mixture", action="store_true", help="also judge the seeds' heads as one, per direction count"
    )
    args = parser.parse_args()
    spec, data, halved, portrait_X = judged_inputs(args.data, args.store)
    header = (
        "| directions | seed | validation coverage | test coverage | real called AI, pooled / worst source "
        "| ffhq-stylegan AI caught | 0.5x agreement, worst source | real called AI, halved copies "
        "| portraits accused | s |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|", flush=True)
    seeds = [int(x) for x in args.seeds.split(",")]
    for k in (int(x) for x in args.directions.split(",")):
        models = []
        for seed in seeds:
            started = time.perf_counter()
            model, coverage = fit(data, spec, k, seed)
            row = judge(model, coverage, data, halved, portrait_X)
            print(f"| {k} | {seed} | {row} | {time.perf_counter() - started:.0f} |", flush=True)
            models.append(model)
        if args.mixture and len(models) > 1:
            started = time.perf_counter()
            row = judge(*mixture(models, data), data, halved, portrait_X)
            seconds = time.perf_counter() - started
            print(f"| {k} | mixture of {args.seeds} | {row} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
