"""Sequential embedding against 2 local Dask workers, printed: images/s for both and the largest
difference between their vectors (they must agree to float precision).

    python bench/cluster.py [--data ../shared/data] [--count 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from images import copy_images, first_images  # noqa: E402

from embed.spec import make_spec  # noqa: E402
from embed.store import FeatureStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from flows.distributed import dask_runner
    from flows.embed_flow import embed_flow

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
