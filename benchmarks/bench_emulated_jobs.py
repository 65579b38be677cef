"""Concurrency of the --sm path: 8 emulated jobs of a script that sleeps S seconds, with
--sm-max-parallel 8. Prints wall time / S. Target: at most 1.5 (concurrent, not 8 x S).

The same session with S = 0 is timed first, so the fixed cost (imports, emulator start-up,
polling) can be told apart from the waiting: (wall(S) - wall(0)) / S is the pure ratio.
Several S are timed by default, because the fixed cost decides where the target is met.

    python benchmarks/bench_emulated_jobs.py [--sleep 10 20 30] [--jobs 8]
"""

from __future__ import annotations

import argparse
import shutil
import sys

from _project import make_project, timed, write_experiment

SLEEPY_TRAIN = """
import argparse, os, time
parser = argparse.ArgumentParser()
parser.add_argument("--sleep", type=float, default=0)
args, _ = parser.parse_known_args()
time.sleep(args.sleep)
print("epoch=1 accuracy=0.99", flush=True)
"""


def session_time(root, sleep: float, jobs: int) -> float:
    seeds = ", ".join(str(i) for i in range(jobs))
    body = (f"base: config/base.yaml\nhyperparameters: {{sleep: {sleep}}}\n"
            f"matrix: {{seed: [{seeds}]}}\nexpect: {{accuracy: '>= 0.9'}}\n")
    write_experiment(root, "sleepy", body)
    return timed([sys.executable, "-m", "pytest", "experiments", "-q", "-p", "no:cacheprovider",
                  "--sm", "--sm-emulate", "--sm-region", "us-east-1",
                  "--sm-max-parallel", str(jobs)], root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep", type=float, nargs="+", default=[10.0, 20.0, 30.0])
    parser.add_argument("--jobs", type=int, default=8)
    args = parser.parse_args()
    root = make_project()
    (root / "src" / "train.py").write_text(SLEEPY_TRAIN)
    try:
        fixed = session_time(root, 0, args.jobs)
        print(f"{args.jobs} emulated jobs, --sm-max-parallel {args.jobs}; target wall / S <= 1.5"
              f" (serial would be {args.jobs})")
        print(f"session with S = 0 (the fixed cost): {fixed:.2f} s")
        print(f"{'S':>6} {'wall':>8} {'wall / S':>9} {'(wall - wall(S=0)) / S':>24}")
        for sleep in args.sleep:
            wall = session_time(root, sleep, args.jobs)
            print(f"{sleep:>6g} {wall:>8.2f} {wall / sleep:>9.2f} {(wall - fixed) / sleep:>24.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
