"""head/: real torch and Pyro training on synthetic vectors whose answer is known."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from faceaudit.head import (
    FaceauditModel,
    MCDropoutHead,
    ModelError,
    PyroHead,
    choose_thresholds,
    decide,
    expected_calibration_error,
    fit_calibrator,
)
from faceaudit.head.fit import fit_model
from faceaudit.head.metrics import wilson_interval
from faceaudit.head.ood import MahalanobisOOD
from faceaudit.head.projection import ViewProjection, _top_directions
from faceaudit.head.thresholds import Bounds, allowed_errors, ood_cut, rates, verdict_rates

DIM = 24


def clusters(n: int, seed: int, separation: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    centre = np.zeros(DIM)
    centre[:3] = separation
    X = rng.normal(size=(n, DIM)) + np.where(y[:, None] == 1, centre, -centre) / 2
    return X.astype(np.float32), y


FAST = {"mc-dropout": dict(max_epochs=60, patience=10), "pyro-vi": dict(max_epochs=60, patience=10)}
HEADS = {"mc-dropout": MCDropoutHead, "pyro-vi": PyroHead}


@pytest.fixture(scope="module", params=list(HEADS))
def fitted(request):
    X, y = clusters(600, 0)
    Xv, yv = clusters(200, 1)
    return HEADS[request.param](**FAST[request.param]).fit(X, y, Xv, yv)


def test_separable_clusters_are_learned(fitted) -> None:
    X, y = clusters(400, 2)
    prediction = fitted.predict(X, n_samples=50)
    assert ((prediction.p_ai >= 0.5) == y).mean() >= 0.95
    assert fitted.history_["train_loss"][-1] < fitted.history_["train_loss"][0]


def test_monte_carlo_samples_differ_and_are_reproducible(fitted) -> None:
    X, _ = clusters(50, 3, separation=0.5)
    logits = fitted.sample_logits(X, n_samples=30)
    assert logits.shape == (30, 50, 2)
    assert np.std(logits[..., 1] - logits[..., 0], axis=0).mean() > 1e-3
    first, again = fitted.predict(X, 30, seed=7), fitted.predict(X, 30, seed=7)
    np.testing.assert_array_equal(first.p_ai, again.p_ai)
    assert (first.p_ai_std > 0).all()
    # Mutual information is the entropy of the mean minus the mean entropy, computed here from the
    # sampled probabilities themselves (the head's own figure is clamped at 0, so ">= 0" proves nothing).
    p = 1.0 / (1.0 + np.exp(-(logits[..., 1] - logits[..., 0]).astype(np.float64)))
    p = np.clip(p, 1e-12, 1 - 1e-12)

    def bits(q):
        return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))

    expected = bits(p.mean(0)) - bits(p).mean(0)
    np.testing.assert_allclose(fitted.predict(X, 30).mutual_info, np.maximum(expected, 0.0), atol=1e-5)
    # A row's answer does not depend on the rows beside it.
    alone = fitted.predict(X[5:6], 30, seed=7)
    np.testing.assert_allclose(alone.p_ai, first.p_ai[5:6], atol=1e-6)


def test_doubt_is_higher_between_the_clusters(fitted) -> None:
    X, _ = clusters(300, 4)
    middle = np.zeros((50, DIM), np.float32) + np.random.default_rng(5).normal(0, 0.1, (50, DIM)).astype(
        np.float32
    )
    far_side = fitted.predict(X, 50)
    between = fitted.predict(middle, 50)
    assert between.entropy.mean() > far_side.entropy.mean()


def test_a_mixture_is_its_members_sharing_the_samples() -> None:
    """Two members are the heads of seeds 3 and 4 as trained alone: the first half of the Monte Carlo
    samples are the first's networks, the second half the second's, the mean network averages their
    logits, the loss curves kept are the first's, and the stacked weights survive a save and load."""
    import torch

    X, y = clusters(400, 30)
    Xv, yv = clusters(150, 31)
    mixture = MCDropoutHead(**FAST["mc-dropout"], seed=3, members=2).fit(X, y, Xv, yv)
    alone = [MCDropoutHead(**FAST["mc-dropout"], seed=seed).fit(X, y, Xv, yv) for seed in (3, 4)]
    Xt = clusters(40, 32, separation=0.5)[0]
    mixed = mixture.sample_logits(Xt, n_samples=20, seed=5)
    firsts, seconds = (head.sample_logits(Xt, n_samples=20, seed=5) for head in alone)
    np.testing.assert_allclose(mixed[:10], firsts[:10], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mixed[10:], seconds[10:], rtol=1e-5, atol=1e-5)
    assert np.abs(firsts[10:] - seconds[10:]).max() > 0.01  # the members are not one network twice
    mean = mixture.mean_logits(torch.from_numpy(Xt)).detach().numpy()
    members = [head.mean_logits(torch.from_numpy(Xt)).detach().numpy() for head in alone]
    np.testing.assert_allclose(mean, (members[0] + members[1]) / 2, rtol=1e-5, atol=1e-5)
    assert mixture.history_ == alone[0].history_
    again = MCDropoutHead(**mixture.get_params())
    again.load_state_tensors(mixture.state_tensors())
    np.testing.assert_array_equal(again.sample_logits(Xt, 20, 5), mixed)
    with pytest.raises(ValueError, match="members"):
        MCDropoutHead(members=0)


def test_a_probe_given_columns_reads_only_those() -> None:
    """The signal lives in the first three columns; a probe given the others learns nothing of it, and
    changing the columns it was not given changes nothing it says."""
    from faceaudit.head.probe import LinearProbe

    X, y = clusters(400, 30)
    blind = LinearProbe().fit(X, y, columns=list(range(3, DIM)))
    seeing = LinearProbe().fit(X, y, columns=[0, 1, 2])
    Xt, yt = clusters(200, 31)
    assert ((seeing.p_ai(Xt) >= 0.5) == yt).mean() >= 0.95
    assert ((blind.p_ai(Xt) >= 0.5) == yt).mean() <= 0.7
    moved = Xt.copy()
    moved[:, 3:] += 5.0
    np.testing.assert_array_equal(seeing.p_ai(moved), seeing.p_ai(Xt))
    assert not np.allclose(blind.p_ai(moved), blind.p_ai(Xt))


def test_far_inputs_get_high_ood_scores() -> None:
    X, _ = clusters(500, 6)
    ood = MahalanobisOOD(n_components=8).fit(X)
    inside, _ = clusters(200, 7)
    assert (ood.score(inside) <= 1.0).mean() > 0.95  # 1.0: the training images' high percentile
    far = X[:20] + 25.0
    assert (ood.score(far) > 1.0).all()


def test_temperature_scaling_repairs_overconfidence() -> None:
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 2000)
    true_margin = rng.normal(0, 1.5, 2000) + np.where(y == 1, 1.0, -1.0)
    y = (rng.random(2000) < 1 / (1 + np.exp(-true_margin))).astype(int)
    logits = np.zeros((1, 2000, 2))
    logits[0, :, 1] = 4 * true_margin  # four times too sure
    calibrator, report = fit_calibrator(logits, y)
    assert calibrator.temperature == pytest.approx(4, rel=0.2)
    assert report["after"]["ece"] < report["before"]["ece"] / 2
    assert expected_calibration_error(calibrator(logits).mean(0), y) < 0.03


def test_thresholds_bound_real_called_ai() -> None:
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 1000)
    p = np.clip(rng.normal(np.where(y == 1, 0.75, 0.25), 0.2), 0, 1)
    thresholds, band = choose_thresholds(p, y, np.zeros(1000), 1.0, Bounds(0.01, 0.05))
    verdict = decide(p, np.zeros(1000), thresholds)
    # Shares of every face of the class, judged or not.
    assert (verdict[y == 0] == "ai_generated").mean() <= 0.01
    assert (verdict[y == 1] == "real").mean() <= 0.05
    assert 0.0 < band["coverage"] < 1.0
    assert rates(decide(p, np.zeros(1000), thresholds), y).items() <= band.items()
    ood = np.where(np.arange(1000) < 10, 99.0, 0.0)
    assert (decide(p, ood, thresholds)[:10] == "uncertain").all()


def test_the_share_is_kept_on_new_faces_not_only_on_validation() -> None:
    """k accusations among n validation faces promise (k + 1) / (n + 1) for new ones, not k / n: fitted
    over and over on 150 validation real faces, the band keeps 2% on average on fresh faces."""
    assert [allowed_errors(0.01, n) for n in (98, 99, 199, 479)] == [0, 0, 1, 3]
    assert allowed_errors(0.02, 48) == 0 and allowed_errors(0.05, 470) == 22
    rng = np.random.default_rng(8)
    bounds = Bounds(real_called_ai=0.02, ai_called_real=1.0, real_called_ai_per_source=1.0)
    y = np.r_[np.zeros(150, int), np.ones(150, int)]
    fresh_shares = []
    for _ in range(400):
        p = np.r_[rng.beta(2, 5, 150), rng.uniform(0.995, 1.0, 150)]
        thresholds, band = choose_thresholds(p, y, np.zeros(300), 1.0, bounds)
        assert band["verdicts"]["real"]["ai_generated"] <= 2 / 150  # 2 of 150, where k / n would allow 3
        fresh_shares.append(np.mean(rng.beta(2, 5, 20_000) >= thresholds.ai))
    assert 0.012 < np.mean(fresh_shares) <= 0.02


def test_the_interval_of_a_rare_share_keeps_its_promise() -> None:
    """The model card's 95% intervals: drawn over and over at 1.5% of 133 photos (FFHQ's accused share
    on the test split), Wilson's interval holds the true share about 95% of the time, where +-1.96
    standard errors holds it 85% of the time (it collapses to a point at 0 hits)."""
    rng = np.random.default_rng(3)
    hits = rng.binomial(133, 0.015, 4000)
    held = np.mean([low <= 0.015 <= high for low, high in (wilson_interval(k, 133) for k in hits)])
    assert 0.93 < held < 0.97
    low, high = wilson_interval(0, 133)
    assert low == 0.0 and high == pytest.approx(1.96**2 / (133 + 1.96**2))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_one_real_source_is_held_to_its_own_bound() -> None:
    """A pooled 1% bound lets one small real collection carry every false accusation; the per-source
    bound does not. Here collection 'studio' scores high; the pooled bound alone accuses many of it."""
    rng = np.random.default_rng(4)
    y = np.r_[np.zeros(900, int), np.ones(900, int), np.zeros(100, int)]
    p = np.r_[rng.uniform(0.0, 0.3, 900), rng.uniform(0.7, 1.0, 900), rng.uniform(0.5, 0.95, 100)]
    groups = np.array(["snapshots"] * 900 + ["fakes"] * 900 + ["studio"] * 100)
    studio = groups == "studio"
    loose = Bounds(real_called_ai=0.05, real_called_ai_per_source=1.0)
    pooled, _ = choose_thresholds(p, y, np.zeros(len(y)), 1.0, loose, groups)
    assert (decide(p, np.zeros(len(y)), pooled)[studio] == "ai_generated").mean() > 0.2
    strict = Bounds(real_called_ai=0.05, real_called_ai_per_source=0.02)
    thresholds, band = choose_thresholds(p, y, np.zeros(len(y)), 1.0, strict, groups)
    verdict = decide(p, np.zeros(len(y)), thresholds)
    assert (verdict[studio] == "ai_generated").mean() <= 0.02
    assert band["coverage"] > 0.5  # the snapshots are judged, and the fakes above the studio photos
    assert (verdict[groups == "fakes"] == "ai_generated").mean() > 0.1


def test_a_gate_that_disagrees_keeps_an_image_from_that_verdict() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 1000)
    p = np.clip(rng.normal(np.where(y == 1, 0.85, 0.15), 0.1), 0, 1)
    gate = rng.random(1000) < 0.7
    thresholds, band = choose_thresholds(p, y, np.zeros(1000), 1.0, Bounds(), ai_gate=gate)
    verdict = decide(p, np.zeros(1000), thresholds, ai_gate=gate)
    assert (verdict[~gate] != "ai_generated").all() and (verdict[gate] == "ai_generated").any()
    assert {**rates(verdict, y), "verdicts": verdict_rates(verdict, y)} == band
    thresholds, band = choose_thresholds(p, y, np.zeros(1000), 1.0, Bounds(), real_gate=gate)
    verdict = decide(p, np.zeros(1000), thresholds, real_gate=gate)
    assert (verdict[~gate] != "real").all() and (verdict[gate] == "real").any()
    assert {**rates(verdict, y), "verdicts": verdict_rates(verdict, y)} == band


def test_a_check_holds_back_the_share_asked_for_on_new_faces() -> None:
    """The looks-real and probe-agrees cuts: on 500 validation scores the cut holds back about the
    share asked of fresh scores from the same distribution, and on five it holds back nothing."""
    from faceaudit.head.thresholds import held_back_cut

    rng = np.random.default_rng(7)
    held = [np.mean(rng.random(5000) < held_back_cut(rng.random(500), 0.1)) for _ in range(200)]
    assert 0.09 <= np.mean(held) <= 0.1
    assert held_back_cut(rng.random(5), 0.1) == 0.0  # 1 / 6 > 10%: no cut at all
    assert held_back_cut(np.arange(1.0, 11.0), 0.1) == 1.0  # the smallest of 10: 1 / 11 <= 10%
    assert held_back_cut(np.arange(1.0, 20.0), 0.1) == 2.0  # the 2nd smallest of 19: 2 / 20 <= 10%


def test_the_ood_cut_flags_the_share_asked_for() -> None:
    scores = np.random.default_rng(6).gamma(2.0, 1.0, 1000)
    cut = ood_cut(scores, 0.01)
    assert np.mean(scores > cut) <= 0.01 and np.mean(scores > cut) >= 0.008
    assert ood_cut(np.array([]), 0.01) == float("inf")


@pytest.fixture(scope="module")
def trained_and_saved(tmp_path_factory) -> tuple:
    X, y = clusters(500, 10)
    Xv, yv = clusters(200, 11)
    # One copy of each image moved along the last column: the projection is saved and loaded too.
    copies = X + np.random.default_rng(13).normal(0, 2, (len(X), 1)) * np.eye(DIM, dtype=np.float32)[-1]
    groups = np.where(y == 1, "gan/ai", np.where(np.arange(len(y)) % 2, "camera/real", "phone/real"))
    model, report = fit_model(
        np.vstack([X, copies]),
        np.concatenate([y, y]),
        Xv,
        yv,
        "mc-dropout",
        FAST["mc-dropout"],
        n_samples=40,
        info={"embedding": {"fingerprint": "a" * 64, "backbone": "test"}},
        # Three groups: scikit-learn keeps a multinomial model's weights in Fortran order, which a save
        # must not scramble.
        train_images=np.tile(np.arange(len(X)).astype(str), 2),
        train_groups=np.concatenate([groups, groups]),
        group_families={"gan/ai": "stylegan", "camera/real": "camera", "phone/real": "phone"},
        train_views=np.repeat([0, 1], len(X)),
        directions=2,
    )
    assert model.projection is not None and model.projection.directions == 2
    assert report["calibration"]["method"] in ("temperature", "platt")
    assert report["uncertain_band_on_validation"]["ood_flagged"] <= 0.01
    folder = tmp_path_factory.mktemp("model")
    model.save(folder)
    return model, folder


@pytest.fixture(scope="module")
def saved_model(trained_and_saved: tuple) -> Path:
    return trained_and_saved[1]


def test_model_round_trip_gives_identical_scores(trained_and_saved: tuple) -> None:
    """The model as trained, in memory, against the model read back from its folder: every figure and
    verdict the same, so a save that drops or rounds anything (weights, calibration, thresholds, the
    OOD detector) fails here."""
    X, _ = clusters(64, 12)
    X[:4] += 40.0  # far from the training clusters: the OOD score and its scale matter too
    before, folder = trained_and_saved
    after = FaceauditModel.load(folder)
    first, second = before.score(X), after.score(X)
    for name in ("p_ai", "p_ai_std", "entropy", "mutual_info"):
        np.testing.assert_array_equal(getattr(first.prediction, name), getattr(second.prediction, name))
    np.testing.assert_allclose(first.ood_score, second.ood_score, rtol=1e-6)
    assert list(first.verdict) == list(second.verdict) and list(first.reason) == list(second.reason)
    assert list(first.nearest_family) == list(second.nearest_family)
    np.testing.assert_allclose(first.nearest_similarity, second.nearest_similarity, rtol=1e-5)
    assert set(first.verdict) <= {"ai_generated", "real", "uncertain"} and "uncertain" in set(first.verdict)
    assert after.thresholds == before.thresholds and after.calibrator == before.calibrator
    np.testing.assert_array_equal(before.project(X), after.project(X))


def test_the_gradient_path_projects_as_scoring_does(trained_and_saved: tuple) -> None:
    """What a gradient map differentiates sees the projection too: a move along the column the copies
    moved along leaves its P(AI) where it was."""
    import torch

    model = FaceauditModel.load(trained_and_saved[1])
    X = 0.2 * clusters(32, 14)[0]  # near the boundary, where P(AI) is not saturated
    moved = X + 10 * np.eye(DIM, dtype=np.float32)[-1]  # without the projection: up to 0.17 apart
    p, p_moved = (model.mean_p_ai(torch.from_numpy(v)).detach().numpy() for v in (X, moved))
    np.testing.assert_allclose(p, p_moved, atol=1e-3)
    assert np.ptp(p) > 0.5  # the clusters themselves still move it


def test_the_moves_of_a_copy_are_projected_out_and_the_face_is_kept() -> None:
    """Views that differ from their image along one column: after the projection, an image moved
    further along it than any view was is the image again, and a move along another column is kept."""
    rng = np.random.default_rng(20)
    X = rng.normal(size=(300, DIM)).astype(np.float32)
    nuisance = np.eye(DIM, dtype=np.float32)[5]
    views = X + rng.normal(0, 1.5, (300, 1)).astype(np.float32) * nuisance
    ids = np.tile(np.arange(300).astype(str), 2)
    projection = ViewProjection.fit(np.vstack([X, views]), ids, np.repeat([0, 1], 300), k=1)
    image = X[:5]
    np.testing.assert_allclose(projection.apply(image + 8 * nuisance), projection.apply(image), atol=0.05)
    other = np.eye(DIM, dtype=np.float32)[6]
    moved = projection.apply(image + 3 * other) - projection.apply(image)
    np.testing.assert_allclose(moved, 3 * np.tile(other, (5, 1)), atol=0.05)
    # As many directions as asked, but never more than a quarter of the columns.
    assert (
        ViewProjection.fit(np.vstack([X, views]), ids, np.repeat([0, 1], 300), k=100).directions == DIM // 4
    )


def test_the_fast_search_finds_the_directions_the_exact_svd_finds() -> None:
    """On a matrix big enough for the randomized search (moves with a spread-out spectrum, as the
    views' are), its directions span what the exact SVD's top directions span."""
    rng = np.random.default_rng(24)
    spectrum = np.geomspace(30.0, 1.0, 40)  # no gap between the kept directions and the next ones
    moves = (rng.normal(size=(700, 40)) * spectrum) @ np.linalg.qr(rng.normal(size=(500, 40)))[0].T
    moves += rng.normal(0, 0.5, moves.shape)
    exact = np.linalg.svd(moves, full_matrices=False)[2][:16]
    fast = _top_directions(moves.astype(np.float32), 16)
    assert fast.shape == (16, 500)
    cosines = np.linalg.svd(exact @ fast.T, compute_uv=False)
    assert cosines.min() > 0.999


def test_a_shortcut_the_views_move_along_cannot_make_a_verdict() -> None:
    """AI faces sit further along a column that copies also move (as halved faces move toward AI in
    the real vectors): a head fitted without the projection raises a real face's P(AI) when it moves
    along it; with the view directions projected out, the move changes nothing."""
    rng = np.random.default_rng(21)
    X, y = clusters(600, 22, separation=1.5)
    shortcut = np.eye(DIM, dtype=np.float32)[-1]
    X += np.where(y[:, None] == 1, 3.0, -3.0) * shortcut
    views = X + rng.normal(0, 3.0, (len(X), 1)).astype(np.float32) * shortcut
    Xv, yv = clusters(300, 23, separation=1.5)
    Xv += np.where(yv[:, None] == 1, 3.0, -3.0) * shortcut
    recipe = dict(
        train_images=np.tile(np.arange(len(X)).astype(str), 2), train_views=np.repeat([0, 1], len(X))
    )
    rows, labels = np.vstack([X, views]), np.concatenate([y, y])
    plain, _ = fit_model(rows, labels, Xv, yv, "mc-dropout", FAST["mc-dropout"], **recipe)
    kept, _ = fit_model(rows, labels, Xv, yv, "mc-dropout", FAST["mc-dropout"], **recipe, directions=1)
    real = Xv[yv == 0]
    shifted = real + 6.0 * shortcut
    assert plain.score(shifted).prediction.p_ai.mean() - plain.score(real).prediction.p_ai.mean() > 0.25
    np.testing.assert_allclose(
        kept.score(shifted).prediction.p_ai, kept.score(real).prediction.p_ai, atol=0.02
    )
    p_ai = kept.score(Xv).prediction.p_ai  # the face's own evidence still counts
    assert p_ai[yv == 1].mean() - p_ai[yv == 0].mean() > 0.4


def test_a_pickle_payload_is_refused(saved_model: Path, tmp_path: Path) -> None:
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(saved_model, tampered)

    class Exploit:
        def __reduce__(self):
            return (exec, ("open('/tmp/faceaudit-pwned', 'w').write('x')",))

    (tampered / "model.safetensors").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ModelError, match="not a valid safetensors file"):
        FaceauditModel.load(tampered)
    assert not Path("/tmp/faceaudit-pwned").exists()


def test_vectors_of_another_embedding_are_refused(saved_model: Path) -> None:
    model = FaceauditModel.load(saved_model)
    with pytest.raises(ModelError, match="trained on vectors of embedding aaaaaaaaaaaaaaaa"):
        model.check_fingerprint("b" * 64)


def test_the_built_in_model_knows_its_families_and_was_measured_on_those_it_never_saw() -> None:
    """The shipped model: scale-neutral inputs, augmented views, eleven sources grouped into families,
    every family and real collection left out measured, small enough to ship, loadable by this code."""
    from faceaudit.flows.models import DEFAULT_MODEL_DIR
    from faceaudit.head.model import FaceauditModel

    model = FaceauditModel.load(DEFAULT_MODEL_DIR)
    assert json.loads(model.info["embedding"]["preprocess"])["mode"] == "scale-face"
    assert model.info["augmentation"]["views"] >= 1
    families = model.info["training_data"]["families"]
    assert set(families["ai"]) == {"stylegan", "stable-diffusion", "t2i-tiles"}
    assert len(model.nearest.groups_) == 13  # eleven sources, two of them with both classes
    metrics = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())
    assert set(metrics["leave_one_family_out"]["folds"]) == set(families["ai"])
    assert len(metrics["leave_one_real_collection_out"]["folds"]) == 6
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size < 5 * 1024 * 1024


def test_head_parameters_are_checked_against_the_head_that_takes_them() -> None:
    from faceaudit.head.model import check_head_params

    check_head_params("mc-dropout", {"hidden": (64, 64), "members": 5, "seed": 3})
    check_head_params("pyro-vi", {"hidden": [32, 16], "prior_scale": 0.5})
    for kind, params, reason in [
        ("pyro-vi", {"members": 2}, "'members' does not apply to pyro-vi"),
        ("mc-dropout", {"prior_scale": 1.0}, "'prior_scale' does not apply to mc-dropout"),
        ("mc-dropout", {"dropout": 1.5}, "'dropout' cannot be 1.5"),
        ("mc-dropout", {"hidden": (64,)}, "'hidden' cannot be"),
        ("ridge", {}, "unknown head 'ridge'"),
    ]:
        with pytest.raises(ValueError, match=reason):
            check_head_params(kind, params)
