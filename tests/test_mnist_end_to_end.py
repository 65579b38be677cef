"""The real thing, small: the bundled train.py trains one short epoch on the MNIST sample
through `pytest`, and the saved model loads and scores what the run reported."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

# Imported at collection, not inside the test: a module first imported while pytester's
# module snapshot is active is dropped again afterwards, and collecting torch's remains can
# crash the interpreter later in the session.
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


def test_mnist_trains_and_the_model_loads(mnist_project):
    mnist_project.experiment("baseline", """
        base: config/mnist.yaml
        hyperparameters: {epochs: 1, limit-train: 2000}
        expect:
          test_accuracy: ">= 0.75"
          test_loss: "< 1.0"
    """)
    result = mnist_project.run_subprocess()
    result.assert_outcomes(passed=1)
    attempt = mnist_project.artifacts / "baseline" / "default" / "attempt-0001"
    reported = json.loads((attempt / "result.json").read_text())["final_metrics"]
    assert 0.75 <= reported["test_accuracy"] <= 1.0
    assert reported["samples_per_second"] > 0
    metrics = json.loads((attempt / "output" / "data" / "metrics.json").read_text())
    assert metrics["epochs"] == 1
    assert (attempt / "checkpoints" / "checkpoint.pt").is_file()

    # Load the model the way a user would: the code snapshot + model.json + state_dict.
    meta = json.loads((attempt / "model" / "model.json").read_text())
    module_name, class_name = meta["class"].rsplit(".", 1)
    sys.path.insert(0, str(attempt / "code"))
    try:
        net = getattr(importlib.import_module(module_name), class_name)()
        data = importlib.import_module("mnist_data")
        state = torch.load(attempt / "model" / meta["state_dict"], weights_only=True)
        net.load_state_dict(state)
        net.eval()
        images, labels = data.load_split(str(ROOT / "data" / "mnist-sample"), "test")
        with torch.inference_mode():
            accuracy = (net(images).argmax(1) == labels).float().mean().item()
    finally:
        sys.path.remove(str(attempt / "code"))
        for name in (module_name, "mnist_data"):
            sys.modules.pop(name, None)
    assert accuracy == pytest.approx(reported["test_accuracy"], abs=1e-3)


def test_mnist_on_emulated_spot_survives_an_interruption(mnist_project, monkeypatch):
    """The real train.py as an emulated SageMaker spot job that is interrupted after its
    first checkpoint: it resumes and finishes with the same number of epochs."""
    pytest.importorskip("moto")
    mnist_project.experiment("baseline", """
        base: config/mnist.yaml
        hyperparameters: {epochs: 2, limit-train: 1000}
        expect:
          test_accuracy: ">= 0.6"
    """)
    monkeypatch.setenv("SM_PYTEST_EMULATE_SPOT_INTERRUPTIONS", "baseline")
    result = mnist_project.run_subprocess("--sm", "--spot", "--sm-emulate")
    result.assert_outcomes(passed=1)
    attempt = mnist_project.artifacts / "baseline" / "default" / "attempt-0001"
    log = (attempt / "train.log").read_text()
    assert "resuming from checkpoint at epoch 1" in log
    meta = json.loads((attempt / "model" / "model.json").read_text())
    assert meta["epochs"] == 2
    assert (attempt / "model" / "model.pt").is_file()
    request = json.loads((attempt / "request.json").read_text())
    assert request["EnableManagedSpotTraining"] is True
