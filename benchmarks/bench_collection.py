"""Collection speed: a 1000-run matrix under --collect-only against an empty collection.

Target: under 1 s beyond the empty collection.

    python benchmarks/bench_collection.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys

from _project import make_project, median, timed, write_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = make_project()
    try:
        axis = "[" + ", ".join(str(i) for i in range(10)) + "]"
        body = (f"base: config/base.yaml\nmatrix:\n  a: {axis}\n  b: {axis}\n  c: {axis}\n"
                "expect: {accuracy: '>= 0.9'}\n")
        write_experiment(root, "grid", body)
        (root / "empty").mkdir()
        command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                   "no:cacheprovider"]
        empty, grid = [], []
        for _ in range(args.repeats):
            empty.append(timed([*command, "empty"], root))
            grid.append(timed([*command, "experiments"], root))
        t_empty, t_grid = median(empty), median(grid)
        print(f"empty collection:        {t_empty:.3f} s")
        print(f"1000-run matrix:         {t_grid:.3f} s")
        print(f"extra for 1000 runs:     {t_grid - t_empty:.3f} s  (target < 1 s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
