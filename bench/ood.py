"""Which out-of-distribution score tells a source of faces never trained on from the ones trained on?

For each source of ../shared/data left out: fit each candidate on the training split of the other
sources, then measure ROC-AUC between the left-out source's images (all of them) and the test split
of the training sources. 1.0: every image of the new source scores higher; 0.5: no better than chance.
Candidates, each on the whole default vector or on layer 4's third of it:

- ppca: the shipped score (Mahalanobis under a probabilistic-PCA covariance, 64 directions);
- class-ppca: one such Gaussian per class (32 directions), the distance to the nearer;
- source-class-ppca: one per (source, class) seen in training, the nearest;
- knn: mean cosine distance to the 10 nearest training vectors (standardised, 256 principal directions).

Needs the store filled by `faceaudit embed ../shared/data --store STORE` (default embedding).

    python bench/ood.py [--data ../shared/data] [--store STORE]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from images import bench_parser  # noqa: E402

from faceaudit.data.records import scan  # noqa: E402
from faceaudit.data.split import split_of  # noqa: E402
from faceaudit.embed.spec import make_spec  # noqa: E402
from faceaudit.embed.store import FeatureStore  # noqa: E402
from faceaudit.flows.defaults import default_store_dir  # noqa: E402
from faceaudit.head.ood import _Fitted  # noqa: E402


def ppca(X: np.ndarray, k: int = 64):
    fitted = _Fitted.fit(X.astype(np.float64), k)
    return lambda Z: fitted.distance(Z.astype(np.float64))


def nearest_of_groups(X: np.ndarray, labels: np.ndarray, k: int = 32):
    fitted = [_Fitted.fit(X[labels == label].astype(np.float64), k) for label in np.unique(labels)]
    return lambda Z: np.min([f.distance(Z.astype(np.float64)) for f in fitted], axis=0)


def knn(X: np.ndarray, k: int = 10, dims: int = 256):
    from sklearn.utils.extmath import randomized_svd

    mean, spread = X.mean(0), X.std(0) + 1e-6
    Z0 = (X - mean) / spread
    _, _, vt = randomized_svd(Z0 - Z0.mean(0), dims, random_state=0)
    bank = Z0 @ vt.T
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)

    def score(Z: np.ndarray) -> np.ndarray:
        query = ((Z - mean) / spread) @ vt.T
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        return 1 - np.sort(query @ bank.T, axis=1)[:, -k:].mean(1)

    return score


def main() -> None:
    from sklearn.metrics import roc_auc_score

    parser = bench_parser(__doc__)
    parser.add_argument("--store", default=str(default_store_dir()))
    args = parser.parse_args()

    spec = make_spec()
    records = [r for r in scan(args.data) if r.ok and r.label]
    X = FeatureStore(args.store, spec.fingerprint).get([r.sha256 for r in records])
    y = np.array([r.label == "ai" for r in records], dtype=int)
    groups = np.array([r.group for r in records])
    splits = np.array([split_of(r.sha256) for r in records])
    width = spec.backbone.hidden_size * len(spec.pooling.kind.split("+"))
    blocks = {"all layers": slice(None), "layer 4": slice(0, width)}
    results: dict[str, dict[str, float]] = {}
    for source in sorted(set(groups)):
        train = (groups != source) & (splits == "train")
        test = (groups != source) & (splits == "test")
        held = groups == source
        for block_name, block in blocks.items():
            Xb = X[:, block]
            candidates = {
                "ppca": ppca(Xb[train]),
                "class-ppca": nearest_of_groups(Xb[train], y[train]),
                "source-class-ppca": nearest_of_groups(
                    Xb[train], np.char.add(groups[train], y[train].astype(str))
                ),
                "knn": knn(Xb[train]),
            }
            for name, score in candidates.items():
                inside, outside = score(Xb[test]), score(Xb[held])
                truth = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
                auc = roc_auc_score(truth, np.r_[inside, outside])
                results.setdefault(f"{name} ({block_name})", {})[source] = auc
        print(f"left out {source}: done", flush=True)
    sources = sorted(set(groups))
    print("\n| OOD score | " + " | ".join(sources) + " | mean | worst |")
    print("|---|" + "---|" * (len(sources) + 2))
    for name, by_source in results.items():
        values = [by_source[s] for s in sources]
        cells = " | ".join(f"{v:.3f}" for v in values)
        print(f"| {name} | {cells} | {np.mean(values):.3f} | {min(values):.3f} |")


if __name__ == "__main__":
    main()
