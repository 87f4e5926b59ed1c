"""What recording a `score` run in Prefect costs, per way of running it, printed.

Scores the demo's sample folder (six faces and a broken file, maps off) as a whole command, three ways,
`--repeat` times each after one warm-up that fills the store:
  in-process     no Prefect server configured: the flow function runs without orchestration (default)
  temporary      `--prefect` with no server: Prefect starts and stops a server for this run
  server         PREFECT_API_URL names a running `prefect server start` (started here, not timed)

    python bench/prefect_modes.py [--repeat 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "flows" / "sample_faces" / "images"
sys.path.insert(0, str(ROOT))

from tests.conftest import start_prefect_server, stop_group  # noqa: E402  (one way to start a server)


def timed(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "faceaudit.flows.cli", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        env = {
            **os.environ,
            "FACEAUDIT_STORE": str(base / "store"),
            "PREFECT_HOME": str(base / "prefect-temp"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        env.pop("PREFECT_API_URL", None)
        command = ["score", str(SAMPLES), "--explain", "none"]
        timed([*command, "--out", str(base / "warm-up")], env)
        server, url = start_prefect_server(base / "prefect-server")
        try:
            ways = {
                "in-process": (env, []),
                "temporary": (env, ["--prefect"]),
                "server": ({**env, "PREFECT_API_URL": url}, []),
            }
            seconds = {name: [] for name in ways}
            for i in range(args.repeat):
                for name, (way_env, extra) in ways.items():
                    seconds[name].append(
                        timed([*command, "--out", str(base / f"{name}-{i}"), *extra], way_env)
                    )
        finally:
            stop_group(server)
    baseline = statistics.median(seconds["in-process"])
    print(f"`faceaudit score` of 7 files, maps off, median of {args.repeat} (store already filled):")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(
            f"  {name:<11} {median:6.2f} s  ({median / baseline:.2f} x in-process; runs: "
            + ", ".join(f"{v:.2f}" for v in values)
            + ")"
        )


if __name__ == "__main__":
    main()
