"""A trained faceaudit model: head, calibration, thresholds, OOD detector and where they came from.

On disk, a model folder holds `model.safetensors` (every array; loading it runs no code) and
`model.json` (head kind and hyperparameters, classes, embedding fingerprint, calibration, thresholds,
training-data hash, metrics), plus metrics.json and plots written by the train flow.
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import numpy as np

from faceaudit.data.atomic import replacing, write_text
from faceaudit.data.labels import CLASSES
from faceaudit.data.text import first_line
from faceaudit.head.base import Head, HeadKind
from faceaudit.head.calibration import Calibrator
from faceaudit.head.mc_dropout import MCDropoutHead
from faceaudit.head.nearest import NearestSource
from faceaudit.head.ood import MahalanobisOOD
from faceaudit.head.probe import PROBE_READS, LinearProbe
from faceaudit.head.projection import ViewProjection
from faceaudit.head.pyro_head import PyroHead
from faceaudit.head.thresholds import Thresholds, decide, uncertain_reason
from faceaudit.head.uncertainty import DEFAULT_SAMPLES, SAMPLE_RANGE, Prediction

HEADS: dict[str, type[Head]] = {MCDropoutHead.kind: MCDropoutHead, PyroHead.kind: PyroHead}
assert set(HEADS) == set(get_args(HeadKind)), "HeadKind must name every head"
# 3: a nearest-source classifier and a linear probe beside the head; the band is fitted on validation.
# 4: an optional projection (head/projection.py) applied to every vector before any part sees it; a
# reader of format 3 would ignore it and judge wrongly, so the number moved.
FORMAT_VERSION = 4
READABLE_FORMATS = (3, 4)
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"


class ModelError(Exception):
    """A model folder is missing, damaged or made for other vectors; one-line reason."""


@dataclass
class Scores:
    """Everything a verdict rests on, per row."""

    prediction: Prediction
    ood_score: np.ndarray
    verdict: np.ndarray
    reason: np.ndarray  # why an `uncertain` verdict is one: 'band' or 'ood'
    nearest_family: np.ndarray  # the training family the vector looks most like ('' without one)
    nearest_source: np.ndarray  # the likeliest training group ("source/class") of that family
    nearest_similarity: np.ndarray  # the family's probability under the nearest-source classifier


@dataclass
class FaceauditModel:
    head: Head
    calibrator: Calibrator
    thresholds: Thresholds
    ood: MahalanobisOOD
    info: dict = field(default_factory=dict)
    n_samples: int = DEFAULT_SAMPLES
    nearest: NearestSource | None = None
    probe: LinearProbe | None = None
    projection: ViewProjection | None = None

    @property
    def fingerprint(self) -> str:
        return self.info["embedding"]["fingerprint"]

    def check_fingerprint(self, fingerprint: str) -> None:
        """Refuse vectors made by another backbone, preprocessing or pooling."""
        if fingerprint != self.fingerprint:
            raise ModelError(
                f"this model was trained on vectors of embedding {self.fingerprint[:16]} "
                f"({self.info['embedding'].get('backbone', '?')}), but the store's are {fingerprint[:16]}; "
                "embed with the model's backbone, preprocessing and pooling, or train a model for these"
            )

    @property
    def view_directions(self) -> int:
        """How many view directions every vector loses before any part sees it (0: none)."""
        return self.projection.directions if self.projection is not None else 0

    def project(self, X: np.ndarray) -> np.ndarray:
        """The vectors as every part of the model saw them in training."""
        return X if self.projection is None else self.projection.apply(X)

    def score(self, X: np.ndarray, n_samples: int | None = None, seed: int = 0) -> Scores:
        X = self.project(X)
        prediction = self.head.predict(X, n_samples or self.n_samples, seed, calibrate=self.calibrator)
        ood_score = self.ood.score(X)
        real_gate = None
        if self.nearest is not None:
            whitened = self.ood.whiten(X)
            family, source, similarity = self.nearest.nearest(whitened)
            if self.thresholds.looks_real > 0:
                real_gate = self.nearest.looks_real(whitened) >= self.thresholds.looks_real
        else:
            family = source = np.full(len(X), "", dtype=object)
            similarity = np.full(len(X), np.nan)
        ai_gate = None
        if self.probe is not None and self.thresholds.probe_agrees > 0:
            ai_gate = self.probe.p_ai(X) >= self.thresholds.probe_agrees
        p_ai = prediction.p_ai
        return Scores(
            prediction,
            ood_score,
            decide(p_ai, ood_score, self.thresholds, ai_gate, real_gate),
            uncertain_reason(p_ai, ood_score, self.thresholds, ai_gate, real_gate),
            family,
            source,
            similarity,
        )

    def mean_p_ai(self, pooled):
        """Calibrated P(AI) of the head's mean network on torch vectors, differentiable: what a gradient
        map differentiates (the Monte Carlo mean has no useful gradient through dropout masks)."""
        if self.projection is not None:
            pooled = self.projection.torch_apply(pooled)
        logits = self.head.mean_logits(pooled)
        return self.calibrator.torch_p_ai(logits[:, 1] - logits[:, 0])

    # ---- files ---------------------------------------------------------------------------------

    def save(self, folder: Path | str) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        parts = {
            "head": self.head,
            "ood": self.ood,
            "probe": self.probe,
            "nearest": self.nearest,
            "projection": self.projection,
        }
        tensors = {
            f"{name}.{key}": np.ascontiguousarray(value)  # C order: safetensors writes raw buffers
            for name, part in parts.items()
            if part is not None
            for key, value in part.state_tensors().items()
        }
        with replacing(folder / WEIGHTS_FILE) as scratch:
            save_file(tensors, str(scratch))
        card = {
            **self.info,
            "format_version": FORMAT_VERSION,
            "head": {"kind": self.head.kind, "params": _jsonable(self.head.get_params())},
            "classes": list(CLASSES),
            "calibration": self.calibrator.describe(),
            "thresholds": self.thresholds.describe(),
            "ood": {
                "kind": "mahalanobis-ppca",
                "scale": self.ood.scale_,
                "params": _jsonable({k: getattr(self.ood, k) for k in ("n_components", "percentile")}),
            },
            "nearest": self.nearest.describe() if self.nearest is not None else None,
            "probe": (
                {"kind": "logistic", "C": self.probe.C, "reads": self.probe.reads}
                if self.probe is not None
                else None
            ),
            "projection": self.projection.describe() if self.projection is not None else None,
            "n_samples": self.n_samples,
        }
        write_text(folder / CARD_FILE, json.dumps(card, indent=2))

    @classmethod
    def load(cls, folder: Path | str) -> FaceauditModel:
        """The model in `folder`, its two files each read once (see `read_files`)."""
        folder = Path(folder)
        return cls.from_files(folder, *read_files(folder))

    @classmethod
    def from_files(cls, folder: Path, card_bytes: bytes, weights: bytes) -> FaceauditModel:
        """The model whose model.json and model.safetensors hold these bytes; ModelError with a
        one-line reason for anything a model cannot be. `folder` names it in messages."""
        from safetensors import SafetensorError
        from safetensors.numpy import load as load_tensors

        try:
            card = json.loads(card_bytes)
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting no card has
            raise ModelError(f"{folder / CARD_FILE} is not valid JSON: {exc}") from None
        try:
            tensors = load_tensors(weights)
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(
                f"{folder / WEIGHTS_FILE} is not a valid safetensors file ({exc}); refusing it"
            ) from None
        if not isinstance(card, dict):
            raise ModelError(f"{folder / CARD_FILE}: not a JSON object; refusing this model")
        if card.get("format_version") not in READABLE_FORMATS:
            raise ModelError(
                f"{folder} is a model of format {card.get('format_version')!r}; this faceaudit reads formats "
                f"{' and '.join(map(str, READABLE_FORMATS))}: train it again with this version"
            )
        _check_card(card, folder / CARD_FILE)
        kind = card["head"]["kind"]
        try:
            params = card["head"]["params"]
            head = HEADS[kind](**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
            head.load_state_tensors(_part(tensors, "head"))
            ood = MahalanobisOOD(**card["ood"]["params"])
            ood.load_state_tensors(_part(tensors, "ood"), float(card["ood"]["scale"]))
            calibration = card["calibration"]
            calibrator = Calibrator(calibration["method"], calibration["slope"], calibration["intercept"])
            thresholds = Thresholds(**card["thresholds"])
            nearest = None
            if card.get("nearest") is not None:
                nearest = NearestSource.load(card["nearest"], _part(tensors, "nearest"))
            probe = None
            if card.get("probe") is not None:
                reads = card["probe"].get("reads", "all")
                probe = LinearProbe.load(float(card["probe"]["C"]), _part(tensors, "probe"), reads)
            projection = None
            if card.get("projection") is not None:
                projection = ViewProjection.load(_part(tensors, "projection"))
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise ModelError(f"{folder} is incomplete or damaged: {exc!r}"[:300]) from None
        kept = ("head", "calibration", "thresholds", "ood", "nearest", "probe", "projection")
        info = {k: v for k, v in card.items() if k not in kept}
        samples = int(card.get("n_samples", DEFAULT_SAMPLES))
        model = cls(head, calibrator, thresholds, ood, info, samples, nearest, probe, projection)
        model.check_weights(folder)
        return model

    def check_weights(self, folder: Path) -> None:
        """Score one zero vector of the card's dimension: weights whose shapes disagree with the card
        (a hidden size edited, a file from another model) are refused here, before any work."""
        dim = int(self.info["embedding"].get("dim", self.head.n_features_in_))
        try:
            scores = self.score(np.zeros((1, dim), np.float32), n_samples=2)
        except Exception as exc:  # any failure here means the two files do not belong together
            detail = first_line(exc)
            raise ModelError(
                f"{folder}: the weights do not fit {CARD_FILE} (embedding dim {dim}, head "
                f"{self.head.get_params().get('hidden', '?')}): {detail[:200]}"
            ) from None
        if not np.isfinite(scores.prediction.p_ai).all():
            raise ModelError(f"{folder}: the weights give no finite P(AI); the model is damaged")


# Far above any model faceaudit writes (the built-in one: 8 KB of card, 3.7 MB of weights), far below
# what would strain memory; a bigger file is refused before it is read.
MAX_CARD_BYTES = 64 * 2**20
MAX_WEIGHTS_BYTES = 2 * 2**30


def read_files(folder: Path) -> tuple[bytes, bytes]:
    """model.json's and model.safetensors' bytes, each read once: everything a run decides and records
    comes from these same bytes, even if the folder is rewritten meanwhile (`train --model-out`)."""
    from faceaudit.data.nofollow import UnsafePath, read_regular  # here: head/ knows no files otherwise

    if not folder.is_dir():
        raise ModelError(f"{folder} is not a faceaudit model folder (no such folder)")
    try:
        return read_regular(folder / CARD_FILE, MAX_CARD_BYTES), read_regular(
            folder / WEIGHTS_FILE, MAX_WEIGHTS_BYTES
        )
    except UnsafePath as exc:
        raise ModelError(
            f"{folder} is not a usable faceaudit model folder (needs {CARD_FILE} and {WEIGHTS_FILE}): {exc}"
        ) from None


def _part(tensors: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """The tensors saved under `name.` (head, ood, probe, nearest), without the prefix."""
    prefix = name + "."
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def _number(value) -> bool:
    """A JSON number that is a finite float (10**400 written out as digits is not)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# What each head hyperparameter may be; a value outside makes a model that judges nothing (dropout 1.5
# zeroes every unit, so every image gets one P(AI) with no spread).
_HEAD_PARAMS = {
    "hidden": lambda v: isinstance(v, list) and len(v) == 2 and all(_whole(n, 1, 65536) for n in v),
    "dropout": lambda v: _number(v) and 0.0 <= v < 1.0,
    "prior_scale": lambda v: _number(v) and v > 0,
    "lr": lambda v: _number(v) and v > 0,
    "weight_decay": lambda v: _number(v) and v >= 0,
    "batch_size": lambda v: _whole(v, 1, 2**20),
    "max_epochs": lambda v: _whole(v, 1, 10**6),
    "patience": lambda v: _whole(v, 1, 10**6),
    "val_samples": lambda v: _whole(v, 1, 10**5),
    "seed": lambda v: _whole(v, 0, 2**63),
    "members": lambda v: _whole(v, 1, 1024),
}


def check_head_params(kind: str, params: dict) -> None:
    """Refuse, in one line, hyperparameters the chosen head does not take or values it cannot use. A
    model card is held to it when loaded, and `train` calls it before any image is embedded: otherwise
    a deployment's typo surfaces as a TypeError an hour into `train`, after the embedding."""
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
    taken = list(inspect.signature(HEADS[kind]).parameters)
    for name, value in params.items():
        if name not in taken:
            raise ValueError(f"head parameter {name!r} does not apply to {kind}; it takes {', '.join(taken)}")
        as_json = list(value) if isinstance(value, tuple) else value
        if not _HEAD_PARAMS[name](as_json):
            raise ValueError(f"head parameter {name!r} cannot be {value!r}"[:200])


assert all(set(inspect.signature(head).parameters) <= set(_HEAD_PARAMS) for head in HEADS.values()), (
    "every head hyperparameter needs its rule in _HEAD_PARAMS"
)


def _check_card(card: dict, path: Path) -> None:
    """Refuse, in one line, a model.json whose values cannot be right: wrong types, thresholds out of
    order or range, sample counts no run could use, an unknown head."""

    def refuse(what: str) -> ModelError:
        return ModelError(f"{path}: {what}; refusing this model")

    if not isinstance(card, dict):
        raise refuse("not a JSON object")
    for section in ("head", "thresholds", "calibration", "ood", "embedding"):
        if not isinstance(card.get(section), dict):
            raise refuse(f"'{section}' must be an object")
    if card["head"].get("kind") not in HEADS:
        raise refuse(f"unknown head kind {card['head'].get('kind')!r} (known: {', '.join(HEADS)})")
    if not isinstance(card["head"].get("params"), dict):
        raise refuse("'head.params' must be an object")
    try:
        check_head_params(card["head"]["kind"], card["head"]["params"])
    except ValueError as exc:
        raise refuse(str(exc)) from None
    described = card["embedding"].get(
        "describe", {"preprocess": {"mode": ""}, "pooling": {"kind": "", "layers": []}}
    )
    if not (
        isinstance(described, dict)
        and isinstance(described.get("preprocess"), dict)
        and isinstance(described["preprocess"].get("mode"), str)
        and isinstance(described.get("pooling"), dict)
        and isinstance(described["pooling"].get("kind"), str)
        and isinstance(described["pooling"].get("layers"), list)
        and all(_whole(n, 0, 1000) for n in described["pooling"]["layers"])
        and isinstance(card["embedding"].get("backbone"), str)
    ):
        raise refuse("'embedding' must name its backbone, and its description its preprocessing and pooling")
    thresholds = card["thresholds"]
    for name in (
        "ai",
        "real",
        "ood",
        "looks_real",
        "probe_agrees",
        "max_real_called_ai",
        "max_ai_called_real",
    ):
        if name in thresholds and not _number(thresholds[name]):
            raise refuse(f"threshold '{name}' must be a finite number, not {thresholds[name]!r}"[:200])
    ai, real = thresholds.get("ai", 0.5), thresholds.get("real", 0.5)
    if not 0.0 <= real <= ai <= 1.0:
        raise refuse(f"thresholds must satisfy 0 <= real <= ai <= 1 (real {real}, ai {ai})")
    if not 0.0 <= thresholds.get("looks_real", 0.0) <= 1.0:
        raise refuse(f"the looks-real threshold must lie within 0-1, not {thresholds['looks_real']}")
    if not 0.0 <= thresholds.get("probe_agrees", 0.0) <= 1.0:
        raise refuse(f"the probe-agrees threshold must lie within 0-1, not {thresholds['probe_agrees']}")
    if thresholds.get("probe_agrees", 0.0) > 0 and not isinstance(card.get("probe"), dict):
        raise refuse("a probe-agrees threshold needs the linear probe ('probe')")
    probe = card.get("probe")
    if isinstance(probe, dict) and probe.get("reads", "all") not in PROBE_READS:
        raise refuse(f"the linear probe reads {probe.get('reads')!r}: one of {', '.join(PROBE_READS)}"[:200])
    if thresholds.get("looks_real", 0.0) > 0 and not isinstance(card.get("nearest"), dict):
        raise refuse("a looks-real threshold needs the nearest-source classifier ('nearest')")
    if thresholds.get("ood", 1.0) <= 0:
        raise refuse(f"the OOD threshold must be above 0, not {thresholds['ood']}")
    samples = card.get("n_samples", DEFAULT_SAMPLES)
    low, high = SAMPLE_RANGE
    if not isinstance(samples, int) or isinstance(samples, bool) or not low <= samples <= high:
        raise refuse(f"'n_samples' must be a whole number from {low} to {high}, not {samples!r}")
    for name in ("slope", "intercept"):
        value = card["calibration"].get(name)
        if not _number(value) or not np.isfinite(value):
            raise refuse(f"calibration '{name}' must be a finite number, not {value!r}")
    dim = card["embedding"].get("dim", 1)
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise refuse(f"'embedding.dim' must be a positive whole number, not {dim!r}")
    if not isinstance(card["embedding"].get("fingerprint"), str):
        raise refuse("'embedding.fingerprint' must be text")


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
