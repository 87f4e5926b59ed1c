"""Bayesian heads on stored vectors: MC-dropout and Pyro variational MLPs, calibration, the uncertain
band, out-of-distribution scores and model folders. Knows vectors only: no images, no Prefect."""

from head.base import Head
from head.calibration import Calibrator, expected_calibration_error, fit_calibrator
from head.mc_dropout import MCDropoutHead
from head.model import HEADS, FaceauditModel, ModelError, Scores
from head.ood import MahalanobisOOD
from head.pyro_head import PyroHead
from head.thresholds import VERDICTS, Thresholds, choose_thresholds, decide
from head.uncertainty import Prediction, summarize

__all__ = [
    "HEADS",
    "VERDICTS",
    "Calibrator",
    "FaceauditModel",
    "Head",
    "MCDropoutHead",
    "MahalanobisOOD",
    "ModelError",
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
