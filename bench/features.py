"""Which parts of the backbone's tokens, and which training recipe, make a detector that generalises.

Every image of the data folder is embedded once with a wide pooling (CLS, patch mean and patch spread of
layers 1 to 8), and once more with the default's zoomed pass (the same statistics of layers 4, 6 and 8
from the centre half of the input at twice the scale), so each feature set below is a choice of columns
of the same vectors. For each choice a plain logistic probe is trained on the training split (with the
augmented views, when asked), its band fitted on the validation split exactly as `train` fits the
shipped model's (head/thresholds.py: at most 1% of real photos called AI pooled and 2% per real source,
at most 5% of AI faces called real), and judged three ways:

  test       the test split of every source
  family     each generator family left out of training entirely (flows/folds.py's grouping): the
             share of its faces called real
  real       each real collection left out: the share of its photos called AI

Nothing here is chosen on the test split or on a left-out family: the figures are printed for a person
to choose by. `docs/features.md` holds the table this printed.

    python bench/features.py [--data ../shared/data] [--store DIR] [--views 2] [--preprocess scale|face]
                             [--only N,...]
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from images import bench_parser

from faceaudit.data.families import Families
from faceaudit.embed.augment import Augmentation
from faceaudit.embed.spec import make_spec
from faceaudit.flows.labelled import LabelledSet, load_labelled
from faceaudit.head.probe import logistic_regression
from faceaudit.head.thresholds import Bounds, choose_thresholds, decide

WIDE_LAYERS = tuple(range(1, 9))
STATS = ("cls", "mean", "std")
ZOOM_LAYERS = (4, 6, 8)


def columns(parts: list[tuple[int, str]], hidden: int = 384) -> np.ndarray:
    """Column indices of (layer, statistic) parts in the bench's vector: the wide one (layers 1-8,
    cls/mean/std each), then the zoomed pass's (layers 4, 6, 8; statistics named "zoom cls" and so on)."""
    out = []
    for layer, stat in parts:
        if stat.startswith("zoom "):
            offset = len(WIDE_LAYERS) * len(STATS) * hidden
            block = offset + (ZOOM_LAYERS.index(layer) * len(STATS) + STATS.index(stat[5:])) * hidden
        else:
            block = (WIDE_LAYERS.index(layer) * len(STATS) + STATS.index(stat)) * hidden
        out.append(np.arange(block, block + hidden))
    return np.concatenate(out)


def parts(stats: str, layers) -> list[tuple[int, str]]:
    return [(layer, stat) for layer in layers for stat in stats.split("+")]


SEMANTIC = parts("cls+mean+std", (4, 6, 8))
TEXTURE = parts("std", (1, 2, 3, 4))
ZOOM = parts("zoom cls+zoom mean+zoom std", ZOOM_LAYERS)


@dataclass
class Recipe:
    """A feature set and how the probe is trained and gated."""

    name: str
    features: list[tuple[int, str]]
    gate: list[tuple[int, str]] | None = None  # a second probe that must agree before an AI verdict
    balanced: bool = False  # every (source, class) weighs the same in training
    like_real: bool = False  # a real verdict needs the face to look like a known real collection
    protective: bool = False  # the band is fitted without the gates, which then only hold verdicts back
    C: float = 0.1
    nuisance: int = 0  # directions of between-source style removed (nuisance attribute projection)
    views: bool = True


RECIPES = [
    Recipe("default: cls+mean+std of 4,6,8", SEMANTIC),
    Recipe("  without augmented views", SEMANTIC, views=False),
    Recipe("cls of 4,6,8", parts("cls", (4, 6, 8))),
    Recipe("std of 1-4", TEXTURE),
    Recipe("std of 1-8", parts("std", WIDE_LAYERS)),
    Recipe("mean+std of 1-4", parts("mean+std", (1, 2, 3, 4))),
    Recipe("default + std of 1-3", SEMANTIC + parts("std", (1, 2, 3))),
    Recipe("default, AI needs std 1-4 to agree", SEMANTIC, gate=TEXTURE),
    Recipe("default + std 1-3, AI needs std 1-4 to agree", SEMANTIC + parts("std", (1, 2, 3)), gate=TEXTURE),
    Recipe("default + std 1-3, source-balanced", SEMANTIC + parts("std", (1, 2, 3)), balanced=True),
    Recipe("default + std 1-3, 16 style directions removed", SEMANTIC + parts("std", (1, 2, 3)), nuisance=16),
    Recipe("default, C=0.01", SEMANTIC, C=0.01),
    Recipe("default, C=1", SEMANTIC, C=1.0),
    Recipe("default, real needs to look like a real collection", SEMANTIC, like_real=True),
    Recipe("  the same, the check only holding back", SEMANTIC, like_real=True, protective=True),
    Recipe("zoom: cls+mean+std of 4,6,8 of the centre at 2x", ZOOM),
    Recipe("default + zoom", SEMANTIC + ZOOM),
    Recipe("  without augmented views", SEMANTIC + ZOOM, views=False),
    Recipe("default + zoom, real needs to look like a real collection", SEMANTIC + ZOOM, like_real=True),
]


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--store", type=Path, default=None, help="feature store (default: the user's)")
    parser.add_argument("--views", type=int, default=2, help="augmented views per training image")
    parser.add_argument(
        "--preprocess", default="scale", help="the input the backbone sees (scale, face, ...)"
    )
    parser.add_argument("--only", default="", help="comma-separated recipe numbers to run (1-based)")
    args = parser.parse_args()
    from faceaudit.flows.defaults import default_store_dir

    # The widest pooling the bench reads (its "+texture" adds nothing when layer 1 is pooled).
    spec = make_spec(preprocess=args.preprocess, pooling="cls+mean+std+texture", layers=WIDE_LAYERS)
    store = str(args.store or default_store_dir())
    data = load_labelled(str(args.data), spec, store, 16, 1, Augmentation(), args.views)
    zoomed = make_spec(preprocess=args.preprocess, pooling="cls+mean+std+zoom", layers=ZOOM_LAYERS)
    zoom = load_labelled(str(args.data), zoomed, store, 16, 1, Augmentation(), args.views)
    if not (np.array_equal(zoom.image_ids(), data.image_ids()) and np.array_equal(zoom.view, data.view)):
        sys.exit("the two embeddings' rows do not line up: was the data folder changed meanwhile?")
    data.X = np.concatenate([data.X, zoom.X[:, zoomed.dim // 2 :]], axis=1)
    families = np.array(Families.for_folder(args.data).label_each(data.groups, data.y))
    chosen = [RECIPES[int(i) - 1] for i in args.only.split(",")] if args.only else RECIPES
    print(
        f"{int((data.view == 0).sum())} images, {int((data.view > 0).sum())} views, {data.X.shape[1]} dims",
        flush=True,
    )
    header = (
        "| features | test coverage | AI caught, min / median | real called AI, pooled / worst source "
        "| AI called real | family left out, called real (worst) | real collection left out, called AI "
        "(worst) | s |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for recipe in chosen:
        started = time.perf_counter()
        row = evaluate(recipe, data, families)
        print(f"| {recipe.name} | {row} | {time.perf_counter() - started:.0f} |", flush=True)


def evaluate(recipe: Recipe, data: LabelledSet, families: np.ndarray) -> str:
    test = judge(recipe, data, families, np.ones(len(data.y), dtype=bool), data.originals_in("test"))
    verdict, y, groups = test
    ai_caught = [
        np.mean(verdict[(groups == g) & (y == 1)] == "ai_generated") for g in np.unique(groups[y == 1])
    ]
    real_ai = [
        np.mean(verdict[(groups == g) & (y == 0)] == "ai_generated") for g in np.unique(groups[y == 0])
    ]
    pooled_real_ai = np.mean(verdict[y == 0] == "ai_generated")
    ai_real = np.mean(verdict[y == 1] == "real")
    coverage = np.mean(verdict != "uncertain")
    family_real, collection_ai = [], []
    for family in np.unique(families[data.y == 1]):
        held = families == family
        verdict_f, _, _ = judge(recipe, data, families, ~held, held & (data.view == 0))
        family_real.append((family, np.mean(verdict_f == "real")))
    for collection in np.unique(families[data.y == 0]):
        held = families == collection
        verdict_c, _, _ = judge(recipe, data, families, ~held, held & (data.view == 0))
        collection_ai.append((collection, np.mean(verdict_c == "ai_generated")))
    fam = ", ".join(f"{n} {v:.0%}" for n, v in family_real)
    col = ", ".join(f"{n} {v:.0%}" for n, v in collection_ai)
    return (
        f"{coverage:.1%} | {min(ai_caught):.0%} / {np.median(ai_caught):.0%} | {pooled_real_ai:.1%} / "
        f"{max(real_ai):.1%} | {ai_real:.1%} | {fam} | {col}"
    )


def judge(recipe: Recipe, data: LabelledSet, families, within: np.ndarray, judged: np.ndarray):
    """Train on `within`'s training rows, fit the band on its validation originals, judge `judged`."""
    train = within & (data.splits == "train") & ((data.view == 0) | recipe.views)
    val = within & data.originals_in("val")
    columns_main = columns(recipe.features)
    main = Probe(columns_main, recipe.nuisance, recipe.C).fit(data, train, balanced=recipe.balanced)
    p_val, p_out = main.p(data.X[val]), main.p(data.X[judged])
    gate_val = gate_out = None
    if recipe.gate is not None:
        second = Probe(columns(recipe.gate)).fit(data, train, balanced=recipe.balanced)
        q_val, q_out = second.p(data.X[val]), second.p(data.X[judged])
        # The gate keeps 95% of the validation AI faces: the texture probe must not be confidently against.
        cut = float(np.quantile(q_val[data.y[val] == 1], 0.05))
        gate_val, gate_out = q_val >= cut, q_out >= cut
    real_val = real_out = None
    if recipe.like_real:
        like = LooksLike(columns_main).fit(data, train)
        r_val, r_out = like.p_real(data.X[val]), like.p_real(data.X[judged])
        cut = float(np.quantile(r_val[data.y[val] == 0], 0.05))
        real_val, real_out = r_val >= cut, r_out >= cut
    zeros_val = np.zeros(int(val.sum()))
    thresholds, _ = choose_thresholds(
        p_val,
        data.y[val],
        zeros_val,
        1.0,
        Bounds(),
        groups=data.groups[val],
        ai_gate=None if recipe.protective else gate_val,
        real_gate=None if recipe.protective else real_val,
    )
    verdict = decide(p_out, np.zeros(int(judged.sum())), thresholds, gate_out, real_out)
    return verdict, data.y[judged], data.groups[judged]


class Probe:
    """Standardise, optionally project out between-source directions, logistic regression."""

    def __init__(self, cols: np.ndarray, nuisance: int = 0, C: float = 0.1) -> None:
        self.cols, self.nuisance, self.C = cols, nuisance, C

    def fit(self, data: LabelledSet, rows: np.ndarray, balanced: bool = False) -> Probe:
        X = data.X[rows][:, self.cols].astype(np.float64)
        self.mean, self.scale = X.mean(0), X.std(0) + 1e-6
        Z = (X - self.mean) / self.scale
        y, groups = data.y[rows], data.groups[rows]
        self.basis = None
        if self.nuisance:
            # Directions along which sources of one class differ from each other: style, not realness.
            centred = []
            for label in (0, 1):
                sources = np.unique(groups[y == label])
                means = np.stack([Z[(y == label) & (groups == s)].mean(0) for s in sources])
                centred.append(means - means.mean(0))
            _, _, vt = np.linalg.svd(np.concatenate(centred), full_matrices=False)
            self.basis = vt[: self.nuisance]
            Z = Z - (Z @ self.basis.T) @ self.basis
        weight = np.ones(len(y))
        if balanced:
            keys = np.char.add(groups.astype(str), y.astype(str))
            _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
            weight = len(y) / (len(counts) * counts[inverse])
        self.w, self.b = logistic_regression(Z, y, self.C, weight)
        return self

    def p(self, X: np.ndarray) -> np.ndarray:
        Z = (X[:, self.cols].astype(np.float64) - self.mean) / self.scale
        if self.basis is not None:
            Z = Z - (Z @ self.basis.T) @ self.basis
        return 1.0 / (1.0 + np.exp(-(Z @ self.w + self.b)))


class LooksLike:
    """Which training group (source/class) a vector resembles: a multinomial probe on 64 whitened
    principal coordinates, as the shipped model's nearest-source column does."""

    def __init__(self, cols: np.ndarray, k: int = 64) -> None:
        self.cols, self.k = cols, k

    def fit(self, data: LabelledSet, rows: np.ndarray) -> LooksLike:
        from sklearn.linear_model import LogisticRegression

        X = data.X[rows][:, self.cols].astype(np.float64)
        self.mean = X.mean(0)
        _, singular, vt = np.linalg.svd(X[::4] - self.mean, full_matrices=False)
        self.basis = vt[: self.k] / (singular[: self.k, None] / np.sqrt(len(X[::4])))
        names = np.char.add(data.groups[rows].astype(str), np.where(data.y[rows] == 1, "/ai", "/real"))
        self.model = LogisticRegression(max_iter=2000).fit(self.whiten(X), names)
        self.real = np.array([c.endswith("/real") for c in self.model.classes_])
        return self

    def whiten(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) @ self.basis.T

    def p_real(self, X: np.ndarray) -> np.ndarray:
        proba = self.model.predict_proba(self.whiten(X[:, self.cols].astype(np.float64)))
        return proba[:, self.real].sum(axis=1)


if __name__ == "__main__":
    main()
