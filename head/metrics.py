"""The numbers `train` and `evaluate` write to metrics.json, overall and per group (source)."""

from __future__ import annotations

import numpy as np

from faceaudit.head.calibration import expected_calibration_error, nll
from faceaudit.head.thresholds import rates, verdict_rates
from faceaudit.head.uncertainty import Prediction


def classification_metrics(y: np.ndarray, prediction: Prediction, verdict: np.ndarray) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

    y = np.asarray(y)
    p = prediction.p_ai
    predicted = (p >= 0.5).astype(int)
    both = len(np.unique(y)) == 2
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=[0, 1], zero_division=0
    )
    wrong = predicted != y
    out = {
        "n": len(y),
        "accuracy": float((predicted == y).mean()),
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "ece": expected_calibration_error(p, y),
        "brier": float(np.mean((p - y) ** 2)),
        "nll": nll(p, y),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(("real", "ai"))
        },
        "confusion_matrix": {
            "labels": ["real", "ai"],
            "rows_true_columns_predicted": confusion_matrix(y, predicted, labels=[0, 1]).tolist(),
        },
        **rates(verdict, y),
        "verdicts": verdict_rates(verdict, y),
        "mutual_info_auroc_wrong": (
            float(roc_auc_score(wrong, prediction.mutual_info)) if 0 < wrong.sum() < len(y) else None
        ),
        "mean_mutual_info": float(prediction.mutual_info.mean()),
    }
    return out


def metrics_by_group(y: np.ndarray, prediction: Prediction, verdict: np.ndarray, groups: np.ndarray) -> dict:
    """Overall metrics with a block per group under `groups`."""
    out = classification_metrics(y, prediction, verdict)
    out["groups"] = {}
    for name in sorted({str(g) for g in groups}):
        mask = np.array([str(g) == name for g in groups])
        out["groups"][name] = classification_metrics(y[mask], prediction.take(mask), verdict[mask])
    return out


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Where a share of `hits` in `n` could lie on more images like these (95% by default). Wilson's
    score interval, because the shares that matter most here (real photos accused) sit near 0, where
    the textbook +-1.96 standard errors runs below zero and claims certainty that 2 of 133 does not give."""
    if n <= 0:
        return (0.0, 1.0)
    share = hits / n
    spread = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    centre = share + z * z / (2 * n)
    scale = 1 + z * z / n
    return (float(max(0.0, (centre - spread) / scale)), float(min(1.0, (centre + spread) / scale)))
