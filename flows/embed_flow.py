"""The `embed` flow: every image in a folder into the feature store, each one embedded only once."""

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from faceaudit.data.records import ImageRecord, scan
from faceaudit.embed.default_backbone import DEFAULT_BACKBONE
from faceaudit.embed.pooling import PoolingKind
from faceaudit.embed.preprocess import PreprocessMode
from faceaudit.embed.runner import Views, embed_missing
from faceaudit.embed.spec import DEFAULT_POOLING, DEFAULT_PREPROCESS, EmbeddingSpec, make_spec
from faceaudit.embed.store import FeatureStore
from faceaudit.flows.defaults import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS
from faceaudit.flows.orchestration import call
from faceaudit.flows.params import BatchSize, Partitions, Workers
from faceaudit.flows.progress import progress_bar
from faceaudit.flows.run_log import log_unreadable, run_logger

# A bound only a stalled run reaches: about 25x the measured cost of an image on 2 cores.
EMBED_TIMEOUT_S = (300, 5.0)  # base, per image to embed


@dataclass
class EmbedSummary:
    """What an embed run did; the CLI prints it and flows return it."""

    input_dir: str
    store: str
    fingerprint: str
    files: int = 0
    new: int = 0
    already_stored: int = 0
    duplicates: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0  # the embedding loop alone, after the model is loaded

    @property
    def images_per_second(self) -> float:
        return self.new / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "images_per_second": round(self.images_per_second, 2)}


@task(name="scan-folder", cache_policy=NO_CACHE)
def scan_folder(input_dir: str, skip: tuple[str, ...] = ()) -> list[ImageRecord]:
    """Walk, hash and sniff every file (cheap: no decoding), leaving out the folders in `skip`."""
    return scan(input_dir, skip=skip)


@dataclass
class PartitionResult:
    """What one embedding task did: how many it embedded, the reason for each hash it could not."""

    embedded: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@task(name="embed-new-images", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def embed_new_images(
    records: list[ImageRecord],
    spec: EmbeddingSpec,
    store_dir: str,
    batch_size: int,
    workers: int,
    views: Views | None = None,
    threads: int | None = None,
) -> PartitionResult:
    """The one embedding worker: embed `records` (or their augmented `views`) the store lacks, here or on
    a Dask worker. Each batch is committed as it goes (each task has its own store writer, so its own
    shard), so a retry resumes. `threads`: torch threads for a worker sharing the machine."""
    if threads is not None:
        from faceaudit.embed.backbone import set_threads

        set_threads(threads)
    store = FeatureStore(store_dir, spec.fingerprint)
    label = "embedding" if views is None else "embedding augmented views"
    with progress_bar(label, total=len(records)) as advance:
        result = embed_missing(records, spec, store, batch_size, workers, on_batch=advance, views=views)
    failed = {records[i].sha256: reason for i, reason in result.failed.items()}
    return PartitionResult(result.embedded, failed, result.seconds)


def embed_records(
    records: list[ImageRecord],
    spec: EmbeddingSpec,
    store_dir: str,
    input_dir: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = DEFAULT_WORKERS,
    partitions: int = 1,
) -> EmbedSummary:
    """Embed what the store lacks among `records`, marking newly found unreadable files in place.

    One partition runs in this process; more are submitted as parallel tasks to the flow's task runner
    (a Dask cluster, see flows/distributed.py), each decoding in-process on one thread."""
    started = time.perf_counter()
    summary = EmbedSummary(input_dir=input_dir, store=str(store_dir), fingerprint=spec.fingerprint)
    summary.files = len(records)
    readable = [r for r in records if r.ok]
    stored = (
        FeatureStore(store_dir, spec.fingerprint).contains([r.sha256 for r in readable]) if readable else []
    )
    todo: dict[str, ImageRecord] = {}
    for record, is_stored in zip(readable, stored, strict=True):
        if is_stored:
            summary.already_stored += 1
        else:
            todo.setdefault(record.sha256, record)
    chosen = list(todo.values())
    if partitions <= 1:
        limit = EMBED_TIMEOUT_S[0] + EMBED_TIMEOUT_S[1] * len(chosen)
        results = [call(embed_new_images, chosen, spec, str(store_dir), batch_size, workers, timeout_s=limit)]
    else:
        parts = [chosen[i::partitions] for i in range(partitions) if chosen[i::partitions]]
        futures = [
            embed_new_images.submit(part, spec, str(store_dir), batch_size, 0, threads=1) for part in parts
        ]
        results = [future.result() for future in futures]
    failed = {h: reason for result in results for h, reason in result.failed.items()}
    summary.new = sum(result.embedded for result in results)
    summary.embed_seconds = time.perf_counter() - started if partitions > 1 else results[0].seconds
    for record in readable:
        if record.sha256 in failed:
            record.error = failed[record.sha256]
    summary.duplicates = sum(1 for r in readable if r.ok) - summary.already_stored - summary.new
    summary.unreadable = [(r.rel, r.error) for r in records if not r.ok]
    return summary


def _run_name() -> str:
    from prefect.runtime import flow_run

    return f"embed {Path(flow_run.parameters['input_dir']).name}"


@flow(name="embed", flow_run_name=_run_name, log_prints=True)
def embed_flow(
    input_dir: str,
    store_dir: str,
    backbone: str = DEFAULT_BACKBONE,
    preprocess: PreprocessMode = DEFAULT_PREPROCESS,
    pooling: PoolingKind = DEFAULT_POOLING,
    layers: list[int] | None = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    workers: Workers = DEFAULT_WORKERS,
    partitions: Partitions = 1,
) -> EmbedSummary:
    """Embed every image under `input_dir` into the store at `store_dir`; returns what it did.

    `partitions` > 1 splits the images the store lacks into parallel tasks: give the flow a Dask task
    runner (`flows.distributed.dask_runner`) for them to run on a cluster.

    Args:
        input_dir: Folder of images, walked recursively.
        store_dir: Feature store; images already in it are not embedded again.
        backbone: 'dinov2-s14' (built in), a local transformers folder, or a hub id.
        preprocess: How a picture becomes the backbone's input: 'scale', 'crop', 'resize', 'face' or
            'scale-face'.
        pooling: Which token statistics make the vector: 'cls', 'mean', 'cls+mean', 'cls+mean+std',
            'cls+mean+std+texture' or 'cls+mean+std+zoom' (the default).
        layers: Layers to pool; empty for 1/3, 1/2 and 2/3 of the depth.
        batch_size: Images per forward pass of the backbone.
        workers: Processes decoding images ahead of the backbone.
        partitions: Parallel embedding tasks (for a Dask task runner).
    """
    started = time.perf_counter()
    spec = make_spec(backbone, preprocess, pooling, tuple(layers or ()))
    records = call(scan_folder, str(Path(input_dir)))
    summary = embed_records(records, spec, store_dir, str(input_dir), batch_size, workers, partitions)
    summary.seconds = time.perf_counter() - started
    run_logger().info(
        "%d files: %d new, %d already stored, %d duplicates, %d unreadable",
        summary.files,
        summary.new,
        summary.already_stored,
        summary.duplicates,
        len(summary.unreadable),
    )
    log_unreadable(summary.unreadable)
    return summary
