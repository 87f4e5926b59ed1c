"""Embedding beyond one machine: the `embed` flow with `partitions` > 1 and a Dask task runner from
here runs its partitions on a Dask cluster through Prefect's `DaskTaskRunner`. Each partition is one
`embed-new-images` task with its own store writer, so each writes its own shard and no file has two
writers; the store's merge lock keeps every image once.

Dask workers talk to the Prefect API as the flow does: configure a Prefect server (PREFECT_API_URL) so
that workers do not each start a temporary one.
"""


def dask_runner(address: str | None, workers: int | None):
    """A DaskTaskRunner on an existing cluster (`address`) or a local one of `workers` processes."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": workers or 2, "threads_per_worker": 1, "processes": True}
    )
