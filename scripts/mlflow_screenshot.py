"""Make docs/mlflow-sweep.png: the MLflow UI comparing the runs of the learning-rate sweep.

Run it from anywhere, in the project's environment (mlflow with its server and UI installed):

    python scripts/mlflow_screenshot.py           # real sweep: pytest experiments -k lr_sweep
    python scripts/mlflow_screenshot.py --fake    # three fake runs instead (about 25 s)
    python scripts/mlflow_screenshot.py --fake --out /tmp/sweep.png

It starts a throwaway `mlflow server` (SQLite store and artifacts in a temporary folder, a free
port on 127.0.0.1), fills it, and stops it at the end, also on error. By default it fills it
with a real sweep, `python -m pytest experiments -k lr_sweep --sm-mlflow URL`, whose
`--sm-artifacts` go to the temporary folder so the repo's own sm-artifacts/ is untouched (one
to three minutes on 2 cores). `--fake` instead logs an equivalent sweep with MlflowClient in a
second: one parent run and three nested child runs (lr 1.0, 0.5, 0.1) with 3-step metric
series. The server's start adds about 15 s either way.

It then opens the UI's compare page for the child runs (`#/compare-runs?runs=[...]&experiments=
[...]`: a parallel-coordinates plot of the parameters that differ against the first metric the
runs logged, as MLflow chooses them, then the runs, their parameters and their final metrics side
by side) and takes a screenshot of it with headless
Chromium's `--screenshot`; it prints the path of the PNG.

Needs: Chromium (`apt-get install chromium`; `--browser` for another binary). No Python
dependency beyond mlflow.

The browser opens the UI as mlflow.localhost, not 127.0.0.1: on 127.0.0.1 or localhost the UI
opens its Assistant side panel on first load, over the page. Chromium resolves *.localhost to
the loopback address, and the server is told to accept that Host header and Origin.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXPERIMENT = "lr_sweep"
UI_HOST = "mlflow.localhost"
WINDOW = "1600,1800"


def log(msg: str) -> None:
    print(f"mlflow_screenshot: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
        "--artifacts-destination", str(tmp / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--allowed-hosts", f"127.0.0.1:{port},{UI_HOST}:{port}",
        "--cors-allowed-origins", f"http://{UI_HOST}:{port}",
    ]  # fmt: skip
    log(f"starting mlflow server on port {port}")
    with open(tmp / "server.log", "wb") as out:
        # its own process group, so that stopping it also stops its workers
        # without its job runner, whose processes would outlive the server's process group
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        return proc
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
    except BaseException:
        stop_server(proc)
        raise
    stop_server(proc)
    tail = (tmp / "server.log").read_text(errors="replace")[-3000:]
    raise SystemExit(f"mlflow server did not answer /health:\n{tail}")


def stop_server(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            pass


def run_sweep(uri: str, tmp: Path) -> None:
    cmd = [
        sys.executable, "-m", "pytest", "experiments", "-k", EXPERIMENT,
        "--sm-mlflow", uri, "--sm-artifacts", str(tmp / "sm-artifacts"),
        "-p", "no:cacheprovider",
    ]  # fmt: skip
    log("running " + " ".join(cmd[2:]))
    rc = subprocess.run(cmd, cwd=REPO, stdout=sys.stderr).returncode
    if rc not in (0, 1):  # 1: some run failed its thresholds, it is still in MLflow
        raise SystemExit(f"pytest exited with {rc}")


def fake_sweep(uri: str) -> None:
    """Log what `--sm-mlflow` logs for the sweep: a parent run, one nested run per item."""
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(uri)
    exp = client.create_experiment(EXPERIMENT)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parent = client.create_run(
        exp, run_name=f"{EXPERIMENT} {stamp}", tags={"sm_pytest.kind": "file"}
    ).info.run_id
    for lr, final in ((1.0, 0.985), (0.5, 0.97), (0.1, 0.91)):
        tags = {
            "mlflow.parentRunId": parent,
            "sm_pytest.kind": "item",
            "sm_pytest.verdict": "pass",
        }
        run = client.create_run(exp, run_name=f"{EXPERIMENT}[lr={lr}]", tags=tags).info.run_id
        now, metrics = int(time.time() * 1000), []
        for step in (1, 2, 3):
            err = round((1 - final) * (1 + 2 / step), 4)
            metrics += [
                Metric("train_loss", 3 * err, now + step, step),
                Metric("test_loss", 2 * err, now + step, step),
                Metric("test_accuracy", round(1 - err, 4), now + step, step),
            ]
        params = [Param("lr", str(lr)), Param("batch-size", "64"), Param("epochs", "3")]
        client.log_batch(run, metrics=metrics, params=params)
        client.set_terminated(run)
    client.set_terminated(parent)


def sweep_runs(uri: str) -> tuple[str, list[str]]:
    """The experiment id and the child runs of its newest parent run, in start order."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        raise SystemExit(f"no experiment {EXPERIMENT!r} in MLflow")
    eid = exp.experiment_id
    parents = client.search_runs(
        [eid],
        "tags.sm_pytest.kind = 'file'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not parents:
        raise SystemExit(f"no parent run in experiment {EXPERIMENT!r}")
    children = client.search_runs(
        [eid],
        f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    if not children:
        raise SystemExit(f"parent run {parents[0].info.run_name!r} has no child runs")
    log(f"experiment {eid}: " + ", ".join(r.info.run_name for r in children))
    return eid, [r.info.run_id for r in children]


def compare_page_url(port: int, eid: str, runs: list[str]) -> str:
    """The UI's compare page (what "Compare" on the selected runs of an experiment opens)."""
    query = {"runs": json.dumps(runs, separators=(",", ":")), "experiments": json.dumps([eid])}
    return f"http://{UI_HOST}:{port}/#/compare-runs?" + urllib.parse.urlencode(query, safe="[],")


def screenshot(browser: str, url: str, out: Path, tmp: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp / 'chromium'}", f"--window-size={WINDOW}",
        "--hide-scrollbars",
        "--virtual-time-budget=15000", f"--screenshot={out}", url,
    ]  # fmt: skip
    log(f"screenshot of {url}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except FileNotFoundError:
        raise SystemExit(f"{browser} not found: apt-get install chromium") from None
    if not out.is_file() or out.stat().st_size == 0:
        raise SystemExit(
            f"{browser} wrote no screenshot (rc {proc.returncode}):\n" + proc.stderr[-3000:]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fake",
        action="store_true",
        help="log a fake sweep with MlflowClient instead of running pytest",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "docs" / "mlflow-sweep.png",
        help="PNG to write (default: docs/mlflow-sweep.png)",
    )
    parser.add_argument("--browser", default="chromium", help="Chromium binary")
    args = parser.parse_args()
    # SIGTERM (a CI cancel, `timeout`) unwinds like Ctrl-C, so that the server is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    out = args.out.resolve()

    with tempfile.TemporaryDirectory(prefix="mlflow-screenshot-") as name:
        tmp = Path(name)
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        server = start_server(tmp, port)
        try:
            if args.fake:
                fake_sweep(uri)
            else:
                run_sweep(uri, tmp)
            eid, runs = sweep_runs(uri)
            screenshot(args.browser, compare_page_url(port, eid, runs), out, tmp)
        finally:
            stop_server(server)
    print(out)


if __name__ == "__main__":
    main()
