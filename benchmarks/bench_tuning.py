"""A local search against the same trainings as a matrix: 8 Random trials, 2 at a time,
against those 8 configurations as a `zip:` experiment under `pytest -n 2`, on the MNIST
sample with src/train.py. Wall time of the whole pytest process, interleaved rounds.

    python benchmarks/bench_tuning.py [--rounds 2] [--trials 8] [--epochs 1]

The search runs first in each round; its trials' hyperparameters (hyperparameters.json in
each trial's folder) make the matrix, so both train exactly the same eight points. Both share
the cores the same way: two trainings at a time, each with half of them (OMP_NUM_THREADS).
Target: search wall / matrix wall <= 1.1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import make_mnist_project, median, timed, write_experiment  # noqa: E402

SEARCH = """base: config/mnist.yaml
hyperparameters: {{epochs: {epochs}}}
tune:
  strategy: Random
  objective: {{metric: test_accuracy, type: Maximize}}
  max_jobs: {trials}
  max_parallel_jobs: 2
  random_seed: 7
  ranges:
    lr: {{min: 0.05, max: 2.0, scaling: Logarithmic}}
    gamma: {{min: 0.5, max: 0.99}}
"""


def trial_points(root: Path) -> list[dict]:
    points = []
    for folder in sorted((root / "sm-artifacts" / "search").glob("default-trial*")):
        attempt = sorted(folder.glob("attempt-*"))[-1]
        values = json.loads((attempt / "hyperparameters.json").read_text())
        points.append({"lr": values["lr"], "gamma": values["gamma"]})
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    root = make_mnist_project()
    write_experiment(root, "search", SEARCH.format(epochs=args.epochs, trials=args.trials))
    pytest = [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider", "-q"]
    searched, matrix = [], []
    try:
        for _ in range(args.rounds):
            shutil.rmtree(root / "sm-artifacts", ignore_errors=True)
            searched.append(timed([*pytest, "-k", "search"], root))
            points = trial_points(root)
            body = (f"base: config/mnist.yaml\nhyperparameters: {{epochs: {args.epochs}}}\n"
                    f"zip:\n  lr: {[p['lr'] for p in points]}\n"
                    f"  gamma: {[p['gamma'] for p in points]}\n")
            write_experiment(root, "grid", body)
            matrix.append(timed([*pytest, "-k", "grid", "-n", "2"], root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    search_wall, matrix_wall = median(searched), median(matrix)
    print(f"{args.trials} trials, {args.epochs} epoch(s) each, MNIST sample,"
          f" median of {args.rounds} rounds:")
    print(f"  search, 2 trials at a time:      {search_wall:6.1f} s  {searched}")
    print(f"  same points as a zip, pytest -n 2: {matrix_wall:6.1f} s  {matrix}")
    print(f"  ratio search / matrix: {search_wall / matrix_wall:.2f}  (target <= 1.1)")


if __name__ == "__main__":
    main()
