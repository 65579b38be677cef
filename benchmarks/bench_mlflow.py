"""What --sm-mlflow costs a session: a trivial N-run sweep through pytest without MLflow,
with a real `mlflow server` on this machine, and with a server that is down (nothing
listens on its port), interleaved, medians of R rounds.

    python benchmarks/bench_mlflow.py [--runs-per-sweep 10] [--rounds 3]

Needs the full mlflow package (the dev extra) for the server. The per-run figure is what a
run's MLflow calls cost (create, params, metric steps, three files and the model, end); the
down figure is the price of a server that does not answer: MLflow's few retries once, then
runs are only queued for `sm-pytest mlflow-sync`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import free_port, make_project, median, timed, write_experiment  # noqa: E402


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return server, uri
        except OSError:
            time.sleep(0.3)
    server.kill()
    sys.exit("mlflow server did not start within 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-per-sweep", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = make_project()
    values = ", ".join(str(i) for i in range(args.runs_per_sweep))
    write_experiment(root, "sweep", f"base: config/base.yaml\nmatrix: {{seed: [{values}]}}\n")
    folder = Path(tempfile.mkdtemp(prefix="sm-pytest-bench-mlflow-"))
    server, uri = start_server(folder)
    down = f"http://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider", "-q"]
    times: dict[str, list[float]] = {"without": [], "server": [], "down": []}
    try:
        for _ in range(args.rounds):
            for name, extra in (("without", []), ("server", ["--sm-mlflow", uri]),
                                ("down", ["--sm-mlflow", down])):
                shutil.rmtree(root / "sm-artifacts", ignore_errors=True)
                times[name].append(timed([*command, *extra], root))
    finally:
        os.killpg(server.pid, 9)
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    without, tracked, unreachable = (median(times[k]) for k in ("without", "server", "down"))
    runs = args.runs_per_sweep
    print(f"{runs}-run sweep, median of {args.rounds} rounds (interleaved):")
    print(f"  without MLflow:          {without:6.2f} s")
    print(f"  with an MLflow server:   {tracked:6.2f} s  ({tracked / without:.2f}x,"
          f" {(tracked - without) / runs * 1000:.0f} ms per run)")
    print(f"  with the server down:    {unreachable:6.2f} s  ({unreachable / without:.2f}x,"
          f" +{unreachable - without:.2f} s in all)")


if __name__ == "__main__":
    main()
