"""The embedding loop: read and decode in DataLoader workers while the model runs, write each batch.

Composed like clip-retrieval's inference: a reader (`DecodedImages`, run by the DataLoader), a mapper
(`Embedder`: backbone forward + pooling) and a writer (the store's `StoreWriter`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from faceaudit.data.decode import DEFAULT_MAX_PIXELS, UnreadableImage, decode_image
from faceaudit.data.lifetime import die_with_parent
from faceaudit.data.records import ImageRecord, read_scanned
from faceaudit.embed.augment import Augmentation
from faceaudit.embed.backbone import Backbone
from faceaudit.embed.pooling import zoom_box, zoom_input
from faceaudit.embed.spec import EmbeddingSpec
from faceaudit.embed.store import FeatureStore


@dataclass
class Decoded:
    """One item from the reader: a preprocessed image, or the reason it has none."""

    index: int
    pixels: np.ndarray | None
    error: str | None


@dataclass(frozen=True)
class Views:
    """Augmented views to embed instead of the images themselves: view `numbers[i]` of `records[i]`."""

    augmentation: Augmentation
    numbers: Sequence[int]

    def keys(self, records: Sequence[ImageRecord]) -> list[str]:
        return [self.augmentation.key(r.sha256, n) for r, n in zip(records, self.numbers, strict=True)]


class DecodedImages:
    """A map-style dataset over records: reads, verifies, decodes and preprocesses one file per item
    (or, given `views`, draws that item's augmented view of the file before preprocessing)."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        spec: EmbeddingSpec,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        views: Views | None = None,
    ) -> None:
        self.records = records
        self.preprocess = spec.preprocess
        self.max_pixels = max_pixels
        self.views = views

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Decoded:
        record = self.records[index]
        try:
            data = read_scanned(record)
            if self.views is None:
                image = decode_image(data, self.max_pixels, self.preprocess.draft_size())
            else:  # a view is drawn from the full-resolution image
                image = decode_image(data, self.max_pixels)
                image = self.views.augmentation.apply(image, record.sha256, self.views.numbers[index])
            return Decoded(index, self.preprocess(image), None)
        except UnreadableImage as exc:
            return Decoded(index, None, str(exc))


def collate(items: list[Decoded]) -> list[Decoded]:
    """Keep items as they are; the loop stacks the good ones (a bad one must not spoil a batch)."""
    return items


class Embedder:
    """Backbone forward and pooling for a batch of preprocessed images."""

    def __init__(self, spec: EmbeddingSpec, threads: int | None = None) -> None:
        self.spec = spec
        self.backbone = Backbone(spec.backbone, threads=threads, depth=max(spec.pooling.layers))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            pooled = self.pooled(torch.from_numpy(pixels))
        return pooled.numpy().astype(np.float32, copy=False)

    def sharing_zoom(self, pixels: np.ndarray, known: dict[bytes, np.ndarray]) -> np.ndarray:
        """What `__call__` returns, for copies of one image that differ here and there (an occlusion
        map's): a copy whose centre square (`zoom_box`) is one `known` already has its zoomed half taken
        from there, not from a second pass; the halves computed here are added to `known`."""
        import torch

        if not self.spec.pooling.zoom:
            return self(pixels)
        prefix, norm, pooling = self.spec.backbone.num_prefix_tokens, self.backbone.norm, self.spec.pooling
        box = zoom_box(pixels.shape[-1])
        keys = [hashlib.blake2b(np.ascontiguousarray(p[:, box, box]).tobytes()).digest() for p in pixels]
        todo = list({key: row for row, key in enumerate(keys) if key not in known}.items())
        with torch.inference_mode():
            batch = torch.from_numpy(pixels)
            whole = pooling.whole(self.backbone.hidden_states(batch), prefix, norm).numpy()
            if todo:
                rows = [row for _, row in todo]
                states = self.backbone.hidden_states(zoom_input(batch[rows]))
                for (key, _), half in zip(todo, pooling.zoomed(states, prefix, norm).numpy(), strict=True):
                    known[key] = half
        zoomed = np.stack([known[key] for key in keys])
        return np.concatenate([whole, zoomed], axis=1).astype(np.float32, copy=False)

    def pooled(self, pixels, states=None):
        """(N, dim) vectors of a (N, 3, S, S) torch batch: one forward pass (none when its `states` are
        given), and one more on the zoomed input with `+zoom`."""
        pooling = self.spec.pooling
        states = self.backbone.hidden_states(pixels) if states is None else states
        zoomed = self.backbone.hidden_states(zoom_input(pixels)) if pooling.zoom else None
        return pooling(states, self.spec.backbone.num_prefix_tokens, self.backbone.norm, zoomed)

    def pooled_with_tokens(self, pixels):
        """Differentiable: (pooled vectors, every token as the patch embedding made them, prefix tokens
        first), for maps that attribute to patches. The tokens are a leaf: nothing upstream needs
        gradients."""
        captured: dict = {}

        def keep_tokens(module, inputs, output):
            output.requires_grad_(True)
            captured["tokens"] = output

        handle = self.backbone.model.embeddings.register_forward_hook(keep_tokens)
        try:
            states = self.backbone.hidden_states(pixels)
        finally:
            handle.remove()
        # Gradient maps attribute to the whole-face pass's tokens; the zoomed pass (run after the hook
        # is gone) adds its evidence to the score, and occlusion maps, which paint pixels, see both.
        return self.pooled(pixels, states), captured["tokens"]


@lru_cache(maxsize=2)
def shared_embedder(spec: EmbeddingSpec) -> Embedder:
    """One loaded backbone per spec and process: embedding, maps and perturbed copies in one run share it."""
    return Embedder(spec)


@dataclass
class EmbedResult:
    """How many records were embedded, why others failed (by position), and the loop's seconds."""

    embedded: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0


def _worker_init(_: int) -> None:
    import threading

    import torch

    die_with_parent()
    torch.set_num_threads(1)  # decoding is single-threaded; leave the cores to the model
    # A forked worker inherits its parent's thread-exit hooks. Inside a Prefect run one of them drains
    # Prefect's log service, whose state the fork reset: it fails at the worker's exit, the worker exits
    # with code 1 and the DataLoader calls the whole batch lost (Prefect 3.8.8). Those hooks belong to
    # the parent's threads, none of which exist here.
    threading._threading_atexits.clear()  # type: ignore[attr-defined]


def embed_missing(
    records: Sequence[ImageRecord],
    spec: EmbeddingSpec,
    store: FeatureStore,
    batch_size: int = 16,
    workers: int = 1,
    embedder: Embedder | None = None,
    on_batch: Callable[[int], None] | None = None,
    views: Views | None = None,
) -> EmbedResult:
    """Embed `records` (readable, not yet stored, one per hash) and commit them batch by batch.

    Returns how many were embedded and, by position in `records`, the reason each failure had.
    `on_batch` is told how many records each finished batch covered (for progress bars). With `views`,
    item i is that view of `records[i]`, stored under the view's key.
    """
    from torch.utils.data import DataLoader

    result = EmbedResult()
    if not records:
        store.compact()  # nothing new, but batches left by runs that died are merged all the same
        return result
    embedder = embedder or shared_embedder(spec)
    started = time.perf_counter()
    loader = DataLoader(
        DecodedImages(records, spec, views=views),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=2 if workers else None,
    )
    # Start the decoding workers before the writer takes its run lock: forked workers would inherit the
    # lock's file descriptor and, orphaned by a kill -9, keep the dead run looking alive.
    batches = iter(loader)
    keys = views.keys(records) if views is not None else [r.sha256 for r in records]
    with store.writer(spec.provenance()) as writer:
        for items in batches:
            good = [item for item in items if item.pixels is not None]
            for item in items:
                if item.error is not None:
                    result.failed[item.index] = item.error
            if good:
                vectors = embedder(np.stack([item.pixels for item in good]))
                writer.append([keys[item.index] for item in good], vectors)
                result.embedded += len(good)
            if on_batch is not None:
                on_batch(len(items))
    result.seconds = time.perf_counter() - started
    return result


def embed_images(images, spec: EmbeddingSpec, embedder: Embedder, batch_size: int = 16) -> np.ndarray:
    """Vectors for in-memory RGB images (perturbed copies, uploads): nothing touches the store."""
    pixels = [spec.preprocess(image) for image in images]
    parts = [embedder(np.stack(pixels[i : i + batch_size])) for i in range(0, len(pixels), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, spec.dim), np.float32)
