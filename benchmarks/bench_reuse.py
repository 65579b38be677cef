"""Run cache: a second `pytest experiments --sm-reuse` with nothing changed, against the first
run that trained everything, on the bundled MNIST sample. Target: under 5% of the first
run's wall time.

    python benchmarks/bench_reuse.py [-k EXPR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _project import timed

ROOT = Path(__file__).resolve().parents[1]


def session(root: Path, *args: str) -> float:
    return timed([sys.executable, "-m", "pytest", "experiments", "-q", "-p", "no:cacheprovider",
                  *args], root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default=None, help="select experiments, as pytest -k")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sm-pytest-reuse-"))
    try:
        for name in ("src", "config", "experiments", "data"):
            shutil.copytree(ROOT / name, root / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
        select = ["-k", args.k] if args.k else []
        first = session(root, "--sm-reuse", *select)
        second = session(root, "--sm-reuse", *select)
        print(f"first run (trains everything):   {first:7.2f} s")
        print(f"second run, nothing changed:     {second:7.2f} s")
        print(f"ratio:                           {second / first:7.1%}  (target < 5%)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
