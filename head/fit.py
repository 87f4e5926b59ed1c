"""From labelled vectors to a complete model: train the head, calibrate, fit the OOD detector and
choose the uncertain band, all on the training and validation splits only."""

from __future__ import annotations

import numpy as np

from head.base import DEFAULT_HEAD
from head.calibration import fit_calibrator
from head.model import HEADS, FaceauditModel
from head.ood import MahalanobisOOD
from head.thresholds import Bounds, choose_thresholds
from head.uncertainty import DEFAULT_SAMPLES


def fit_model(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    head_kind: str = DEFAULT_HEAD,
    head_params: dict | None = None,
    max_real_called_ai: float = Bounds.real_called_ai,
    max_ai_called_real: float = Bounds.ai_called_real,
    n_samples: int = DEFAULT_SAMPLES,
    info: dict | None = None,
    train_images: np.ndarray | None = None,
) -> tuple[FaceauditModel, dict]:
    """Returns the model and a report of what each step found on validation data.

    `train_images` names the image of each training row (augmented views share their image's name).
    """
    if head_kind not in HEADS:
        raise ValueError(f"unknown head {head_kind!r}; choose one of {', '.join(HEADS)}")
    head = HEADS[head_kind](**(head_params or {})).fit(X_train, y_train, X_val, y_val)
    val_logits = head.sample_logits(X_val, n_samples)
    calibrator, calibration_report = fit_calibrator(val_logits, y_val)
    ood = MahalanobisOOD().fit(X_train, train_images)
    val_prediction = head.predict(X_val, n_samples, calibrate=calibrator)
    thresholds, band = choose_thresholds(
        val_prediction.p_ai, y_val, ood.score(X_val), 1.0, max_real_called_ai, max_ai_called_real
    )
    model = FaceauditModel(head, calibrator, thresholds, ood, dict(info or {}), n_samples)
    report = {
        "calibration": calibration_report,
        "uncertain_band_on_validation": band,
        "epochs": len(head.history_["train_loss"]),
    }
    return model, report
