"""Under pytest-xdist nobody sees a worker's terminal: the notices of its SageMaker session
(refusals, rollovers, stopped jobs) reach the controller's output, so conftest's
_no_refusals guard holds under -n too."""

from __future__ import annotations

import importlib.util

import pytest

SM = ("--sm", "--sm-emulate", "--sm-region", "us-east-1")

# Looked up, not imported: pytester would unload what a test imports.
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("moto", "sagemaker", "xdist")),
    reason="needs the emulate extra (moto, sagemaker-core) and pytest-xdist")


def test_a_worker_s_refusal_and_rollover_notices_reach_the_controller(project, monkeypatch):
    # An earlier session left 49 runs in `sweep`: its 2 runs roll over, with a notice.
    monkeypatch.setenv("SM_PYTEST_EMULATE_EXPERIMENT_RUNS", "sweep=49")
    project.experiment("sweep", """
        base: config/base.yaml
        hyperparameters: {epochs: 1}
        matrix: {seed: [1, 2]}
    """)
    project.experiment("typo", """
        base: config/base.yaml
        sagemaker: {instance_type: ml.m5.xlarg}
    """)
    result = project.run_subprocess(*SM, "-n", "2", refusals=True)
    result.assert_outcomes(passed=2, errors=1)
    lines = result.outlines
    refusals = [i for i, line in enumerate(lines) if "the emulator refused" in line]
    assert len(refusals) == 1, "\n".join(lines)  # from the one worker that launched typo
    worker = lines[refusals[0]].split("]")[0] + "]"
    assert lines[refusals[0]] == f"{worker} the emulator refused 1 request(s), as AWS would:"
    # the worker's lines stay together, in their order
    assert lines[refusals[0] + 1].startswith(
        f"{worker}   CreateTrainingJob: 1 validation error detected: Value 'ml.m5.xlarg'")
    # the worker that planned for both says where the sweep went, once
    rollovers = [line for line in lines if "SageMaker experiment 'sweep' holds 49 of 50" in line]
    assert len(rollovers) == 1, "\n".join(lines)
    assert rollovers[0].startswith("[gw"), rollovers


def test_without_xdist_the_same_notices_are_printed_once(project, monkeypatch):
    monkeypatch.setenv("SM_PYTEST_EMULATE_EXPERIMENT_RUNS", "sweep=49")
    project.experiment("sweep", """
        base: config/base.yaml
        hyperparameters: {epochs: 1}
        matrix: {seed: [1, 2]}
    """)
    result = project.run_subprocess(*SM)
    result.assert_outcomes(passed=2)
    rollovers = [line for line in result.outlines
                 if line.startswith("SageMaker experiment 'sweep' holds 49 of 50")]
    assert len(rollovers) == 1, "\n".join(result.outlines)
