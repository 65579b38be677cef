"""--sm-mlflow: every run tracked in a real MLflow server (`mlflow server`, sqlite backend,
artifacts in a temp folder), the embedded sqlite:/// store, a server that stops mid-session
and the replay, and the usage errors."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd  # noqa: F401  (before any in-process pytester run: numpy loads once)
import pytest

from conftest import SM, needs_emulator, signal_pytest_when

# At the top, not in a test: a module first imported inside an in-process pytester run is
# dropped at its end, and a later test would patch a copy the next run does not use.
from sm_pytest.store import mlflow_setup

HAVE_MLFLOW = (importlib.util.find_spec("mlflow") is not None
               and importlib.util.find_spec("sqlalchemy") is not None)
pytestmark = pytest.mark.skipif(not HAVE_MLFLOW,
                                reason="needs the full mlflow package (the dev extra)")
if HAVE_MLFLOW:
    # Before any in-process pytester run: MLflow imported inside one would be dropped from
    # sys.modules at its end, and not import whole again in this process.
    import mlflow  # noqa: F401

SWEEP = """
    description: accuracy sweep
    base: config/base.yaml
    matrix: {accuracy: [0.97, 0.96, 0.5]}
    expect: {accuracy: ">= 0.9"}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`mlflow server` on a free port, over a sqlite file that outlives it (restart())."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.process: subprocess.Popen | None = None
        self.uri = ""

    def start(self) -> Server:
        port = _free_port()
        self.uri = f"http://127.0.0.1:{port}"
        log = open(self.folder / f"server-{port}.log", "w")  # noqa: SIM115 (the server's)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.folder / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # Without its job runner: seven fewer processes (about 190 MB each), which
            # outlive a killed server in sessions of their own.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server ended: see {log.name}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not answer within 120 s: see {log.name}")

    def stop(self) -> None:
        # Killed, not asked: a throw-away server has nothing to save, and its graceful
        # shutdown takes seconds.
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("mlflow")).start()
    yield server
    server.stop()


def runs_of(client, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([found.experiment_id], max_results=1000)


def family(client, experiment: str) -> tuple:
    """The one parent run of `experiment`, and its children by run name."""
    runs = runs_of(client, experiment)
    parents = [r for r in runs if r.data.tags.get("sm_pytest.kind") == "file"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    parent = parents[0]
    children = {r.info.run_name: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    return parent, children


def steps(client, run, metric: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, metric)]


def artifacts(client, run, path: str | None = None) -> set[str]:
    return {f.path for f in client.list_artifacts(run.info.run_id, path)}


def test_a_sweep_is_one_parent_with_a_child_per_item(project, mlflow_server):
    project.experiment("mlf_sweep", SWEEP)
    result = project.run("--sm-mlflow", mlflow_server.uri)
    result.assert_outcomes(passed=2, failed=1)
    assert f"MLflow: 3 runs tracked at {mlflow_server.uri}: {mlflow_server.uri}/#/experiments/" \
        in result.stdout.str()
    client = mlflow_server.client()
    parent, children = family(client, "mlf_sweep")
    assert parent.info.status == "FINISHED"  # every training completed; one missed its bar
    assert parent.info.run_name.startswith("mlf_sweep ")
    assert parent.data.tags["mlflow.note.content"] == "accuracy sweep"
    assert {k: parent.data.tags[k] for k in ("sm_pytest.items", "sm_pytest.passed",
                                             "sm_pytest.failed", "sm_pytest.verdict")} == {
        "sm_pytest.items": "3", "sm_pytest.passed": "2", "sm_pytest.failed": "1",
        "sm_pytest.verdict": "fail"}
    assert sorted(children) == ["mlf_sweep[accuracy=0.5]", "mlf_sweep[accuracy=0.96]",
                                "mlf_sweep[accuracy=0.97]"]
    low = children["mlf_sweep[accuracy=0.5]"]
    assert low.info.status == "FINISHED"
    assert low.data.tags["sm_pytest.verdict"] == "fail"
    assert low.data.tags["sm_pytest.status"] == "completed"
    assert "accuracy >= 0.9: 0.5 (fail)" in low.data.tags["sm_pytest.checks"]
    assert low.data.params == {"accuracy": "0.5", "epochs": "2", "backend": "local",
                               "instance_type": "local", "instance_count": "1"}
    assert steps(client, low, "accuracy") == [(0, 0.49), (1, 0.5)]
    assert steps(client, low, "loss") == [(0, 0.2), (1, 0.1)]
    for child in children.values():
        tags = child.data.tags
        assert tags["sm_pytest.kind"] == "item"
        assert tags["sm_pytest.session"] == parent.data.tags["sm_pytest.session"]
        assert len(tags["sm_pytest.fingerprint"]) >= 16
        assert artifacts(client, child) >= {"train.log", "result.json", "metrics.csv", "model"}
        assert artifacts(client, child, "model") == {"model/model.txt"}
    passing = children["mlf_sweep[accuracy=0.97]"]
    assert passing.data.tags["sm_pytest.verdict"] == "pass"
    assert passing.data.metrics == {"accuracy": 0.97, "loss": 0.1}  # the last step's values
    log = client.download_artifacts(passing.info.run_id, "train.log", str(project.root))
    assert "epoch=2 loss=0.1000 accuracy=0.9700" in Path(log).read_text()


def test_a_failed_run_is_failed_with_its_reason(project, mlflow_server):
    project.experiment("mlf_crash", """
        base: config/base.yaml
        hyperparameters: {crash: "out of memory"}
        expect: {accuracy: ">= 0.9"}
    """)
    project.run("--sm-mlflow", mlflow_server.uri).assert_outcomes(errors=1)
    parent, children = family(mlflow_server.client(), "mlf_crash")
    (child,) = children.values()
    assert child.info.status == "FAILED"
    assert "out of memory" in child.data.tags["sm_pytest.failure_reason"]
    assert "out of memory" in child.data.tags["mlflow.note.content"]
    assert child.data.tags["sm_pytest.verdict"] == "error"
    assert parent.info.status == "FAILED"


def test_each_repeat_is_a_child_of_its_item(project, mlflow_server):
    project.experiment("mlf_repeat", """
        base: config/base.yaml
        repeat: 2
        expect: {accuracy: ">= 0.9"}
    """)
    project.run("--sm-mlflow", mlflow_server.uri).assert_outcomes(passed=1)
    client = mlflow_server.client()
    parent, children = family(client, "mlf_repeat")
    (item,) = children.values()
    assert item.info.run_name == "mlf_repeat" and item.data.tags["sm_pytest.kind"] == "item"
    assert item.data.metrics == {"accuracy": 0.97, "loss": 0.1}  # the mean of the repeats
    repeats = {r.info.run_name: r for r in runs_of(client, "mlf_repeat")
               if r.data.tags.get("mlflow.parentRunId") == item.info.run_id}
    assert sorted(repeats) == ["mlf_repeat repeat 1", "mlf_repeat repeat 2"]
    seeds = set()
    for run in repeats.values():
        assert run.data.tags["sm_pytest.kind"] == "repeat"
        assert run.info.status == "FINISHED"
        assert steps(client, run, "accuracy") == [(0, 0.96), (1, 0.97)]
        assert "train.log" in artifacts(client, run)
        seeds.add(run.data.params.get("seed"))
    assert len(seeds) == 2, seeds  # each repeat has its own seed


def test_each_trial_of_a_search_is_a_child_of_its_item(project, mlflow_server):
    project.experiment("mlf_search", """
        base: config/base.yaml
        tune:
          strategy: Grid
          objective: {metric: accuracy, type: Maximize}
          max_parallel_jobs: 2
          ranges: {accuracy: {values: [0.91, 0.97, 0.95]}}
        expect: {accuracy: ">= 0.9"}
    """)
    project.run("--sm-mlflow", mlflow_server.uri).assert_outcomes(passed=1)
    client = mlflow_server.client()
    parent, children = family(client, "mlf_search")
    (item,) = children.values()
    assert item.data.metrics["accuracy"] == 0.97  # the best trial's
    trials = {r.info.run_name: r for r in runs_of(client, "mlf_search")
              if r.data.tags.get("mlflow.parentRunId") == item.info.run_id}
    assert sorted(trials) == [f"mlf_search trial {n}" for n in (1, 2, 3)]
    best = [r for r in trials.values() if r.data.tags["sm_pytest.best"] == "true"]
    assert [r.info.run_name for r in best] == ["mlf_search trial 2"]
    assert all(r.data.tags["sm_pytest.kind"] == "trial" for r in trials.values())
    assert trials["mlf_search trial 3"].data.params["accuracy"] == "0.95"


def test_under_xdist_the_controller_tracks_every_workers_runs(project, mlflow_server):
    project.experiment("mlf_xdist", SWEEP)
    result = project.run_subprocess("-n", "2", "--sm-mlflow", mlflow_server.uri)
    result.assert_outcomes(passed=2, failed=1)
    client = mlflow_server.client()
    parent, children = family(client, "mlf_xdist")
    assert len(children) == 3
    assert all(c.info.status == "FINISHED" for c in children.values())
    assert all(steps(client, c, "loss") == [(0, 0.2), (1, 0.1)] for c in children.values())
    assert parent.info.status == "FINISHED" and parent.data.tags["sm_pytest.passed"] == "2"
    # the same records as a session without -n: params, tags and artifacts
    low = children["mlf_xdist[accuracy=0.5]"]
    assert low.data.params == {"accuracy": "0.5", "epochs": "2", "backend": "local",
                               "instance_type": "local", "instance_count": "1"}
    assert low.data.tags["sm_pytest.verdict"] == "fail"
    assert "accuracy >= 0.9: 0.5 (fail)" in low.data.tags["sm_pytest.checks"]
    for child in children.values():
        assert artifacts(client, child) >= {"train.log", "result.json", "metrics.csv", "model"}


@needs_emulator
def test_sagemaker_jobs_are_tracked_from_the_controller_with_their_job_names(project,
                                                                           mlflow_server):
    project.experiment("mlf_sm", """
        base: config/base.yaml
        matrix: {accuracy: [0.97, 0.96]}
        expect: {accuracy: ">= 0.9"}
    """)
    project.run_subprocess(*SM, "--sm-mlflow", mlflow_server.uri).assert_outcomes(passed=2)
    client = mlflow_server.client()
    parent, children = family(client, "mlf_sm")
    assert parent.info.status == "FINISHED" and len(children) == 2
    for child in children.values():
        assert child.info.status == "FINISHED"
        assert child.data.tags["sm_pytest.job_name"].startswith("mlf-sm-")
        assert child.data.params["backend"] == "sagemaker"
        assert child.data.params["instance_type"] == "ml.m5.xlarge"
        assert steps(client, child, "accuracy")[-1][1] in (0.97, 0.96)
        assert {"train.log", "result.json", "metrics.csv", "model"} <= artifacts(client, child)


def test_an_embedded_sqlite_store_needs_no_server(project):
    project.experiment("mlf_embedded", SWEEP)
    # relative to where pytest is started, as any command-line path
    project.run("--sm-mlflow", "sqlite:///mlruns.db").assert_outcomes(passed=2, failed=1)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project.root / 'mlruns.db'}")
    parent, children = family(client, "mlf_embedded")
    assert len(children) == 3 and parent.info.status == "FINISHED"
    assert "model" in artifacts(client, children["mlf_embedded[accuracy=0.97]"])


def test_cached_runs_are_not_logged_again_and_the_parent_says_so(project, mlflow_server):
    project.experiment("mlf_cached", """
        base: config/base.yaml
        expect: {accuracy: ">= 0.9"}
    """)
    project.run("--sm-mlflow", mlflow_server.uri, "--sm-reuse").assert_outcomes(passed=1)
    project.run("--sm-mlflow", mlflow_server.uri, "--sm-reuse").assert_outcomes(passed=1)
    runs = runs_of(mlflow_server.client(), "mlf_cached")
    parents = [r for r in runs if r.data.tags["sm_pytest.kind"] == "file"]
    items = [r for r in runs if r.data.tags["sm_pytest.kind"] == "item"]
    assert len(parents) == 2 and len(items) == 1
    # The first session's parent holds the trained item; two sessions can start within
    # the same second, so their ids do not order them.
    first = items[0].data.tags["mlflow.parentRunId"]
    (second,) = [p for p in parents if p.info.run_id != first]
    assert second.data.tags["sm_pytest.cached_items"] == "mlf_cached"
    assert "sm_pytest.cached_items" not in next(
        p for p in parents if p.info.run_id == first).data.tags


def test_models_are_left_out_when_the_ini_says_so(project, mlflow_server):
    project.pytester.makeini("[pytest]\nsm_mlflow_log_models = false\n"
                             "filterwarnings = ignore::pytest.PytestAssertRewriteWarning\n")
    project.experiment("mlf_nomodel", "base: config/base.yaml\n")
    project.run("--sm-mlflow", mlflow_server.uri).assert_outcomes(passed=1)
    client = mlflow_server.client()
    _, children = family(client, "mlf_nomodel")
    assert artifacts(client, children["mlf_nomodel"]) == {"train.log", "result.json",
                                                          "metrics.csv"}


def test_the_ini_value_tracks_without_the_option(project, mlflow_server):
    project.pytester.makeini(f"[pytest]\nsm_mlflow_uri = {mlflow_server.uri}\n"
                             "filterwarnings = ignore::pytest.PytestAssertRewriteWarning\n")
    project.experiment("mlf_ini", "base: config/base.yaml\n")
    project.run().assert_outcomes(passed=1)
    _, children = family(mlflow_server.client(), "mlf_ini")
    assert list(children) == ["mlf_ini"]


def test_history_reads_the_experiment_back_from_mlflow(project, mlflow_server):
    project.experiment("mlf_history", SWEEP)
    project.run("--sm-mlflow", mlflow_server.uri).assert_outcomes(passed=2, failed=1)
    result = project.pytester.runpytest("--sm-history", "mlf_history", "--sm-mlflow",
                                        mlflow_server.uri)
    assert result.ret == 0
    out = result.stdout.str()
    assert "mlf_history[accuracy=0.5]" in out and "metrics.accuracy" in out
    assert "params.accuracy" in out and "FINISHED" in out
    from sm_pytest.store.mlflow_runs import history_frame

    frame = history_frame(mlflow_server.uri, "mlf_history")
    assert sorted(frame["kind"]) == ["file", "item", "item", "item"]
    assert sorted(frame.loc[frame["kind"] == "item", "verdict"]) == ["fail", "pass", "pass"]


# -- a server that goes away ----------------------------------------------------------------

STOP_SERVER_AFTER_FIRST_ITEM = """
import os, signal, socket, time, pytest

@pytest.hookimpl(trylast=True)  # after sm-pytest's recorder has sent the first item
def pytest_runtest_logreport(report):
    if report.when != "teardown" or getattr(report, "sm_run", None) is None:
        return
    if os.environ.pop("MLFLOW_SERVER_LIVE", None):
        os.killpg(int(os.environ["MLFLOW_SERVER_PID"]), signal.SIGKILL)
        for _ in range(400):  # until the port refuses connections
            try:
                socket.create_connection(("127.0.0.1", int(os.environ["MLFLOW_SERVER_PORT"])),
                                         timeout=1).close()
            except OSError:
                return
            time.sleep(0.05)
"""


def test_a_server_that_stops_mid_session_costs_no_result_and_the_replay_sends_the_rest(
        project, tmp_path, monkeypatch):
    server = Server(tmp_path).start()
    try:
        project.experiment("mlf_outage", SWEEP)
        project.pytester.makeconftest(STOP_SERVER_AFTER_FIRST_ITEM)
        monkeypatch.setenv("MLFLOW_SERVER_PID", str(server.process.pid))
        monkeypatch.setenv("MLFLOW_SERVER_PORT", server.uri.rsplit(":", 1)[1])
        monkeypatch.setenv("MLFLOW_SERVER_LIVE", "1")
        result = project.run_subprocess("--sm-mlflow", server.uri)
        result.assert_outcomes(passed=2, failed=1)  # every result, as without MLflow
        server.process.wait(timeout=30)
        out = result.stdout.str()
        assert f"MLflow: 2 of 3 runs not tracked at {server.uri}; kept, and" \
               f" `sm-pytest mlflow-sync --artifacts sm-artifacts` sends them:" in out, out
        assert "mlf_outage[accuracy=0.96]: not reachable (connection refused)" in out
        assert "the parent runs of mlf_outage stay RUNNING in MLflow until then" in out
        assert "Traceback" not in out and "INTERNALERROR" not in out
        # Nothing lost: the attempt folders, the local store and the summary have all three.
        from sm_pytest.store.tracking import runs_frame

        assert len(runs_frame(project.artifacts / "tracking.sqlite")) == 3
        assert len(pd.read_csv(project.artifacts / "summary.csv")) == 3
        summary_md = (project.artifacts / "summary.md").read_text()
        assert "2 of 3 runs not tracked" in summary_md

        server.start()  # the same store, back on another port
        sync = subprocess.run(
            [sys.executable, "-m", "sm_pytest.cli", "mlflow-sync", "--artifacts",
             str(project.artifacts), "--uri", server.uri],
            capture_output=True, text=True, timeout=300, check=False)
        assert sync.returncode == 0, sync.stdout + sync.stderr
        assert "3 sent, 0 left" in sync.stdout  # two runs and the end of the parent
        parent, children = family(server.client(), "mlf_outage")
        assert len(children) == 3
        assert all(c.info.status == "FINISHED" for c in children.values())
        assert parent.info.status == "FINISHED" and parent.data.tags["sm_pytest.passed"] == "2"
        again = subprocess.run(
            [sys.executable, "-m", "sm_pytest.cli", "mlflow-sync", "--artifacts",
             str(project.artifacts)], capture_output=True, text=True, timeout=60, check=False)
        assert again.returncode == 0 and "nothing to send" in again.stdout
    finally:
        server.stop()


def test_a_server_that_never_answers_costs_one_short_wait(project):
    """Down from the start: the first item waits out MLflow's few retries, the others are
    only queued, and the session still passes."""
    project.experiment("mlf_down", SWEEP)
    began = time.monotonic()
    uri = f"http://127.0.0.1:{_free_port()}"
    result = project.run("--sm-mlflow", uri)
    result.assert_outcomes(passed=2, failed=1)
    assert time.monotonic() - began < 60
    assert "MLflow: 3 of 3 runs not tracked" in result.stdout.str()
    from sm_pytest.store.mlflow_outbox import Outbox

    rows = Outbox(project.artifacts / "tracking.sqlite").rows()
    assert [r.kind for r in rows] == ["run", "run", "run", "end"]
    # The next session says that the earlier one's runs are still waiting.
    again = project.run("--sm-mlflow", uri, "-k", "0.97")
    assert (f"MLflow: 3 runs of earlier sessions ({rows[0].session}) are still to be sent;"
            " `sm-pytest mlflow-sync --artifacts sm-artifacts` sends them") in again.stdout.str()


def test_a_refused_call_is_named_and_the_run_kept(project, mlflow_server):
    """The server answers but refuses: a deleted experiment cannot take runs. The session
    passes, the notice says what to do, and the run waits in the outbox."""
    client = mlflow_server.client()
    client.delete_experiment(client.create_experiment("mlf_deleted"))
    project.experiment("mlf_deleted", "base: config/base.yaml\n")
    result = project.run("--sm-mlflow", mlflow_server.uri)
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "MLflow: 1 of 1 run not tracked" in out
    assert "the MLflow experiment 'mlf_deleted' is deleted; restore it" in out
    from sm_pytest.store.mlflow_outbox import Outbox

    assert [r.kind for r in Outbox(project.artifacts / "tracking.sqlite").rows()] == [
        "run", "end"]


def test_a_server_that_never_answers_is_waited_for_once(project, monkeypatch):
    """It accepts connections and says nothing: the first item waits out MLflow's timeout,
    the others are only queued, and the end of the session does not wait again."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    threading.Thread(target=lambda: held.extend(iter(lambda: listener.accept(), None)),
                     daemon=True).start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")  # the user's setting wins
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    project.experiment("mlf_silent", SWEEP)
    began = time.monotonic()
    try:
        result = project.run("--sm-mlflow", f"http://127.0.0.1:{listener.getsockname()[1]}")
    finally:
        listener.close()
    result.assert_outcomes(passed=2, failed=1)
    assert time.monotonic() - began < 20  # one wait of 2 s, not one per item
    out = result.stdout.str()
    assert "MLflow: 3 of 3 runs not tracked" in out and "not answering (timed out)" in out


def test_a_call_refused_halfway_leaves_no_half_run(project, mlflow_server):
    """The item run exists when its artifacts are refused: it is taken back, the record
    waits in the outbox, and the replay logs it once."""
    project.experiment("mlf_halfway", "base: config/base.yaml\n")
    project.pytester.makeconftest("""
import mlflow
from mlflow.exceptions import MlflowException

ORIGINAL = mlflow.MlflowClient.log_artifact

def refuse(self, *args, **kwargs):
    raise MlflowException("artifact store refused the upload")

def pytest_configure(config):
    mlflow.MlflowClient.log_artifact = refuse

def pytest_unconfigure(config):
    mlflow.MlflowClient.log_artifact = ORIGINAL
""")
    result = project.run("--sm-mlflow", mlflow_server.uri)
    result.assert_outcomes(passed=1)
    assert "artifact store refused the upload" in result.stdout.str()
    client = mlflow_server.client()
    _, children = family(client, "mlf_halfway")
    assert children == {}  # deleted, not left RUNNING
    (project.root / "conftest.py").unlink()
    from sm_pytest.store.mlflow_tracking import sync

    assert sync(project.artifacts / "tracking.sqlite", write=lambda line: None) == 0
    _, children = family(client, "mlf_halfway")
    assert list(children) == ["mlf_halfway"]
    assert children["mlf_halfway"].info.status == "FINISHED"


ENV_TRAIN = """
import os
print("MLFLOW_VARS", sorted(k for k in os.environ if k.startswith("MLFLOW_")), flush=True)
print("epoch=1 loss=0.1 accuracy=0.97", flush=True)
"""


def test_the_runs_do_not_inherit_the_trackers_http_settings(project, mlflow_server):
    (project.root / "src" / "train.py").write_text(ENV_TRAIN)
    project.experiment("mlf_env", "base: config/base.yaml\nmatrix: {accuracy: [1, 2, 3]}\n")
    project.run("--sm-mlflow", mlflow_server.uri).assert_outcomes(passed=3)
    logs = sorted((project.artifacts / "mlf_env").glob("*/attempt-0001/train.log"))
    assert len(logs) == 3
    assert all("MLFLOW_VARS []" in log.read_text() for log in logs)


def test_a_reused_run_that_mlflow_never_saw_is_logged_once(project, mlflow_server):
    project.experiment("mlf_unseen", "base: config/base.yaml\n")
    project.run("--sm-reuse").assert_outcomes(passed=1)  # trained without MLflow
    project.run("--sm-reuse", "--sm-mlflow", mlflow_server.uri).assert_outcomes(passed=1)
    project.run("--sm-reuse", "--sm-mlflow", mlflow_server.uri).assert_outcomes(passed=1)
    items = [r for r in runs_of(mlflow_server.client(), "mlf_unseen")
             if r.data.tags["sm_pytest.kind"] == "item"]
    assert len(items) == 1 and items[0].data.tags["sm_pytest.reused"] == "true"


def test_history_of_an_unknown_experiment_is_an_error_naming_those_there(project,
                                                                         mlflow_server):
    project.experiment("mlf_known", "base: config/base.yaml\n")
    project.run("--sm-mlflow", mlflow_server.uri).assert_outcomes(passed=1)
    result = project.pytester.runpytest("--sm-history", "mlf_unknown", "--sm-mlflow",
                                        mlflow_server.uri)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "has no experiment 'mlf_unknown'; it has" in result.stderr.str()
    assert "mlf_known" in result.stderr.str()
    dashed = project.pytester.runpytest("--sm-history", "mlf-known", "--sm-mlflow",
                                        mlflow_server.uri)
    assert dashed.ret == 0 and "mlf_known" in dashed.stdout.str()


def test_an_interrupted_session_ends_its_runs_as_killed(project, mlflow_server):
    project.experiment("mlf_interrupted", """
        base: config/base.yaml
        hyperparameters: {sleep: 60}
    """)
    returncode, output = signal_pytest_when(
        project.root, ["--sm-mlflow", mlflow_server.uri],
        project.artifacts / "mlf_interrupted" / "default" / "attempt-0001" / "train.log",
        "epoch=2")
    assert returncode == pytest.ExitCode.INTERRUPTED, output
    assert "MLflow: 1 run tracked" in output, output
    parent, children = family(mlflow_server.client(), "mlf_interrupted")
    assert parent.info.status == "KILLED"
    (child,) = children.values()
    assert child.info.status == "KILLED" and child.data.tags["sm_pytest.status"] == "interrupted"


# -- MLflow's per-call limits ---------------------------------------------------------------

def test_long_series_and_many_params_are_sent_in_batches_within_the_limits(mlflow_server):
    from sm_pytest.model import RunRecord
    from sm_pytest.store.mlflow_runs import RunLogger

    long = [i / 2500 for i in range(2500)]
    rec = RunRecord(experiment="mlf_batches", name="mlf_batches", status="completed",
                    verdict="pass", hyperparameters={f"p{i}": i for i in range(150)},
                    metric_series={"loss": long}, final_metrics={"loss": long[-1]},
                    started_at=time.time() - 10, ended_at=time.time())
    logger = RunLogger(mlflow_server.client())
    run_id = logger.log(rec, "s-batches")
    client = mlflow_server.client()
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(2500))
    assert len(client.get_run(run_id).data.params) == 153  # 150 and backend, type, count


# -- usage errors ---------------------------------------------------------------------------

@pytest.mark.parametrize(("uri", "message"), [
    ("mlfow://host", "is not a tracking URI sm-pytest can use: give a server"
                     " (http://HOST:PORT), an embedded store (sqlite:///mlruns.db)"),
    ("http://", "has no host; write it as http://HOST:PORT"),
    ("sqlite:///no/such/folder/mlruns.db", "the folder"),
    ("sqlite://mlruns.db", "write an sqlite store as sqlite:///FILE.db"),
    ("http://localhost:notaport", "the port must be a number from 1 to 65535"),
    ("localhost:5000", "write a server as http://localhost:5000"),
    ("arn:aws:sagemaker:us-east-1:123:mlflow-tracking-server/team",
     "is not the ARN of a SageMaker MLflow tracking server"),
])
def test_a_bad_uri_is_one_usage_error_before_anything_runs(project, uri, message):
    project.experiment("baseline", "base: config/base.yaml\n")
    result = project.run("--sm-mlflow", uri)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "nothing was run: --sm-mlflow" in result.stderr.str()
    assert message in result.stderr.str()
    assert not (project.artifacts / "baseline").exists()


def test_a_bad_ini_value_names_the_ini_file(project):
    project.pytester.makeini("[pytest]\nsm_mlflow_uri = ftp://nowhere\n")
    project.experiment("baseline", "base: config/base.yaml\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini sm_mlflow_uri in" in result.stderr.str() and "tox.ini" in result.stderr.str()


@pytest.mark.parametrize(("missing", "uri", "message"), [
    ("mlflow", "http://127.0.0.1:5000",
     "--sm-mlflow needs the MLflow client: pip install 'sm-pytest[mlflow]'"),
    ("sagemaker_mlflow",
     "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team",
     "a SageMaker ARN needs the sagemaker-mlflow plugin:"
     " pip install 'sm-pytest[mlflow-sagemaker]'"),
    ("sqlalchemy", "sqlite:///mlruns.db",
     "a sqlite store needs the full MLflow package, not the client alone:"
     " pip install 'mlflow==3.17.2'"),
])
def test_a_missing_extra_is_named(project, monkeypatch, missing, uri, message):
    real = mlflow_setup.find_spec
    monkeypatch.setattr(mlflow_setup, "find_spec",
                        lambda name: None if name == missing else real(name))
    project.experiment("baseline", "base: config/base.yaml\n")
    result = project.run("--sm-mlflow", uri)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_a_valid_arn_with_the_plugin_is_accepted(monkeypatch):
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-app/app-ABC123"
    monkeypatch.setattr(mlflow_setup, "find_spec", lambda name: object())
    assert mlflow_setup.check_uri(arn) == arn


def test_collecting_with_mlflow_tracking_does_not_import_mlflow(project):
    project.experiment("baseline", "base: config/base.yaml\n")
    (project.root / "conftest.py").write_text(
        "import sys, json\n"
        "def pytest_collection_finish(session):\n"
        "    json.dump(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'),"
        " open('loaded.json', 'w'))\n")
    project.run_subprocess("--collect-only", "--sm-mlflow", "http://127.0.0.1:9")
    assert json.loads((project.root / "loaded.json").read_text()) == []
