"""Embedding beyond one machine: partitions of a folder embedded on a Dask cluster through Prefect's
`DaskTaskRunner`. Each partition is one task with its own store writer, so each writes its own shard
and no file has two writers; the store's merge lock keeps every image once.

Dask workers talk to the Prefect API as the flow does: configure a Prefect server (PREFECT_API_URL) so
that workers do not each start a temporary one.
"""

import time

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from data.records import ImageRecord
from embed.default_backbone import DEFAULT_BACKBONE
from embed.pooling import PoolingKind
from embed.preprocess import PreprocessMode
from embed.runner import embed_missing
from embed.spec import DEFAULT_POOLING, DEFAULT_PREPROCESS, EmbeddingSpec, make_spec
from embed.store import FeatureStore
from flows.defaults import DEFAULT_BATCH_SIZE
from flows.embed_flow import plan_embedding, scan_folder, settle_embedding
from flows.params import BatchSize, Partitions


@task(name="embed-partition", cache_policy=NO_CACHE, retries=1)
def embed_partition(records: list[ImageRecord], spec: EmbeddingSpec, store_dir: str, batch_size: int) -> dict:
    """Embed one partition on whichever worker runs it; returns counts and failures by hash."""
    from embed.backbone import set_threads

    set_threads(1)  # workers share the machine's cores
    result = embed_missing(records, spec, FeatureStore(store_dir, spec.fingerprint), batch_size, workers=0)
    return {"embedded": result.embedded, "failed": {records[i].sha256: r for i, r in result.failed.items()}}


def dask_runner(address: str | None, workers: int | None):
    """A DaskTaskRunner on an existing cluster (`address`) or a local one of `workers` processes."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": workers or 2, "threads_per_worker": 1, "processes": True}
    )


@flow(name="embed-distributed", log_prints=True)
def embed_distributed_flow(
    input_dir: str,
    store_dir: str,
    partitions: Partitions = 2,
    backbone: str = DEFAULT_BACKBONE,
    preprocess: PreprocessMode = DEFAULT_PREPROCESS,
    pooling: PoolingKind = DEFAULT_POOLING,
    layers: list[int] | None = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
) -> dict:
    """Like `embed`, with the images the store lacks split into partitions run as parallel tasks."""
    started = time.perf_counter()
    spec = make_spec(backbone, preprocess, pooling, tuple(layers or ()))
    records = scan_folder(input_dir)
    summary, todo = plan_embedding(records, spec, store_dir)
    summary.input_dir = input_dir
    embed_started = time.perf_counter()
    futures = [
        embed_partition.submit(todo[i::partitions], spec, store_dir, batch_size)
        for i in range(partitions)
        if todo[i::partitions]
    ]
    failed: dict[str, str] = {}
    for future in futures:
        outcome = future.result()
        summary.new += outcome["embedded"]
        failed.update(outcome["failed"])
    summary.embed_seconds = time.perf_counter() - embed_started
    settle_embedding(summary, records, failed)
    summary.seconds = time.perf_counter() - started
    return summary.as_dict()
