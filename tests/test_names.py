"""Every AWS name sm-pytest makes (sagemaker/names.py), checked against botocore's service
model and the SDK's own limit, on a corpus of ugly inputs."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import pytest

from sm_pytest.sagemaker import names
from sm_pytest.spec.experiment_file import RunSpec

botocore = pytest.importorskip("botocore.session")
MODEL = botocore.get_session().get_service_model("sagemaker")
SDK_LIMIT = 59  # sagemaker.core.experiments.run refuses longer run and experiment names


def rule(shape: str) -> tuple[re.Pattern, int, int]:
    meta = MODEL.shape_for(shape).metadata
    return re.compile(meta["pattern"]), meta["min"], meta["max"]


def valid(name: str, shape: str, limit: int | None = None) -> bool:
    pattern, low, high = rule(shape)
    return bool(pattern.fullmatch(name)) and low <= len(name) <= min(high, limit or high)


def run_of(experiment: str, swept: dict, repeat_index: int | None = None) -> RunSpec:
    run_id = ",".join(f"{k}={v}" for k, v in swept.items())
    return RunSpec(experiment=experiment, run_id=run_id, path=Path(f"{experiment}.yaml"),
                   line=1, description="", source_dir=Path("src"), entry_point="train.py",
                   hyperparameters=dict(swept), swept=swept, inputs={}, metric_definitions=(),
                   expect=(), marks=(), max_run=60, repeat_index=repeat_index)


EXPERIMENTS = [
    "lr_sweep", "baseline", "Batch LR.v2", "learning_rate_sweep_for_the_mnist_cnn_regression_gate",
    "ümlaut_expérience", "実験", "x" * 200, "_".join(["long"] * 50), "2024-01-sweep", "-leading",
    "--", "a.b[c]=d", "emoji🙂run", "MixedCase_Name",
]
SWEEPS = [
    {}, {"lr": 0.5}, {"lr": 1e-3}, {"lr": -0.5, "seed": -2}, {"lr": 1.0, "batch-size": 64},
    {"name": "a b/c"}, {"opt": "Adam", "betas": [0.9, 0.999]}, {"λ": 0.1},
    {f"axis_{i}": i / 7 for i in range(12)},  # a long zip id
    {"path": "s3://bucket/" + "k" * 150}, {"x": ""}, {"v": None}, {"flag": True},
    # Values whose readable forms agree: every one must still read differently.
    {"b": [1, -1]}, {"b": [1, 1]}, {"o": "a.b"}, {"o": "a-b"}, {"o": "a_b"}, {"s": 2},
    {"s": -2}, {"s": "minus2"}, {"r": 0.5}, {"r": "0p5"}, {"r": "0.5.1"}, {"r": "0-5-1"},
    {"e": 1e16}, {"e": 1e-16}, {"e": 1e20}, {"e": 1e-20}, {"e": "1e20"}, {"opt": "adam"},
    {"opt": "Adam"},
]
TOKENS = ["3fa2c1000", "3fa2c1001", "9b0e44000", "attempt-0001", "z" * 40]
CORPUS = [run_of(e, s, r) for e, s, r in itertools.product(EXPERIMENTS, SWEEPS, (None, 1))]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_names_and_their_run_groups_are_valid(experiment):
    for rollover in (1, 2, 999):
        name = names.experiment_name(experiment, rollover)
        assert valid(name, "ExperimentEntityName", SDK_LIMIT), name
        assert name == name.lower()  # the SDK lower-cases it; so must every comparison
        assert valid(names.run_group(name), "ExperimentEntityName"), name
    assert names.experiment_name(experiment, 2) == names.experiment_name(experiment) + "--2"


def test_no_experiment_is_another_files_rolled_over_experiment():
    # `sweep` rolled over must never land in `sweep_2`'s own experiment (nor `a` in `a-2`).
    files = EXPERIMENTS + [f"{e}{sep}{n}" for e in EXPERIMENTS + ["sweep"]
                           for sep in ("_", "-", "--", " ", ".") for n in (2, 3, 999)]
    own = {names.experiment_name(e) for e in files}
    rolled = {names.experiment_name(e, n) for e in files for n in (2, 3, 999)}
    assert own.isdisjoint(rolled)
    assert names.experiment_name("sweep", 2) == "sweep--2"
    assert names.experiment_name("sweep_2") == "sweep-2"


def test_experiment_names_are_readable_and_distinct():
    assert names.experiment_name("lr_sweep") == names.experiment_name("lr-sweep") == "lr-sweep"
    assert names.experiment_name("ümlaut_expérience") == "umlaut-experience"
    long = names.experiment_name("x" * 200)
    assert long.startswith("x" * 40) and len(long) <= 54  # room left for `--999`
    assert names.experiment_name("x" * 200) != names.experiment_name("x" * 199)
    assert names.experiment_name("実験") != names.experiment_name("試験")
    assert names.experiment_name("実験").startswith("experiment-")
    distinct = {names.slug(e) or e for e in EXPERIMENTS}
    assert len({names.experiment_name(e) for e in EXPERIMENTS}) == len(distinct)


def test_every_name_of_every_run_is_valid():
    for run, token in itertools.product(CORPUS, TOKENS):
        job = names.job_name(run, token)
        assert valid(job, "TrainingJobName", SDK_LIMIT), job  # also the Run's name
        experiment = names.experiment_name(run.experiment, 2)
        component = names.trial_component_name(experiment, job)
        assert valid(component, "ExperimentEntityName"), component
        assert valid(names.job_component_name(job), "ExperimentEntityName"), job
        display = names.display_name(run)
        assert valid(display, "ExperimentEntityName"), display


def test_job_names_are_unique_within_and_across_sessions():
    jobs = [names.job_name(run, token) for run, token in itertools.product(CORPUS, TOKENS)]
    assert len(set(jobs)) == len(jobs)
    # Deterministic: the same run and token give the same name.
    assert jobs == [names.job_name(run, token) for run, token in
                    itertools.product(CORPUS, TOKENS)]


def test_display_names_tell_apart_the_runs_of_a_sweep():
    for experiment in EXPERIMENTS:
        shown = [names.display_name(run) for run in CORPUS if run.experiment == experiment]
        assert len(set(shown)) == len(shown), experiment


def test_display_names_keep_plain_values_readable_and_hash_lossy_ones():
    shown = {repr(swept): names.display_name(run_of("g", swept)) for swept in (
        {"b": [1, -1]}, {"b": [1, 1]}, {"o": "a.b"}, {"o": "a-b"}, {"s": -2}, {"s": "minus2"})}
    mark = names.short_hash("g", "b=[1, -1]", "None")
    assert shown["{'b': [1, -1]}"] == f"g--b-1-1-{mark}"
    assert len(set(shown.values())) == len(shown)
    assert shown["{'s': -2}"] == "g--s-minus2"  # numbers and plain words stay as they were
    assert names.display_name(run_of("g", {"opt": "Adam", "lr": 1e-05})) == (
        "g--opt-Adam--lr-1e-05")


def test_job_names_keep_the_sign_and_the_decimal_point():
    readable = {seed: names.job_name(run_of("g", {"seed": seed}), "t0")
                for seed in (2, -2, 0.2)}
    assert readable == {2: "g-seed-2-t0", -2: "g-seed-minus2-t0", 0.2: "g-seed-0p2-t0"}


def test_a_short_experiment_leaves_its_room_to_a_long_run_id():
    run = run_of("ab", {"path": "k" * 80})
    job = names.job_name(run, "3fa2c1004")
    assert job.startswith("ab-path-kkk") and len(job) == 59  # nothing reserved for `ab`
    assert job == "ab-path-" + "k" * (59 - len("ab-path--123456-3fa2c1004")) + (
        f"-{names.short_hash('ab', run.run_id, 'None')}-3fa2c1004")


def test_short_names_read_like_the_item():
    lr = run_of("lr_sweep", {"lr": 0.5})
    assert names.job_name(lr, "3fa2c1004") == "lr-sweep-lr-0p5-3fa2c1004"
    assert names.job_name(run_of("baseline", {}), "3fa2c1000") == "baseline-3fa2c1000"
    assert names.display_name(lr) == "lr-sweep--lr-0p5"
    assert names.display_name(run_of("grid", {"lr": 1e-3, "seed": -2}, 2)) == (
        "grid--lr-0p001--seed-minus2--repeat3")
    assert names.trial_component_name("lr-sweep", "lr-sweep-lr-0p5-3fa2c1004") == (
        "lr-sweep-lr-sweep-lr-0p5-3fa2c1004")
    assert names.run_group("lr-sweep--2") == "Default-Run-Group-lr-sweep--2"


def test_long_names_keep_the_run_and_a_hash_and_cut_the_experiment():
    experiment = "learning_rate_sweep_for_the_mnist_cnn_regression_gate"
    half, full = run_of(experiment, {"lr": 0.5}), run_of(experiment, {"lr": 0.05})
    a, b = names.job_name(half, "3fa2c1004"), names.job_name(full, "3fa2c1005")
    assert a.startswith("learning-rate-sweep") and a.endswith("-lr-0p5-" + a[-16:-10] +
                                                               "-3fa2c1004")
    assert "-lr-0p05-" in b
    weekly = run_of(experiment + "_weekly", {"lr": 0.5})  # the README's example
    assert names.job_name(weekly, "3fa2c1004") == (
        "learning-rate-sweep-for-the-mnist-c-lr-0p5-2b39cb-3fa2c1004")
    # The hash is the run's, not the session's: the same run reads the same every session.
    assert names.job_name(half, "9b0e44000")[:-9] == a[:-9]
    zipped = run_of("grid", {f"axis_{i}": i / 7 for i in range(12)})
    job = names.job_name(zipped, "3fa2c1004")
    assert job.startswith("grid-axis-0-0p0-axis-1-0p14") and job.endswith("-3fa2c1004")
    shown = names.display_name(zipped)
    assert shown.startswith("grid--axis-0-0p0--axis-1-0p142857") and len(shown) <= 120


def test_a_name_that_breaks_the_rules_is_an_error_even_under_python_o():
    import subprocess
    import sys

    code = ("from sm_pytest.sagemaker import names\n"
            "try:\n    names._checked('bad--', names.JOB_NAME_PATTERN, 59)\n"
            "except RuntimeError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1]).stdout
    assert out.startswith("sm-pytest made the name 'bad--', which breaks")


@pytest.mark.parametrize("token", ["", "-a", "a_b", "a--b", "x" * 41])
def test_bad_tokens_are_refused(token):
    with pytest.raises(ValueError, match="token"):
        names.job_name(run_of("lr_sweep", {"lr": 0.1}), token)


def test_a_large_exponent_never_reads_like_a_small_one():
    big, small = run_of("g", {"lr": 1e20}), run_of("g", {"lr": 1e-20})
    assert "lr-1e20" in names.job_name(big, "t0") and "1e-20" not in names.job_name(big, "t0")
    assert "lr-1e20" in names.display_name(big) and "1e-20" not in names.display_name(big)
    assert names.job_name(small, "t0") == "g-lr-1e-20-t0"
    # `1e20` written as a string reads the same: the hash tells the two apart.
    assert names.job_name(big, "t0") != names.job_name(run_of("g", {"lr": "1e20"}), "t0")


def test_a_search_trials_display_name_ends_with_its_number():
    trial = dataclasses.replace(run_of("lr_search", {}), trial_index=7)
    assert names.display_name(trial) == "lr-search--trial-007"
    swept = dataclasses.replace(run_of("lr_search", {"seed": 1}), trial_index=12)
    assert names.display_name(swept) == "lr-search--seed-1--trial-012"
