"""Bayesian heads on stored vectors: MC-dropout and Pyro variational MLPs, calibration, the uncertain
band, out-of-distribution scores and model folders. Knows vectors only: no images, no Prefect."""

import importlib

# Loaded on first use, so that light parts (bounds, thresholds) import without torch and Pyro.
_EXPORTS = {
    "Head": "faceaudit.head.base",
    "Calibrator": "faceaudit.head.calibration",
    "expected_calibration_error": "faceaudit.head.calibration",
    "fit_calibrator": "faceaudit.head.calibration",
    "MCDropoutHead": "faceaudit.head.mc_dropout",
    "HEADS": "faceaudit.head.model",
    "FaceauditModel": "faceaudit.head.model",
    "ModelError": "faceaudit.head.model",
    "Scores": "faceaudit.head.model",
    "MahalanobisOOD": "faceaudit.head.ood",
    "NearestSource": "faceaudit.head.nearest",
    "PyroHead": "faceaudit.head.pyro_head",
    "VERDICTS": "faceaudit.head.thresholds",
    "Bounds": "faceaudit.head.thresholds",
    "Thresholds": "faceaudit.head.thresholds",
    "choose_thresholds": "faceaudit.head.thresholds",
    "decide": "faceaudit.head.thresholds",
    "Prediction": "faceaudit.head.uncertainty",
    "summarize": "faceaudit.head.uncertainty",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'head' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = [
    "HEADS",
    "VERDICTS",
    "Bounds",
    "Calibrator",
    "FaceauditModel",
    "Head",
    "MCDropoutHead",
    "MahalanobisOOD",
    "ModelError",
    "NearestSource",
    "Prediction",
    "PyroHead",
    "Scores",
    "Thresholds",
    "choose_thresholds",
    "decide",
    "expected_calibration_error",
    "fit_calibrator",
    "summarize",
]
