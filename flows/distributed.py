"""Embedding beyond one machine: the `embed` flow with `partitions` > 1 and a Dask task runner from
here runs its partitions on a Dask cluster through Prefect's `DaskTaskRunner`. Each partition is one
`embed-new-images` task with its own store writer, so each writes its own shard and no file has two
writers; the store's merge lock keeps every image once.

Dask workers talk to the Prefect API as the flow does: configure a Prefect server (PREFECT_API_URL) so
that workers do not each start a temporary one.
"""

from pathlib import Path

# What an embedding task needs before it starts: most of a worker's start-up is importing these.
WORKER_IMPORTS = (
    "distributed",
    "torch",
    "transformers.models.dinov2.modeling_dinov2",  # transformers' model code, for both families
    "transformers.models.vit.modeling_vit",
    "prefect_dask",
    "faceaudit.flows.embed_flow",
)


def dask_runner(address: str | None, workers: int | None, scratch: Path | None = None):
    """A DaskTaskRunner on an existing cluster (`address`) or a local one of `workers` processes whose
    scratch space is under `scratch` (a run's private TMPDIR, removed with it)."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    fork_local_workers_from_one_import()
    if scratch is not None:  # the scheduler and each worker make a dask-scratch-space/ there
        import dask

        dask.config.set({"temporary-directory": str(scratch)})
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": workers or 2, "threads_per_worker": 1, "processes": True}
    )


def fork_local_workers_from_one_import() -> None:
    """Start local workers from a fork server that has imported WORKER_IMPORTS, instead of as fresh
    interpreters that each import them (Dask's default): torch, transformers and Prefect then load once
    for the whole cluster, not once per worker. The fork server is itself a fresh, single-threaded
    process, so nothing of this process's threads is copied into a worker."""
    import dask
    from distributed.utils import get_mp_context

    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    # Dask sets its own, shorter, list the first time it is asked for the context; replace it after.
    get_mp_context().set_forkserver_preload(list(WORKER_IMPORTS))
