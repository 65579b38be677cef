"""Warm pools, emulated: the same 6-job sweep, 2 jobs at a time, with keep-alive (and a
warm-pool quota) and without, under `pytest --sm --sm-emulate`. Prints per session the
total start latency (creation to training start, summed over the jobs), how many jobs
started warm, the warm-pool idle time billed, and the session's wall time.

    python benchmarks/bench_warm_pools.py [--rounds 2] [--cold 6.0] [--warm 0.5]

What the start times stand for: the emulator does not provision anything, so a start takes
as long as the model it is given (SM_PYTEST_EMULATE_START_SECONDS=<cold>,<warm>): by default
6 s for a cold start and 0.5 s on a warm pool, a real cold start of minutes and a warm one
of seconds scaled down by about 30x so that the benchmark runs in a minute. The ratio is
the model's, not a measurement of AWS; what the benchmark measures is that the session
really hands 4 of its 6 jobs a pool, releases the last two, and what that changes in start
latency, idle time and wall time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import make_project, median, timed, write_experiment  # noqa: E402

SWEEP = """base: config/base.yaml
matrix: {seed: [1, 2, 3, 4, 5, 6]}
"""


def summary(root: Path) -> list[dict]:
    with open(root / "sm-artifacts" / "summary.csv", newline="") as file:
        return list(csv.DictReader(file))


def start_latency(root: Path) -> float:
    """CreationTime to TrainingStartTime, summed over the jobs: from each job's
    describe.json (the summary shows start_s only for jobs that asked for a warm pool)."""
    total = 0.0
    for path in (root / "sm-artifacts").glob("sweep/*/attempt-*/describe.json"):
        describe = json.loads(path.read_text())
        created, started = (datetime.fromisoformat(describe[key])
                            for key in ("CreationTime", "TrainingStartTime"))
        total += (started - created).total_seconds()
    return total


def number(text: str) -> float:
    return float(text) if text else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cold", type=float, default=6.0, help="emulated cold start, s")
    parser.add_argument("--warm", type=float, default=0.5, help="emulated warm start, s")
    args = parser.parse_args()
    root = make_project()
    write_experiment(root, "sweep", SWEEP)
    env = {**os.environ, "SM_PYTEST_EMULATE_START_SECONDS": f"{args.cold},{args.warm}",
           "SM_PYTEST_EMULATE_WARM_POOL_QUOTA": "ml.m5.xlarge=2"}
    pytest = [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider", "-q",
              "--sm", "--sm-emulate", "--sm-region", "us-east-1", "--sm-max-parallel", "2"]
    figures: dict[str, list[tuple[float, float, int, float]]] = {"with": [], "without": []}
    try:
        for _ in range(args.rounds):
            for label, keep_alive in (("without", "0"), ("with", "600")):
                shutil.rmtree(root / "sm-artifacts", ignore_errors=True)
                wall = timed([*pytest, "--sm-keep-alive", keep_alive], root, env=env)
                rows = summary(root)
                start = start_latency(root)
                warm = sum(r.get("pool", "").startswith("warm") for r in rows)
                idle = sum(number(r.get("idle_s", "")) for r in rows)
                figures[label].append((start, idle, warm, wall))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def med(label: str, index: int) -> float:
        return median([f[index] for f in figures[label]])

    print(f"6 emulated jobs, 2 at a time, cold start {args.cold:g} s, warm {args.warm:g} s,"
          f" median of {args.rounds} rounds:")
    for label in ("without", "with"):
        print(f"  {label:7} keep-alive: start latency {med(label, 0):6.1f} s in all,"
              f" {med(label, 2):.0f} of 6 started warm, idle billed {med(label, 1):4.0f} s,"
              f" wall {med(label, 3):5.1f} s")
    print(f"  start latency with / without: {med('with', 0) / med('without', 0):.2f};"
          f" wall with / without: {med('with', 3) / med('without', 3):.2f}")


if __name__ == "__main__":
    main()
