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
    # Two sources: the recipe was also trained with each left out, and the band fitted against both.
    assert set(metrics["leave_one_source_out"]["folds"]) == {"alpha", "beta"}
    assert card["abstention"]["sources_left_out"] == ["alpha", "beta"]
    assert card["augmentation"]["views"] == 2
    assert "leave_one_source_out.png" in plots
    assert "left-out sources (2 folds)" in trained["stdout"]


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
    assert "left out gamma: coverage" in result.stdout


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
