"""experiments/two_hosts.yaml, unchanged, passes its `expect` both ways that run here: two
local hosts, and an emulated 2-instance SageMaker job. It really trains (the MNIST sample,
4 epochs on 2 processes: about 20 s each way on 2 cores)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from conftest import needs_emulator

ROOT = Path(__file__).resolve().parents[1]


# Not importorskip: torch imported into this process would be dropped again with pytester's
# module snapshot, and collecting its remains can crash the interpreter.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")


@pytest.fixture
def two_hosts_project(mnist_project):
    shutil.copy(ROOT / "experiments" / "two_hosts.yaml",
                mnist_project.root / "experiments" / "two_hosts.yaml")
    return mnist_project


def _attempt(project) -> Path:
    return project.artifacts / "two_hosts" / "default" / "attempt-0001"


def test_two_local_hosts_train_and_pass(two_hosts_project):
    result = two_hosts_project.run_subprocess("-k", "two_hosts")
    result.assert_outcomes(passed=1)
    attempt = _attempt(two_hosts_project)
    log = (attempt / "train.log").read_text()
    # Rank 0 alone prints the epoch lines, on the first host.
    assert "[algo-1] epoch=4" in log and "[algo-2] epoch=" not in log
    for host in ("algo-1", "algo-2"):
        assert (attempt / f"{host}.log").is_file()
        config = json.loads((attempt / "hosts" / host / "input" / "config"
                             / "resourceconfig.json").read_text())
        assert config["current_host"] == host and config["hosts"] == ["algo-1", "algo-2"]
    reported = json.loads((attempt / "result.json").read_text())["final_metrics"]
    assert reported["test_accuracy"] >= 0.95
    assert (attempt / "model" / "model.pt").is_file()  # rank 0's, in the merged model


@needs_emulator
def test_an_emulated_two_instance_job_trains_and_passes(two_hosts_project):
    result = two_hosts_project.run_subprocess("-k", "two_hosts", "--sm", "--sm-emulate")
    result.assert_outcomes(passed=1)
    attempt = _attempt(two_hosts_project)
    request = json.loads((attempt / "request.json").read_text())
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert request["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    log = (attempt / "train.log").read_text()
    assert "[algo-1] epoch=4" in log
    reported = json.loads((attempt / "result.json").read_text())["final_metrics"]
    assert reported["test_accuracy"] >= 0.95
    assert (attempt / "model" / "model.pt").is_file()
