"""Bayesian heads on stored vectors: MC-dropout and Pyro variational MLPs, calibration, the uncertain
band, out-of-distribution scores and model folders. Knows vectors only: no images, no Prefect."""

import importlib

# Loaded on first use, so that light parts (bounds, thresholds) import without torch and Pyro.
_EXPORTS = {
    "Head": "head.base",
    "Calibrator": "head.calibration",
    "expected_calibration_error": "head.calibration",
    "fit_calibrator": "head.calibration",
    "MCDropoutHead": "head.mc_dropout",
    "HEADS": "head.model",
    "FaceauditModel": "head.model",
    "ModelError": "head.model",
    "Scores": "head.model",
    "MahalanobisOOD": "head.ood",
    "NearestSource": "head.nearest",
    "PyroHead": "head.pyro_head",
    "VERDICTS": "head.thresholds",
    "Bounds": "head.thresholds",
    "Thresholds": "head.thresholds",
    "choose_thresholds": "head.thresholds",
    "decide": "head.thresholds",
    "Prediction": "head.uncertainty",
    "summarize": "head.uncertainty",
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
