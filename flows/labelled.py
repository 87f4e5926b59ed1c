"""Labelled vectors for training and evaluation: scan a labelled folder, embed what is missing, and
line up vectors, labels, groups and hash splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from data.records import ImageRecord
from data.split import split_of
from embed.spec import EmbeddingSpec
from embed.store import FeatureStore
from flows.embed_flow import EmbedSummary, embed_records, scan_folder
from flows.orchestration import call


class DataError(Exception):
    """The folder cannot be used for training or evaluation; one-line reason."""


@dataclass
class LabelledSet:
    records: list[ImageRecord]
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    splits: np.ndarray
    embed_summary: EmbedSummary

    def subset(self, mask: np.ndarray) -> LabelledSet:
        return LabelledSet(
            [r for r, keep in zip(self.records, mask, strict=True) if keep],
            self.X[mask],
            self.y[mask],
            self.groups[mask],
            self.splits[mask],
            self.embed_summary,
        )

    def data_hash(self) -> str:
        """sha256 over the sorted (content hash, label) pairs: names the exact training data."""
        pairs = sorted(f"{r.sha256}:{r.label}" for r in self.records)
        return hashlib.sha256("\n".join(pairs).encode()).hexdigest()

    def counts(self) -> dict:
        out: dict = {}
        for group, label, split in zip(self.groups, self.y, self.splits, strict=True):
            key = f"{group}/{'ai' if label else 'real'}"
            out.setdefault(key, {}).setdefault(str(split), 0)
            out[key][str(split)] += 1
        return out


def load_labelled(
    data_dir: str, spec: EmbeddingSpec, store_dir: str, batch_size: int, workers: int
) -> LabelledSet:
    records = call(scan_folder, data_dir)
    summary = embed_records(records, spec, store_dir, batch_size, workers)
    summary.input_dir = data_dir
    labelled: dict[str, ImageRecord] = {}
    conflicting: set[str] = set()
    for record in records:
        if not record.ok or record.label is None:
            continue
        seen = labelled.get(record.sha256)
        if seen is not None and seen.label != record.label:
            conflicting.add(record.sha256)
        labelled.setdefault(record.sha256, record)
    chosen = [r for h, r in labelled.items() if h not in conflicting]
    if not chosen:
        raise DataError(
            f"no labelled images under {data_dir}: put them in folders named like real* and ai*/fake*"
        )
    y = np.array([1 if r.label == "ai" else 0 for r in chosen])
    if len(np.unique(y)) < 2:
        raise DataError(
            f"{data_dir} holds only one class ({chosen[0].label}); both real and AI images are needed"
        )
    X = FeatureStore(store_dir, spec.fingerprint).get([r.sha256 for r in chosen])
    groups = np.array([r.group or "(none)" for r in chosen])
    splits = np.array([split_of(r.sha256) for r in chosen])
    return LabelledSet(chosen, X, y, groups, splits, summary)
