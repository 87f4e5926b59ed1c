"""The uncertain band fitted against left-out sources (head/abstention.py), on made-up judgements."""

from __future__ import annotations

import numpy as np

from head.abstention import Bounds, Judged, choose_abstention
from head.thresholds import decide, uncertain_reason


def seen_images(rng: np.random.Generator, n: int = 400) -> Judged:
    """A model on its own sources: confident and mostly right, OOD scores below 1."""
    y = rng.integers(0, 2, n)
    p = np.clip(np.where(y == 1, 0.9, 0.1) + rng.normal(0, 0.08, n), 0, 1)
    return Judged(p, rng.uniform(0.2, 0.9, n), y)


def unseen_generator(rng: np.random.Generator, n: int = 200) -> Judged:
    """A new generator's fakes, which the model calls real with confidence, but which look unusual."""
    return Judged(rng.uniform(0.0, 0.2, n), rng.uniform(1.5, 3.0, n), np.ones(n, dtype=int))


def test_a_confidently_wrong_unseen_source_is_held_back_by_the_ood_threshold() -> None:
    rng = np.random.default_rng(0)
    seen, fold = seen_images(rng), unseen_generator(rng)
    thresholds, report = choose_abstention(seen, [fold], Bounds(unseen_ai_called_real=0.10))
    verdict = decide(fold.p_ai, fold.ood, thresholds)
    assert (verdict == "real").mean() <= 0.10  # without the OOD cut, 100% would pass as real
    assert report["unseen_folds"][0]["ai"]["real"] <= 0.10
    # ... while the model's own images are still judged: the cut sits between the two groups.
    assert report["validation"]["coverage"] > 0.9
    assert thresholds.ood >= 0.9
    held_back = verdict == "uncertain"
    assert held_back.mean() >= 0.9
    assert set(uncertain_reason(fold.p_ai, fold.ood, thresholds)[held_back]) == {"ood"}


def test_an_unseen_source_half_inside_the_usual_ood_range_moves_the_cut() -> None:
    """Fakes whose OOD scores straddle 1.0: the usual threshold lets about half through as real; fitting
    against the fold is what keeps the bound."""
    rng = np.random.default_rng(1)
    seen = seen_images(rng)
    fakes = Judged(rng.uniform(0.0, 0.2, 300), rng.uniform(0.6, 1.4, 300), np.ones(300, dtype=int))
    usual, _ = choose_abstention(seen, [], Bounds())
    assert usual.ood == 1.0
    assert (decide(fakes.p_ai, fakes.ood, usual) == "real").mean() > 0.3
    fitted, _ = choose_abstention(seen, [fakes], Bounds(unseen_ai_called_real=0.10))
    assert (decide(fakes.p_ai, fakes.ood, fitted) == "real").mean() <= 0.10
    assert fitted.ood < usual.ood


def test_an_unseen_source_that_cannot_be_told_apart_widens_the_band() -> None:
    """Real photos of a new camera that look ordinary (low OOD) but score high: only the band can help."""
    rng = np.random.default_rng(2)
    seen = seen_images(rng)
    camera = Judged(rng.uniform(0.5, 0.8, 300), rng.uniform(0.2, 0.9, 300), np.zeros(300, dtype=int))
    thresholds, _ = choose_abstention(seen, [camera], Bounds(unseen_real_called_ai=0.02))
    assert (decide(camera.p_ai, camera.ood, thresholds) == "ai_generated").mean() <= 0.02
    assert thresholds.ai > 0.78
    reasons = uncertain_reason(camera.p_ai, camera.ood, thresholds)
    assert {"band"} <= set(reasons)


def test_a_bound_no_real_verdict_can_keep_leaves_no_real_verdicts() -> None:
    rng = np.random.default_rng(3)
    seen = seen_images(rng)
    # Fakes that look exactly like the seen real faces, and a bound of zero on calling them real.
    real = seen.y == 0
    twins = Judged(seen.p_ai[real], seen.ood[real], np.ones(int(real.sum()), dtype=int))
    thresholds, _ = choose_abstention(seen, [twins], Bounds(unseen_ai_called_real=0.0))
    assert (decide(twins.p_ai, twins.ood, thresholds) == "real").sum() == 0
    assert (decide(seen.p_ai, seen.ood, thresholds) == "real").sum() == 0
    # The AI side is unaffected: seen fakes are still caught.
    assert (decide(seen.p_ai, seen.ood, thresholds)[seen.y == 1] == "ai_generated").mean() > 0.9
