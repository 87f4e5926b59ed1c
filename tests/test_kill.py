"""Kill -9 the real `faceaudit embed` process at random moments, then finish: nothing is lost or doubled."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from faceaudit.data import scan
from faceaudit.embed.spec import make_spec
from faceaudit.embed.store import FeatureStore
from tests import warm
from tests.conftest import hash_rows, kill_after_progress, make_labelled_folder

ROOT = Path(__file__).resolve().parent.parent


def embed_command(folder: Path, store: Path, backbone: Path) -> list[str]:
    return [
        *warm.CLI,
        "embed",
        str(folder),
        "--store",
        str(store),
        "--backbone",
        str(backbone),
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--no-progress",
    ]


def batches(store: FeatureStore) -> set[str]:
    return {p.name for p in store.folder.glob("batch-*.h5*")} if store.folder.exists() else set()


def test_kill_nine_five_times_then_finish(tiny_vit: Path, tmp_path: Path) -> None:
    folder = make_labelled_folder(tmp_path / "images", per_class=100)
    hashes = [r.sha256 for r in scan(folder)]
    fingerprint = make_spec(str(tiny_vit)).fingerprint
    rng = random.Random(20261122)

    warm.run(embed_command(folder, tmp_path / "clean", tiny_vit), cwd=ROOT, check=True, capture_output=True)
    clean = FeatureStore(tmp_path / "clean", fingerprint)

    store = FeatureStore(tmp_path / "killed", fingerprint)
    interrupted = 0
    for _ in range(5):
        wanted, sliver = rng.randint(1, 6), rng.uniform(0.0, 0.02)
        interrupted += kill_after_progress(
            embed_command(folder, tmp_path / "killed", tiny_vit), lambda: batches(store), wanted, sliver
        )
        store.refresh()
        assert set(store.hashes()) <= set(hashes)  # the store opens after every kill
    assert interrupted >= 3, "the runs finished before they could be killed; the test proves nothing"
    assert 0 < len(store) < len(hashes) or interrupted < 5

    finish = warm.run(
        embed_command(folder, tmp_path / "killed", tiny_vit), cwd=ROOT, capture_output=True, text=True
    )
    assert finish.returncode == 0, finish.stderr
    store.refresh()
    rows = hash_rows(store.files())
    assert sorted(rows) == sorted(hashes)  # each image exactly once, none missing
    assert not [p for p in store.folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("batch-")]
    difference = np.abs(store.get(hashes) - clean.get(hashes)).max()
    assert difference <= 1e-5
