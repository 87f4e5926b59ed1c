"""Labelled vectors for training and evaluation: scan a labelled folder, embed what is missing, and
line up vectors, labels, groups and hash splits (and, when asked, augmented views of the training
images, each in its image's split)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from faceaudit.data.families import Families, FamiliesError
from faceaudit.data.records import ImageRecord
from faceaudit.data.split import split_of
from faceaudit.embed.augment import Augmentation
from faceaudit.embed.runner import Views
from faceaudit.embed.spec import EmbeddingSpec
from faceaudit.embed.store import FeatureStore
from faceaudit.flows.embed_flow import EmbedSummary, embed_new_images, embed_records, scan_folder
from faceaudit.flows.orchestration import call


class DataError(Exception):
    """The folder cannot be used for training or evaluation; one-line reason."""


@dataclass
class LabelledSet:
    """One row per labelled image, then one per augmented view (`view` > 0) of the training images."""

    records: list[ImageRecord]
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    splits: np.ndarray
    embed_summary: EmbedSummary
    view: np.ndarray | None = None
    families: Families = field(default_factory=lambda: Families.for_folder(None))

    def __post_init__(self) -> None:
        if self.view is None:
            self.view = np.zeros(len(self.y), dtype=np.int64)

    def subset(self, mask: np.ndarray) -> LabelledSet:
        return LabelledSet(
            [r for r, keep in zip(self.records, mask, strict=True) if keep],
            self.X[mask],
            self.y[mask],
            self.groups[mask],
            self.splits[mask],
            self.embed_summary,
            self.view[mask],
            self.families,
        )

    def originals_in(self, split: str) -> np.ndarray:
        """Mask of the images themselves (no augmented views) in one hash split: what calibration,
        thresholds and tests are measured on."""
        return (self.splits == split) & (self.view == 0)

    def family_names(self) -> list[str]:
        """The generator family (AI rows) or real collection (real rows) of each row."""
        return self.families.label_each(self.groups, self.y)

    def group_names(self) -> np.ndarray:
        """ "source/class" of each row: the training groups a vector can look like."""
        return np.array([f"{g}/{'ai' if v else 'real'}" for g, v in zip(self.groups, self.y, strict=True)])

    def describe_families(self) -> dict:
        """The families and real collections of the sources in this set (data/families.py)."""
        present = {
            kind: {str(g) for g, v in zip(self.groups, self.y, strict=True) if v == label}
            for kind, label in (("ai", 1), ("real", 0))
        }
        return self.families.describe(present)

    def group_families(self) -> dict[str, str]:
        """ "source/class" -> family name, for every group present."""
        return dict(zip(self.group_names().tolist(), self.family_names(), strict=True))

    def image_ids(self) -> np.ndarray:
        """The content hash of the image behind each row (a view carries its image's hash)."""
        return np.array([r.sha256 for r in self.records])

    def data_hash(self) -> str:
        """sha256 over the sorted (content hash, label) pairs: names the exact training data."""
        pairs = sorted(
            f"{r.sha256}:{r.label}" for r, v in zip(self.records, self.view, strict=True) if v == 0
        )
        return hashlib.sha256("\n".join(pairs).encode()).hexdigest()

    def counts(self) -> dict:
        """Images (not views) per group/class and split."""
        out: dict = {}
        for group, label, split, view in zip(self.groups, self.y, self.splits, self.view, strict=True):
            if view:
                continue
            key = f"{group}/{'ai' if label else 'real'}"
            out.setdefault(key, {}).setdefault(str(split), 0)
            out[key][str(split)] += 1
        return out


def load_labelled(
    data_dir: str,
    spec: EmbeddingSpec,
    store_dir: str,
    batch_size: int,
    workers: int,
    augmentation: Augmentation | None = None,
    views: int = 0,
) -> LabelledSet:
    """Every labelled image's vector (embedding what is missing), plus `views` augmented views of each
    training-split image when `augmentation` is given."""
    records = call(scan_folder, data_dir)
    summary = embed_records(records, spec, store_dir, data_dir, batch_size, workers)
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
    try:
        families = Families.for_folder(data_dir)
    except FamiliesError as exc:
        raise DataError(str(exc)) from None
    data = LabelledSet(chosen, X, y, groups, splits, summary, families=families)
    if augmentation is None or views <= 0:
        return data
    return _with_views(data, spec, store_dir, batch_size, workers, augmentation, views)


def _with_views(
    data: LabelledSet,
    spec: EmbeddingSpec,
    store_dir: str,
    batch_size: int,
    workers: int,
    augmentation: Augmentation,
    views: int,
) -> LabelledSet:
    """Append the training images' augmented views, embedding those the store does not hold yet."""
    training = np.flatnonzero(data.splits == "train")
    rows = np.repeat(training, views)
    numbers = np.tile(np.arange(1, views + 1), len(training)).tolist()
    records = [data.records[i] for i in rows]
    keys = Views(augmentation, numbers).keys(records)
    store = FeatureStore(store_dir, spec.fingerprint)
    missing = np.flatnonzero(~store.contains(keys)) if keys else np.array([], dtype=int)
    if len(missing):
        todo = Views(augmentation, [numbers[i] for i in missing])
        failed = call(
            embed_new_images, [records[i] for i in missing], spec, str(store_dir), batch_size, workers, todo
        ).failed
        if failed:  # the image itself decoded, so a view fails only if the file changed since
            raise DataError(f"{len(failed)} augmented views could not be made: {next(iter(failed.values()))}")
        store.refresh()
    return LabelledSet(
        data.records + records,
        np.concatenate([data.X, store.get(keys)]) if keys else data.X,
        np.concatenate([data.y, data.y[rows]]),
        np.concatenate([data.groups, data.groups[rows]]),
        np.concatenate([data.splits, data.splits[rows]]),
        data.embed_summary,
        np.concatenate([data.view, np.asarray(numbers, dtype=np.int64)]),
        data.families,
    )
