"""Concurrency of the --sm path: 8 emulated jobs of a script that sleeps S seconds, with
--sm-max-parallel 8. Prints wall time / S. Target: at most 1.5 (concurrent, not 8 x S).

The same session with S = 0 is timed too, so the fixed cost (imports, emulator start-up,
polling) can be told apart from the waiting: (wall(S) - wall(0)) / S is the pure ratio.

    python benchmarks/bench_emulated_jobs.py [--sleep 10] [--jobs 8]
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
    parser.add_argument("--sleep", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=8)
    args = parser.parse_args()
    root = make_project()
    (root / "src" / "train.py").write_text(SLEEPY_TRAIN)
    try:
        fixed = session_time(root, 0, args.jobs)
        wall = session_time(root, args.sleep, args.jobs)
        print(f"{args.jobs} jobs sleeping S = {args.sleep:g} s, --sm-max-parallel {args.jobs}")
        print(f"session wall time:          {wall:.2f} s")
        print(f"same session with S = 0:    {fixed:.2f} s")
        print(f"wall / S:                   {wall / args.sleep:.2f}  (target <= 1.5;"
              f" serial would be {args.jobs})")
        print(f"(wall - wall(S=0)) / S:     {(wall - fixed) / args.sleep:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
