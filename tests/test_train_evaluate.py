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
