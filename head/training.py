"""Training plumbing both heads share: minibatches, early stopping on validation loss, thread limits."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Small-matrix training is fastest on one thread here (two made SVI steps 57x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hold_out(Z: np.ndarray, y: np.ndarray, share: float, seed: int):
    """Split off a stratified validation share when the caller gave none."""
    rng = np.random.default_rng(seed)
    val_rows = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        val_rows[rng.choice(rows, max(1, int(len(rows) * share)), replace=False)] = True
    return (Z[~val_rows], y[~val_rows]), (Z[val_rows], y[val_rows])


def early_stopping_loop(
    head,
    Z: np.ndarray,
    y: np.ndarray,
    val: tuple[np.ndarray, np.ndarray] | None,
    *,
    train_step: Callable,
    val_loss: Callable,
    snapshot: Callable,
):
    """Run epochs of shuffled minibatches; return the snapshot with the lowest validation loss.

    The schedule comes from the head's own settings (`batch_size`, `max_epochs`, `patience`, `seed`);
    losses are appended to its `history_`."""
    batch_size, max_epochs, patience, seed = head.batch_size, head.max_epochs, head.patience, head.seed
    history = head.history_
    import torch

    if val is None:
        (Z, y), val = hold_out(Z, y, 0.1, seed)
    xt, yt = torch.from_numpy(Z), torch.from_numpy(y)
    xv, yv = torch.from_numpy(val[0]), torch.from_numpy(val[1])
    rng = np.random.default_rng(seed)
    best_loss, best_state, waited = float("inf"), snapshot(), 0
    for _ in range(max_epochs):
        order = torch.from_numpy(rng.permutation(len(yt)))
        losses = [train_step(xt[idx], yt[idx]) for idx in order.split(batch_size)]
        history["train_loss"].append(float(np.mean(losses)))
        current = val_loss(xv, yv)
        history["val_loss"].append(current)
        if current < best_loss - 1e-4:
            best_loss, best_state, waited = current, snapshot(), 0
        else:
            waited += 1
            if waited >= patience:
                break
    return best_state
