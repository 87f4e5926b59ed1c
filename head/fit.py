"""From labelled vectors to a complete model: train the head, calibrate, fit the OOD detector, the
nearest-source classifier and the uncertain band, all on the training and validation splits only."""

from __future__ import annotations

import numpy as np

from faceaudit.head.base import DEFAULT_HEAD
from faceaudit.head.calibration import fit_calibrator
from faceaudit.head.model import HEADS, FaceauditModel
from faceaudit.head.nearest import NearestSource
from faceaudit.head.ood import MahalanobisOOD
from faceaudit.head.probe import LinearProbe
from faceaudit.head.projection import ViewProjection
from faceaudit.head.thresholds import Bounds, Thresholds, choose_thresholds, held_back_cut, ood_cut
from faceaudit.head.uncertainty import DEFAULT_SAMPLES


def fit_model(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    head_kind: str = DEFAULT_HEAD,
    head_params: dict | None = None,
    bounds: Bounds | None = None,
    n_samples: int = DEFAULT_SAMPLES,
    info: dict | None = None,
    train_images: np.ndarray | None = None,
    train_groups: np.ndarray | None = None,
    val_sources: np.ndarray | None = None,
    group_families: dict[str, str] | None = None,
    texture_columns: list[int] | None = None,
    train_views: np.ndarray | None = None,
    directions: int = 0,
) -> tuple[FaceauditModel, dict]:
    """Returns the model and a report of what each step found on validation data.

    `train_images` names the image of each training row (augmented views share their image's name);
    `train_groups` its "source/class" and `group_families` each group's family (for the nearest-source
    column); `val_sources` the source of each validation row (each real source is held to its own bound);
    `texture_columns` the texture columns of the vector, all the linear probe reads (when None: all);
    `train_views` each training row's view number (0: the image itself) and `directions` how many of
    the directions the views move vectors along are projected out of every vector first (0, or no
    views: none).
    """
    if head_kind not in HEADS:
        raise ValueError(f"unknown head {head_kind!r}; choose one of {', '.join(HEADS)}")
    bounds = bounds or Bounds()
    projection = None
    raw_val = X_val
    if directions > 0 and train_views is not None and (np.asarray(train_views) > 0).any():
        if train_images is None:
            raise ValueError("projecting out view directions needs each training row's image")
        images, views = np.asarray(train_images), np.asarray(train_views)
        projection = ViewProjection.fit(X_train, images, views, directions)
        X_train, X_val = projection.apply(X_train), projection.apply(X_val)
    head = HEADS[head_kind](**(head_params or {})).fit(X_train, y_train, X_val, y_val)
    val_logits = head.sample_logits(X_val, n_samples)
    calibrator, calibration_report = fit_calibrator(val_logits, y_val)
    ood = MahalanobisOOD().fit(X_train, train_images)
    nearest = None
    if train_groups is not None:
        groups = np.asarray(train_groups, dtype=str)
        families = group_families or {g: g for g in set(groups.tolist())}
        nearest = NearestSource().fit(ood.whiten(X_train), groups, families)
    probe = LinearProbe(reads="all" if texture_columns is None else "texture")
    probe.fit(X_train, y_train, texture_columns)
    model = FaceauditModel(
        head, calibrator, Thresholds(), ood, dict(info or {}), n_samples, nearest, probe, projection
    )
    report = {
        "calibration": calibration_report,
        "uncertain_band_on_validation": fit_band(model, raw_val, y_val, val_sources, bounds),
        "epochs": len(head.history_["train_loss"]),
    }
    return model, report


def fit_band(
    model: FaceauditModel,
    X_val: np.ndarray,
    y_val: np.ndarray,
    val_sources: np.ndarray | None,
    bounds: Bounds,
    ood_floor: float = 0.0,
) -> dict:
    """Set `model.thresholds` on validation vectors: the OOD threshold (flagging at most
    `bounds.ood_flagged` of them, and never below 1.0 or `ood_floor`), the looks-real and probe-agrees
    thresholds, then the band. Returns what the band does on validation."""
    X_val = model.project(X_val)
    prediction = model.head.predict(X_val, model.n_samples, calibrate=model.calibrator)
    val_ood = model.ood.score(X_val)
    real_gate, looks_real = None, 0.0
    if model.nearest is not None and bounds.real_held_back > 0 and (y_val == 0).any():
        # A real verdict needs the face to look like a known real collection at least as much as all
        # but `real_held_back` of the validation real photos do.
        likeness = model.nearest.looks_real(model.ood.whiten(X_val))
        looks_real = held_back_cut(likeness[y_val == 0], bounds.real_held_back)
        real_gate = likeness >= looks_real
    ai_gate, probe_agrees = None, 0.0
    if model.probe is not None and bounds.ai_held_back > 0 and (y_val == 1).any():
        # An AI verdict needs the linear probe to give at least what all but `ai_held_back` of the
        # validation AI faces get from it.
        second = model.probe.p_ai(X_val)
        probe_agrees = held_back_cut(second[y_val == 1], bounds.ai_held_back)
        ai_gate = second >= probe_agrees
    # Never below 1.0, where the scale puts the furthest training faces (head/ood.py): on a small
    # validation split the top 1% is a handful of ordinary faces.
    t_ood = max(ood_cut(val_ood, bounds.ood_flagged), 1.0, ood_floor)
    thresholds, band = choose_thresholds(
        prediction.p_ai, y_val, val_ood, t_ood, bounds, val_sources, ai_gate, real_gate
    )
    thresholds.looks_real, thresholds.probe_agrees = looks_real, probe_agrees
    model.thresholds = thresholds
    band["ood_flagged"] = float(np.mean(val_ood > thresholds.ood))
    return band
