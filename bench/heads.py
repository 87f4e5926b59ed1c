"""Head training and prediction speed, printed (issue targets: training on 2,500 vectors under 2 minutes,
`predict` with 200 samples over 10,000 vectors under 2 s, on 2 cores).

Vectors are synthetic with the default embedding's width (6,912), two overlapping classes, so that
the heads train for a realistic number of epochs. A reference loop of 200 separate forward calls with
dropout on (the naive way) is timed beside the vectorised MC-dropout `predict`.

    python bench/heads.py [--train 2500] [--predict 10000] [--samples 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceaudit.head import MCDropoutHead, PyroHead


def vectors(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    direction = np.zeros(dim)
    direction[:64] = 0.25  # the signal lives in a few dimensions, as in real vectors
    X = rng.normal(size=(n, dim)) + np.outer(np.where(y == 1, 1.0, -1.0), direction)
    return X.astype(np.float32), y


def naive_mc_dropout(head: MCDropoutHead, X: np.ndarray, samples: int) -> float:
    """The reference way: 200 forward passes of the train-mode network, one after another."""
    import torch

    net = head._network(X.shape[1])
    state = {}
    for index, (name, part) in enumerate([(f"{i}", p) for i in (0, 3, 6) for p in ("weight", "bias")]):
        key = {"weight": "w", "bias": "b"}[part] + str(index // 2 + 1)
        state[f"{name}.{part}"] = torch.from_numpy(head.weights_[key])
    net.load_state_dict(state)
    net.train()
    Z = torch.from_numpy(head._standardize(X))
    started = time.perf_counter()
    with torch.no_grad():
        for _ in range(samples):
            torch.softmax(net(Z), -1)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=int, default=2500)
    parser.add_argument("--predict", type=int, default=10000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--dim", type=int, default=6912)
    args = parser.parse_args()
    X, y = vectors(args.train, args.dim, 0)
    Xv, yv = vectors(args.train // 6, args.dim, 1)
    Xp, _ = vectors(args.predict, args.dim, 2)
    print(f"{args.train} training vectors of {args.dim}, {args.predict} to predict, {args.samples} samples")
    for head in (MCDropoutHead(), PyroHead()):
        started = time.perf_counter()
        head.fit(X, y, Xv, yv)
        fit_seconds = time.perf_counter() - started
        head.predict(Xp[:100], args.samples)  # warm-up
        started = time.perf_counter()
        prediction = head.predict(Xp, args.samples)
        predict_seconds = time.perf_counter() - started
        accuracy = ((head.predict(Xv, args.samples).p_ai >= 0.5) == yv).mean()
        print(
            f"  {head.kind:10}  fit {fit_seconds:6.1f} s ({len(head.history_['train_loss'])} epochs, "
            f"validation accuracy {accuracy:.3f}; target < 120 s)   "
            f"predict {predict_seconds:5.2f} s (target < 2 s); mean MI {prediction.mutual_info.mean():.4f}"
        )
        if isinstance(head, MCDropoutHead):
            naive = naive_mc_dropout(head, Xp, args.samples)
            print(
                f"  {'':10}  naive loop of {args.samples} forward calls: {naive:5.2f} s "
                f"(vectorised is {naive / predict_seconds:.1f}x faster)"
            )


if __name__ == "__main__":
    main()
