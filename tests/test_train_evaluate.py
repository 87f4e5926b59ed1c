"""`faceaudit train` and `evaluate` end to end on generated images with a tiny real backbone."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import PER_CLASS, faceaudit


def test_train_writes_a_complete_model_folder(trained: dict) -> None:
    model = trained["model"]
    card = json.loads((model / "model.json").read_text())
    assert card["head"]["kind"] == "mc-dropout"
    assert card["classes"] == ["real", "ai"]
    assert len(card["embedding"]["fingerprint"]) == 64
    assert card["thresholds"]["ai"] >= 0.5 >= card["thresholds"]["real"]
    assert card["calibration"]["method"] in ("temperature", "platt")
    assert len(card["training_data"]["sha256"]) == 64
    metrics = json.loads((model / "metrics.json").read_text())
    for key in (
        "accuracy",
        "roc_auc",
        "ece",
        "brier",
        "nll",
        "per_class",
        "confusion_matrix",
        "coverage",
        "selective_accuracy",
        "real_called_ai_rate",
        "mutual_info_auroc_wrong",
        "groups",
        "linear_probe",
    ):
        assert key in metrics
    assert set(metrics["groups"]) == {"alpha", "beta"}
    assert metrics["accuracy"] >= 0.9
    plots = {p.name for p in (model / "plots").iterdir()}
    assert {
        "roc.png",
        "precision_recall.png",
        "reliability.png",
        "confusion_matrix.png",
        "risk_coverage.png",
        "training_loss.png",
    } <= plots
    assert "test: accuracy" in trained["stdout"]
    # The band is fitted on validation; each family and each real collection left out is measured.
    assert card["abstention"]["fitted_on"] == "validation"
    assert metrics["validation"]["uncertain_band_on_validation"]["ood_flagged"] <= 0.01 + 1e-9
    # Sources the built-in table does not know are families (and collections) of their own.
    assert set(metrics["leave_one_family_out"]["folds"]) == {"alpha", "beta"}
    assert set(metrics["leave_one_real_collection_out"]["folds"]) == {"alpha", "beta"}
    fold = metrics["leave_one_family_out"]["folds"]["alpha"]
    assert fold["real"] is None and fold["ai"]["n"] == PER_CLASS and fold["sources"] == ["alpha"]
    families = {"alpha": ["alpha"], "beta": ["beta"]}
    assert card["training_data"]["families"] == {"ai": families, "real": families}
    assert set(metrics["perturbations"]) == {"resize:0.5", "upscale:2", "upscale:4"}
    assert 0 <= metrics["perturbations"]["upscale:2"]["verdict_agreement"] <= 1
    assert card["augmentation"]["views"] == 2 and card["augmentation"]["spec"]["style_chance"] > 0
    # The four view directions asked for are projected out, and the card says so.
    assert card["projection"] == {"kind": "view-directions", "directions": 4, "fitted_on": "training views"}
    assert card["head"]["params"]["members"] == 2
    assert "nearest-source classifier: 4 (the directions" in (model / "README.md").read_text()
    assert {"leave_one_family_out.png", "leave_one_real_collection_out.png"} <= plots
    assert "generator families left out (2 folds)" in trained["stdout"]
    assert "real collections left out (2 folds)" in trained["stdout"]
    # The card is written from the figures: the worst family left out is named with its share.
    readme = (model / "README.md").read_text()
    worst = metrics["leave_one_family_out"]["summary"]
    assert f"with {worst['worst_ai_called_real_fold']} left out of training" in readme
    assert "## Generator families never trained on" in readme and "## Rescaled copies" in readme
    # Beside the kept verdicts, the accused real photos of each rescaled copy, from the same figures.
    as_they_are = metrics["groups"]["alpha"]["verdicts"]["real"]["ai_generated"]
    halved = metrics["perturbations"]["resize:0.5"]["groups"]["alpha"]["verdicts"]["real"]["ai_generated"]
    assert f"| alpha | {as_they_are:.1%} | {halved:.1%} |" in readme
    # How far the costliest figures could move, counted from the same figures.
    ai = metrics["verdicts"]["ai"]
    assert f"AI faces called real: {round(ai['real'] * ai['n'])} of {ai['n']} (" in readme


def test_the_ai_verdicts_second_opinion_reads_only_the_texture_columns(trained: dict) -> None:
    """The saved probe weighs the patch spread (std) of every layer and pass and nothing else: the
    CLS and mean columns, which carry a portrait's styling, have weight 0."""
    import numpy as np

    from faceaudit.flows.models import spec_of
    from faceaudit.head.model import FaceauditModel

    model = FaceauditModel.load(trained["model"])
    spec = spec_of(model)
    texture = spec.pooling.columns_of("std", spec.backbone.hidden_size)
    assert 0 < len(texture) < spec.dim
    weighed = set(np.flatnonzero(model.probe.coef_).tolist())
    assert weighed and weighed <= set(texture)
    assert model.probe.reads == "texture"  # said on the card, and what `evaluate`'s folds retrain


def test_leave_one_source_out_reports_every_source_single_class_ones_too(
    trained: dict, tmp_path: Path
) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    # A third source holding real photos only, like utkface or ciplab: it must be judged, not crash.
    for i, image in enumerate(sorted((data / "alpha" / "real").iterdir())[:12]):
        (data / "gamma" / "real").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, data / "gamma" / "real" / f"g{i:03d}{image.suffix}")
        (data / "alpha" / "real" / image.name).unlink()
    out = tmp_path / "loso"
    result = faceaudit(
        "evaluate",
        str(data),
        "--leave-one-source-out",
        "--model",
        str(trained["model"]),
        "--out",
        str(out),
        "--store",
        str(trained["store"]),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "metrics.json").read_text())["leave_one_source_out"]
    assert set(report["folds"]) == {"alpha", "beta", "gamma"}
    gamma = report["folds"]["gamma"]
    assert gamma["ai"] is None and gamma["roc_auc"] is None and gamma["real"]["n"] == 12
    shares = gamma["real"]
    assert abs(shares["ai_generated"] + shares["real"] + shares["uncertain"] - 1) < 1e-9
    for fold in (report["folds"]["alpha"], report["folds"]["beta"]):
        assert fold["roc_auc"] is not None and fold["real"] and fold["ai"]
    assert report["summary"]["folds"] == 3
    assert (out / "plots" / "leave_one_source_out.png").is_file()
    assert "left out gamma (gamma): coverage" in result.stdout


def test_families_declared_by_the_data_folder_are_left_out_whole(trained: dict, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    (data / "families.json").write_text(
        json.dumps(
            {"ai": {"grids": ["alpha", "beta"]}, "real": {"smooth-a": ["alpha"], "smooth-b": ["beta"]}}
        )
    )
    out = tmp_path / "folds"
    common = ["--model", str(trained["model"]), "--store", str(trained["store"])]
    result = faceaudit("evaluate", str(data), "--leave-one-real-collection-out", "--out", str(out), *common)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    report = metrics["leave_one_real_collection_out"]
    assert set(report["folds"]) == {"smooth-a", "smooth-b"}
    assert report["folds"]["smooth-a"]["ai"] is None and report["folds"]["smooth-a"]["real"]["n"] == PER_CLASS
    assert metrics["families"]["ai"] == {"grids": ["alpha", "beta"]}
    assert "left out smooth-a (alpha): coverage" in result.stdout
    assert "real collections left out (2 folds): real photos called AI " in result.stdout
    # Leaving the only family out leaves no AI faces to train on: a one-line reason, exit 2.
    result = faceaudit("evaluate", str(data), "--leave-one-family-out", "--out", str(out), *common)
    assert result.returncode == 2 and "no family of" in result.stderr and "Traceback" not in result.stderr
    (data / "families.json").write_text('{"ai": {"grids": "alpha"}}')
    result = faceaudit("evaluate", str(data), "--leave-one-family-out", "--out", str(out), *common)
    assert result.returncode == 2 and 'family "grids" must list source folder names' in result.stderr


def test_evaluate_reports_groups_and_perturbations(trained: dict) -> None:
    out = trained["base"] / "eval"
    result = faceaudit(
        "evaluate",
        str(trained["data"]),
        "--model",
        str(trained["model"]),
        "--out",
        str(out),
        "--store",
        str(trained["store"]),
        "--perturb",
        "jpeg:75,blur:3",
        "--samples",
        "20",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 4 * PER_CLASS
    assert set(metrics["groups"]) == {"alpha", "beta"}
    assert set(metrics["perturbations"]) == {"jpeg:75", "blur:3"}
    # A strong blur wipes out the checkerboard the tiny model relies on: the robustness check must show it
    # (training views are blurred by at most 1.2 px, so a 3 px blur is beyond what the model learnt).
    assert metrics["perturbations"]["blur:3"]["accuracy"] < metrics["accuracy"]
    assert not list(trained["data"].rglob("*jpeg*"))  # perturbed copies never land beside the data


def test_evaluate_refuses_a_model_for_other_vectors(trained: dict, tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "model"
    shutil.copytree(trained["model"], other)
    card = json.loads((other / "model.json").read_text())
    card["embedding"]["fingerprint"] = "0" * 64
    (other / "model.json").write_text(json.dumps(card))
    result = faceaudit("evaluate", str(trained["data"]), "--model", str(other), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "trained on vectors of embedding 0000000000000000" in result.stderr


def test_bad_perturbation_is_a_one_line_error(tmp_path: Path) -> None:
    result = faceaudit("evaluate", str(tmp_path), "--out", str(tmp_path / "o"), "--perturb", "jpeg:abc")
    assert result.returncode == 2 and "needs a number after the colon" in result.stderr
