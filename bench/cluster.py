"""Sequential embedding against 2 local Dask workers, printed: images/s for both and the largest
difference between their vectors (they must agree to float precision). First, the start-up of the
local workers, as Dask starts them (fresh interpreters, the baseline) and as faceaudit does (forked
from one process that has imported the embedding code): seconds until every worker is ready to embed,
and CPU seconds spent by the whole machine meanwhile.

    python bench/cluster.py [--data ../shared/data] [--count 200] [--workers 2]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from images import bench_parser, copy_images, first_images  # noqa: E402

from faceaudit.embed.spec import make_spec  # noqa: E402
from faceaudit.embed.store import FeatureStore  # noqa: E402


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy so far (worker processes are not our children)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def import_worker_modules() -> None:
    import importlib

    from faceaudit.flows.distributed import WORKER_IMPORTS

    for name in WORKER_IMPORTS:
        importlib.import_module(name)


def ready_cluster(workers: int) -> tuple[float, float]:
    """(wall seconds, machine CPU seconds) to start a local cluster whose workers can embed."""
    from dask.distributed import Client, LocalCluster

    started, cpu = time.perf_counter(), busy_seconds()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
    with cluster, Client(cluster) as client:
        client.run(import_worker_modules)
        return time.perf_counter() - started, busy_seconds() - cpu


def worker_start_up(workers: int) -> None:
    from faceaudit.flows.distributed import fork_local_workers_from_one_import

    fresh = ready_cluster(workers)  # Dask's default start method, before faceaudit changes it
    fork_local_workers_from_one_import()
    forked = ready_cluster(workers)
    print(f"{workers} local workers ready to embed:   wall s   CPU s")
    print(f"  fresh interpreters (Dask's default)   {fresh[0]:6.1f}  {fresh[1]:6.1f}")
    print(f"  forked from one import (faceaudit)    {forked[0]:6.1f}  {forked[1]:6.1f}")
    print(f"  ratio forked / fresh                  {forked[0] / fresh[0]:6.2f}  {forked[1] / fresh[1]:6.2f}")


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from faceaudit.flows.distributed import dask_runner
    from faceaudit.flows.embed_flow import embed_flow

    worker_start_up(args.workers)

    records = first_images(args.data, args.count)
    with tempfile.TemporaryDirectory() as scratch:
        folder = copy_images(records, Path(scratch) / "images")
        started = time.perf_counter()
        embed_flow.fn(str(folder), str(Path(scratch) / "sequential"))
        sequential = time.perf_counter() - started
        flow = embed_flow.with_options(task_runner=dask_runner(None, args.workers))
        started = time.perf_counter()
        flow(str(folder), str(Path(scratch) / "dask"), partitions=args.workers)
        parallel = time.perf_counter() - started
        spec = make_spec()
        hashes = [r.sha256 for r in records]
        a = FeatureStore(Path(scratch) / "sequential", spec.fingerprint).get(hashes)
        b = FeatureStore(Path(scratch) / "dask", spec.fingerprint).get(hashes)
    print(f"{len(records)} images, wall clock incl. model loads and cluster start-up:")
    print(f"  sequential (2 threads)              {len(records) / sequential:6.2f} images/s")
    print(f"  Dask, {args.workers} local workers x 1 thread   {len(records) / parallel:6.2f} images/s")
    print(f"  largest vector difference: {np.abs(a - b).max():.2e}")


if __name__ == "__main__":
    main()
