"""Plugin overhead: a trivial run through `pytest` against the same script run directly.

Prints the direct time, the pytest time for 1 and for N runs, and the marginal overhead per
run ((T_N - T_1) / (N - 1) - T_direct), which excludes pytest's one-off start-up.
Target: under 0.3 s extra per run.

    python benchmarks/bench_overhead.py [--runs 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from _project import make_project, median, timed, write_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = make_project()
    try:
        values = ", ".join(str(i) for i in range(args.runs))
        write_experiment(root, "many", f"base: config/base.yaml\nmatrix: {{seed: [{values}]}}\n"
                                       "expect: {accuracy: '>= 0.9'}\n")
        write_experiment(root, "one", "base: config/base.yaml\nexpect: {accuracy: '>= 0.9'}\n")
        env = {**os.environ, "SM_MODEL_DIR": str(root)}
        direct, single, many = [], [], []
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        for _ in range(args.repeats):  # interleaved, so drift hits all three alike
            direct.append(timed([sys.executable, "src/train.py"], root, env))
            single.append(timed([*pytest, "experiments/one.yaml"], root))
            many.append(timed([*pytest, "experiments/many.yaml"], root))
        t_direct, t_one, t_many = median(direct), median(single), median(many)
        marginal = (t_many - t_one) / (args.runs - 1) - t_direct
        print(f"direct script run:             {t_direct:.3f} s")
        print(f"pytest, 1 run (with start-up): {t_one:.3f} s  (+{t_one - t_direct:.3f} s)")
        print(f"pytest, {args.runs} runs:               {t_many:.3f} s")
        print(f"marginal overhead per run:     {marginal:.3f} s  (target < 0.3 s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
