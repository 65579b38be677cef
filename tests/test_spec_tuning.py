"""The `tune:` block (issue 13): read into a TuneSpec with SageMaker's rules, each mistake a
collection error on its line; and the search points of Grid and Random."""

from __future__ import annotations

import math
import shutil
import statistics
import textwrap
from pathlib import Path

import pytest

from sm_pytest.spec.experiment_file import load_experiment
from sm_pytest.spec.tuning import (
    CATEGORICAL,
    CONTINUOUS,
    INTEGER,
    Range,
    TuneSpec,
    grid_points,
    random_points,
)
from sm_pytest.spec.yamlsafe import YamlError

REPO = Path(__file__).resolve().parents[1]

ISSUE_EXAMPLE = """\
# experiments/lr_search.yaml -> one item, lr_search
base: config/mnist.yaml
hyperparameters: {epochs: 2}
tune:
  strategy: Bayesian                 # Bayesian | Random | Hyperband | Grid (SageMaker's names)
  objective: {metric: test_accuracy, type: Maximize}
  max_jobs: 12
  max_parallel_jobs: 3
  ranges:
    lr: {min: 0.01, max: 2.0, scaling: Logarithmic}
    gamma: {min: 0.5, max: 0.99}
    batch-size: {values: [32, 64, 128]}
  early_stopping: Auto
  random_seed: 7
expect: {test_accuracy: ">= 0.96"}   # judged on the best trial
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project with this repository's config/mnist.yaml (and an empty data folder)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('test_accuracy=0.97')\n")
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "mnist.yaml", tmp_path / "config" / "mnist.yaml")
    (tmp_path / "data" / "mnist-sample").mkdir(parents=True)
    (tmp_path / "experiments").mkdir()
    return tmp_path


def load(root: Path, body: str, name: str = "lr_search"):
    path = root / "experiments" / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return load_experiment(path, root)


# --- reading the block ------------------------------------------------------------------------

def test_the_issue_example_is_one_item_with_its_search(root):
    (run,) = load(root, ISSUE_EXAMPLE)
    assert (run.name, run.line) == ("lr_search", 4)  # the item points at `tune:`
    assert run.tune == TuneSpec(
        strategy="Bayesian", objective_metric="test_accuracy", objective_type="Maximize",
        max_jobs=12, max_parallel_jobs=3, early_stopping="Auto", random_seed=7,
        ranges=(Range("lr", CONTINUOUS, min=0.01, max=2.0, scaling="Logarithmic", line=10),
                Range("gamma", CONTINUOUS, min=0.5, max=0.99, line=11),
                Range("batch-size", CATEGORICAL, values=(32, 64, 128), line=12)))
    assert [t.metric for t in run.expect] == ["test_accuracy"]  # judged on the best trial
    # lr and batch-size are also static hyperparameters of the base config: the range wins.
    trial = run.trial(3, {"lr": 0.05, "batch-size": 32})
    assert (trial.hyperparameters["lr"], trial.hyperparameters["batch-size"]) == (0.05, 32)
    assert (trial.folder, trial.trial_index, trial.hyperparameters["gamma"]) == (
        "default-trial003", 3, 0.7)


def test_defaults_follow_the_sagemaker_sdk(root):
    (run,) = load(root, """\
        base: config/mnist.yaml
        tune:
          objective: {metric: test_loss, type: Minimize}
          max_jobs: 4
          ranges:
            seed: {min: 1, max: 9, type: integer}
          early_stopping: Off
    """)
    tune = run.tune
    assert (tune.strategy, tune.max_parallel_jobs, tune.early_stopping, tune.random_seed) == (
        "Bayesian", 1, "Off", None)  # a bare Off is YAML's false: read as SageMaker's Off
    assert tune.ranges == (Range("seed", INTEGER, min=1, max=9, scaling="Auto", line=6),)
    assert not tune.maximize and tune.better(0.1, 0.2)


def test_numeric_strings_and_whole_floats_are_read_as_numbers(root):
    # PyYAML reads 1e-4 (no dot) as a string; SageMaker takes bounds as strings anyway.
    (run,) = load(root, """\
        base: config/mnist.yaml
        tune:
          strategy: Random
          objective: {metric: test_loss, type: Minimize}
          max_jobs: 4
          ranges:
            lr: {min: 1e-4, max: '0.5', scaling: Logarithmic}
            epochs: {min: 1.0, max: 3, type: integer}
    """)
    lr, epochs = run.tune.ranges
    assert (lr.min, lr.max) == (0.0001, 0.5)
    assert (epochs.min, epochs.max, type(epochs.min)) == (1, 3, int)


def test_grid_without_max_jobs_runs_the_whole_grid(root):
    (run,) = load(root, """\
        base: config/mnist.yaml
        tune:
          strategy: Grid
          objective: {metric: test_accuracy, type: Maximize}
          max_parallel_jobs: 6
          ranges:
            batch-size: {values: [32, 64, 128]}
            gamma: {values: [0.5, 0.7]}
    """)
    assert run.tune.max_jobs == 6
    (again,) = load(root, """\
        base: config/mnist.yaml
        tune:
          strategy: Grid
          objective: {metric: test_accuracy, type: Maximize}
          max_jobs: 3
          ranges:
            batch-size: {values: [32, 64, 128]}
    """)
    assert again.tune.max_jobs == 3


def test_matrix_and_tune_make_one_search_per_cell(root):
    runs = load(root, """\
        base: config/mnist.yaml
        matrix:
          seed: [1, 2]
        zip:
          epochs: [1, 2]
          batch-size: [64, 128]
        tune:
          strategy: Random
          objective: {metric: test_accuracy, type: Maximize}
          max_jobs: 4
          ranges:
            lr: {min: 0.1, max: 2.0}
    """, name="per_cell")
    assert [r.name for r in runs] == [
        "per_cell[seed=1,epochs=1,batch-size=64]", "per_cell[seed=1,epochs=2,batch-size=128]",
        "per_cell[seed=2,epochs=1,batch-size=64]", "per_cell[seed=2,epochs=2,batch-size=128]"]
    assert len({r.tune for r in runs}) == 1 and runs[0].tune.max_jobs == 4
    assert runs[0].line == 2  # the matrix makes the items
    trial = runs[3].trial(1, {"lr": 0.3})
    assert trial.folder == "seed=2,epochs=2,batch-size=128-trial001"
    assert (trial.hyperparameters["seed"], trial.hyperparameters["lr"]) == (2, 0.3)


def test_a_file_without_tune_has_none(root):
    (run,) = load(root, "base: config/mnist.yaml\n")
    assert (run.tune, run.trial_index) == (None, None)


def test_a_tune_file_collects_as_one_item_per_cell(project):
    search = """\
        base: config/base.yaml
        tune:
          strategy: Random
          objective: {metric: accuracy, type: Maximize}
          max_jobs: 3
          ranges:
            accuracy: {min: 0.9, max: 0.99}
    """
    project.experiment("search", search)
    project.experiment("cells", "matrix:\n  epochs: [1, 2]\n" + textwrap.dedent(search))
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["experiments/cells.yaml::cells[[]epochs=1[]]",
                                 "experiments/cells.yaml::cells[[]epochs=2[]]",
                                 "experiments/search.yaml::search", "*3 tests collected*"])
    assert result.ret == pytest.ExitCode.OK


# --- every refusal, as a collection error on its line ------------------------------------------

SEARCH = """\
base: config/base.yaml
tune:
  strategy: {strategy}
  objective: {{metric: accuracy, type: Maximize}}
  max_jobs: 4
  ranges:
    {range}
"""


def search(strategy: str = "Random", range_: str = "lr: {min: 0.01, max: 1.0}") -> str:
    return SEARCH.format(strategy=strategy, range=range_)


def swap(body: str, old: str, new: str) -> str:
    assert old in body
    return body.replace(old, new)


MAX_JOBS = "  max_jobs: 4\n"


def with_tune(lines: str) -> str:
    return "base: config/base.yaml\ntune:\n" + textwrap.indent(textwrap.dedent(lines), "  ")


THIRTY_ONE = "\n    ".join(f"p{i}: {{values: [1, 2]}}" for i in range(31))
THIRTY_ONE_VALUES = ", ".join(str(i) for i in range(31))
TWENTY_EIGHT = ", ".join(str(i) for i in range(28))

REFUSED = {
    "unknown_strategy": (
        search("Baysian"),
        "3: unknown strategy 'Baysian': did you mean 'Bayesian'?"),
    "strategy_in_lower_case": (
        search("random"),
        "3: strategy 'random' is spelled 'Random' in SageMaker, whose names are"
        " case-sensitive"),
    "unknown_scaling": (
        search(range_="lr: {min: 0.01, max: 1.0, scaling: Logarithmc}"),
        "7: unknown scaling 'Logarithmc': did you mean 'Logarithmic'?"),
    "scaling_in_lower_case": (
        search(range_="lr: {min: 0.01, max: 1.0, scaling: logarithmic}"),
        "7: scaling 'logarithmic' is spelled 'Logarithmic' in SageMaker, whose names are"
        " case-sensitive"),
    "min_not_below_max": (
        search(range_="lr: {min: 1.0, max: 0.01}"),
        "7: range 'lr' has min 1.0 and max 0.01; min must be less than max (for one fixed"
        " value, set it under hyperparameters instead)"),
    "equal_integer_bounds": (
        search(range_="epochs: {min: 3, max: 3, type: integer}"),
        "7: range 'epochs' has min 3 and max 3; min must be less than max*"),
    "logarithmic_from_zero": (
        search(range_="lr:\n      min: 0\n      max: 1.0\n      scaling: Logarithmic"),
        "10: range 'lr' has Logarithmic scaling, which SageMaker allows only for values above"
        " 0, but its min is 0; raise min above 0, or use Linear scaling"),
    "reverse_logarithmic_up_to_one": (
        search(range_="momentum: {min: 0.9, max: 1.0, scaling: ReverseLogarithmic}"),
        "7: range 'momentum' has ReverseLogarithmic scaling, which SageMaker allows only"
        " within 0 <= x < 1, but it spans 0.9 to 1.0; keep min at least 0 and max below 1,"
        " or use Linear scaling"),
    "reverse_logarithmic_integer": (
        search(range_="layers: {min: 1, max: 9, type: integer, scaling: ReverseLogarithmic}"),
        "7: range 'layers' is an integer range, and SageMaker allows ReverseLogarithmic"
        " scaling for continuous ranges only; use Linear or Logarithmic"),
    "objective_no_definition_produces": (
        swap(search(), "metric: accuracy", "metric: f1"),
        "4: no metric definition produces 'f1', the objective of the search (defined:"
        " accuracy, loss); add it to metric_definitions or fix the name"),
    "range_swept_by_matrix": (
        search() + "matrix:\n  lr: [0.1, 0.2]\n",
        "7: 'lr' is both searched by 'tune' and swept by 'matrix'; keep it in one of them"),
    "range_swept_by_zip": (
        search() + "zip:\n  lr: [0.1, 0.2]\n  epochs: [1, 2]\n",
        "7: 'lr' is both searched by 'tune' and swept by 'zip'; keep it in one of them"),
    "more_ranges_than_sagemaker_allows": (
        search(range_=THIRTY_ONE),
        "6: the search has 31 ranges; SageMaker searches at most 30 (continuous, integer and"
        " categorical together): fix the rest as hyperparameters"),
    "more_parallel_than_jobs": (
        swap(search(), MAX_JOBS, "  max_jobs: 2\n  max_parallel_jobs: 3\n"),
        "6: max_parallel_jobs (3) is more than the 2 trial(s) of the search, as SageMaker"
        " refuses; lower max_parallel_jobs to at most max_jobs"),
    "grid_with_a_continuous_range": (
        swap(search("Grid"), MAX_JOBS, ""),
        "6: range 'lr' is continuous, but a Grid search takes categorical ranges only, as"
        " SageMaker requires; list its values, e.g. lr: {values: [0.01, 1.0]}, or use"
        " strategy Random"),
    "grid_with_an_integer_range": (
        search("Grid", "epochs: {min: 1, max: 3, type: integer}"),
        "7: range 'epochs' is integer, but a Grid search takes categorical ranges only*"),
    "grid_smaller_than_its_combinations": (
        search("Grid", "lr: {values: [0.1, 0.2]}\n    seed: {values: [1, 2, 3]}"),
        "5: a Grid search runs every combination of its ranges once, 6 trial(s) here, and"
        " SageMaker requires max_jobs to equal that number; set max_jobs: 6 or leave it out"
        " (it was 4)"),
    "grid_more_parallel_than_its_combinations": (
        swap(search("Grid", "lr: {values: [0.1, 0.2]}"), MAX_JOBS,
             "  max_parallel_jobs: 3\n"),
        "5: max_parallel_jobs (3) is more than the 2 trial(s) of the search*"),
    "max_jobs_over_the_limit_of_a_bayesian_search": (
        swap(search("Bayesian"), MAX_JOBS, "  max_jobs: 751\n"),
        "5: max_jobs is 751, but SageMaker runs at most 750 trials in one Bayesian search, a"
        " limit no quota increase raises; the same file must run there too, so it is refused"
        " here as well: lower max_jobs to 750 or less, or split the search into several tune:"
        " files"),
    "max_jobs_over_the_limit_of_a_random_search": (
        swap(search(), MAX_JOBS, "  max_jobs: 10001\n"),
        "5: max_jobs is 10001, but SageMaker runs at most 10000 trials in one Random search"
        " (its default quota is 750, and an increase goes no higher); the same file must run"
        " there too, so it is refused here as well: lower max_jobs to 10000 or less*"),
    "grid_over_the_limit": (
        swap(search("Grid", f"a: {{values: [{TWENTY_EIGHT}]}}\n    b: {{values:"
                            f" [{TWENTY_EIGHT}]}}"), MAX_JOBS, ""),
        "5: this Grid search has 784 combinations of its ranges, but SageMaker runs at most"
        " 750 trials in one Grid search (counted from the ranges), a limit no quota increase"
        " raises; the same file must run there too, so it is refused here as well: list fewer"
        " values, or use strategy Random with max_jobs: 750 or less"),
    "early_stopping_with_hyperband": (
        search("Hyperband") + "  early_stopping: Auto\n",
        "8: Hyperband stops weak trials itself, so SageMaker requires early_stopping: Off with"
        " it; remove early_stopping, or use strategy Bayesian or Random"),
    "early_stopping_yes": (
        search() + "  early_stopping: yes\n",
        "8: early_stopping must be Auto or Off (YAML reads a bare yes/on/true as true); write"
        " early_stopping: Auto"),
    "early_stopping_unknown": (
        search() + "  early_stopping: auto\n",
        "8: early_stopping value 'auto' is spelled 'Auto' in SageMaker*"),
    "max_jobs_zero": (
        swap(search(), MAX_JOBS, "  max_jobs: 0\n"),
        "5: max_jobs must be a whole number of at least 1, not 0"),
    "max_jobs_fraction": (
        swap(search(), MAX_JOBS, "  max_jobs: 2.5\n"),
        "5: max_jobs must be a whole number of at least 1, not 2.5"),
    "max_jobs_missing": (
        swap(search(), MAX_JOBS, ""),
        "2: the Random search needs max_jobs, the number of trials to run in all, e.g."
        " max_jobs: 12"),
    "max_parallel_jobs_zero": (
        swap(search(), MAX_JOBS, MAX_JOBS + "  max_parallel_jobs: 0\n"),
        "6: max_parallel_jobs must be a whole number of at least 1, not 0"),
    "objective_type_in_lower_case": (
        swap(search(), "type: Maximize", "type: maximize"),
        "4: objective type 'maximize' is spelled 'Maximize' in SageMaker*"),
    "objective_type_unknown": (
        swap(search(), "type: Maximize", "type: Highest"),
        "4: unknown objective type 'Highest': known objective types are Maximize, Minimize"),
    "objective_type_missing": (
        swap(search(), ", type: Maximize", ""),
        "4: the objective needs type: Maximize or Minimize (is a higher accuracy better, or"
        " a lower one?)"),
    "objective_missing": (
        with_tune("strategy: Random\nmax_jobs: 2\nranges: {lr: {min: 0.1, max: 1.0}}\n"),
        "2: the search needs an objective, the metric it optimizes, e.g. objective: {metric:"
        " test_accuracy, type: Maximize}"),
    "ranges_missing": (
        with_tune("strategy: Random\nmax_jobs: 2\nobjective: {metric: loss, type: Minimize}\n"),
        "2: the search needs ranges: the hyperparameters it varies, each {min: 0.01, max:"
        " 1.0} for numbers, or {values: [32, 64]} for a list of choices"),
    "integer_range_with_a_fraction": (
        search(range_="epochs: {min: 1, max: 2.5, type: integer}"),
        "7: range 'epochs' is an integer range, so its max must be a whole number, not 2.5;"
        " leave out type: integer for a continuous range"),
    "unknown_range_type": (
        search(range_="epochs: {min: 1, max: 3, type: int}"),
        "7: range 'epochs' has type 'int'; write type: integer for whole numbers*"),
    "bound_not_a_number": (
        search(range_="lr: {min: small, max: 1.0}"),
        "7: min of range 'lr' must be a finite number, not 'small'"),
    "bound_not_finite": (
        search(range_="lr: {min: 0.1, max: .inf}"),
        "7: max of range 'lr' must be a finite number, not inf"),
    "categorical_empty": (
        search(range_="batch-size: {values: []}"),
        "7: values of range 'batch-size' must be a list of at least one choice, e.g. values:"
        " [32, 64]; got an empty list"),
    "categorical_too_many_values": (
        search(range_=f"seed: {{values: [{THIRTY_ONE_VALUES}]}}"),
        "7: range 'seed' lists 31 values; SageMaker allows at most 30 per categorical range:"
        " use a min/max range, or split the search"),
    "categorical_nested_value": (
        search(range_="layers: {values: [[1, 2], [3]]}"),
        "7: range 'layers' lists a list ([1, 2]); its values must be plain strings, numbers"
        " or booleans, which SageMaker passes to the script as text"),
    "categorical_null_value": (
        search(range_="optimizer:\n      values:\n        - adam\n        -\n"),
        "10: range 'optimizer' lists an empty value; its values must be plain strings*"),
    "categorical_repeated_value": (
        search(range_="optimizer: {values: [adam, sgd, adam]}"),
        "7: range 'optimizer' lists 'adam' twice; each value must appear once"),
    "categorical_with_min": (
        search(range_="lr: {values: [0.1, 0.2], min: 0.1}"),
        "7: range 'lr' lists values, so it is categorical and takes no min; remove it, or give"
        " min and max instead of values"),
    "range_without_max": (
        search(range_="lr: {min: 0.1}"),
        "7: range 'lr' needs both min and max (or values: [...] for a list of choices)"),
    "range_as_a_list": (
        search(range_="batch-size: [32, 64]"),
        "7: range 'batch-size' must be a mapping, {min: 0.01, max: 1.0} for numbers, or"
        " {values: [32, 64]} for a list of choices; got a list"),
    "range_name_not_an_option": (
        search(range_="'learning rate': {min: 0.1, max: 1.0}"),
        "7: hyperparameter name 'learning rate' is not usable as a command-line option*"),
    "random_seed_negative": (
        search() + "  random_seed: -1\n",
        "8: random_seed must be a whole number of at least 0, not -1"),
    "random_seed_not_a_number": (
        search() + "  random_seed: lucky\n",
        "8: random_seed must be a whole number of at least 0, not 'lucky'"),
    "unknown_tune_key": (
        swap(search(), MAX_JOBS, "  max_job: 4\n"),
        "5: unknown key 'max_job' in tune: did you mean 'max_jobs'?"),
    "unknown_range_key": (
        search(range_="lr: {min: 0.1, maximum: 1.0}"),
        "7: unknown key 'maximum' in range 'lr': did you mean 'max'?"),
    "unknown_objective_key": (
        swap(search(), "type: Maximize", "goal: Maximize"),
        "4: unknown key 'goal' in objective: known keys are metric, type"),
    "tune_empty": (
        "base: config/base.yaml\ntune: {}\n",
        "2: 'tune' must be a mapping of the search, e.g. {strategy: Random,*; got empty"),
    "tune_with_repeat": (
        search() + "repeat: 3\n",
        "8: 'repeat' cannot be combined with 'tune': a search runs each trial once and judges"
        " its best trial; remove one of them"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_bad_search_is_a_clear_collection_error(project, case):
    body, message = REFUSED[case]
    (project.root / "experiments" / "bad.yaml").write_text(body)
    project.experiment("good", "base: config/base.yaml\n")
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["*ERROR collecting experiments/bad.yaml*",
                                 f"experiments/bad.yaml:{message}"])
    output = result.stdout.str()
    assert "Traceback" not in output and "tune_parse.py" not in output
    assert "experiments/good.yaml::good" in output
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_tune_is_not_a_base_config_key(project):
    (project.root / "config" / "base.yaml").write_text(
        "tune: {strategy: Random}\nmetric_definitions: []\n")
    project.experiment("bad", "base: config/base.yaml\n")
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["config/base.yaml:1: unknown key 'tune'*"])


def test_max_jobs_up_to_sagemakers_limits_is_accepted(root):
    """750 trials for every strategy; a Random search up to the 10000 a quota increase
    allows (without one, SageMaker's own refusal names the quota)."""
    def searched(strategy: str, max_jobs: str, ranges: str) -> int:
        (run,) = load(root, f"""\
            base: config/mnist.yaml
            tune:
              strategy: {strategy}
              objective: {{metric: test_accuracy, type: Maximize}}
              {max_jobs}
              ranges: {{{ranges}}}
            """)
        return run.tune.max_jobs

    for strategy, most in (("Bayesian", 750), ("Hyperband", 750), ("Random", 10000)):
        assert searched(strategy, f"max_jobs: {most}", "lr: {min: 0.01, max: 1.0}") == most
    thirty, twenty_five = ", ".join(map(str, range(30))), ", ".join(map(str, range(25)))
    assert searched("Grid", "", f"a: {{values: [{thirty}]}}, b: {{values: [{twenty_five}]}}"
                    ) == 750


def test_the_refusal_carries_path_and_line(root):
    with pytest.raises(YamlError) as info:
        load(root, ISSUE_EXAMPLE.replace("scaling: Logarithmic", "scaling: Log"))
    assert (info.value.path.name, info.value.line) == ("lr_search.yaml", 10)
    assert info.value.message == ("unknown scaling 'Log': known scalings are Auto, Linear,"
                                  " Logarithmic, ReverseLogarithmic")


# --- the search points ------------------------------------------------------------------------

def spec(*ranges: Range, strategy: str = "Random") -> TuneSpec:
    return TuneSpec(strategy=strategy, objective_metric="accuracy", objective_type="Maximize",
                    max_jobs=8, max_parallel_jobs=2, ranges=ranges)


def test_grid_points_are_every_combination_in_file_order():
    grid = spec(Range("optimizer", CATEGORICAL, values=("adam", "sgd")),
                Range("batch-size", CATEGORICAL, values=(32, 64, 128)), strategy="Grid")
    assert grid_points(grid) == [
        {"optimizer": "adam", "batch-size": 32}, {"optimizer": "adam", "batch-size": 64},
        {"optimizer": "adam", "batch-size": 128}, {"optimizer": "sgd", "batch-size": 32},
        {"optimizer": "sgd", "batch-size": 64}, {"optimizer": "sgd", "batch-size": 128}]
    assert grid_points(grid) == grid_points(grid)


def test_grid_points_refuse_a_numeric_range():
    with pytest.raises(ValueError, match="categorical ranges only, not lr"):
        grid_points(spec(Range("lr", CONTINUOUS, min=0.1, max=1.0)))


EVERY_KIND = spec(
    Range("lr", CONTINUOUS, min=1e-4, max=1.0, scaling="Logarithmic"),
    Range("gamma", CONTINUOUS, min=0.5, max=0.99),
    Range("momentum", CONTINUOUS, min=0.9, max=0.9999, scaling="ReverseLogarithmic"),
    Range("epochs", INTEGER, min=1, max=4),
    Range("hidden", INTEGER, min=1, max=1000, scaling="Logarithmic"),
    Range("batch-size", CATEGORICAL, values=(32, 64, 128)),
    Range("optimizer", CATEGORICAL, values=("adam", "sgd")),
)


def test_random_points_are_reproducible_with_the_seed():
    first = random_points(EVERY_KIND, 8, seed=7)
    assert len(first) == 8 and random_points(EVERY_KIND, 8, seed=7) == first
    assert random_points(EVERY_KIND, 8, seed=8) != first
    # more points extend the same sequence rather than drawing a new one
    assert random_points(EVERY_KIND, 12, seed=7)[:8] == first


def test_random_points_stay_in_range_and_keep_their_types():
    points = random_points(EVERY_KIND, 2000, seed=1)
    for point in points:
        assert list(point) == [r.name for r in EVERY_KIND.ranges]
        assert 1e-4 <= point["lr"] <= 1.0 and 0.5 <= point["gamma"] <= 0.99
        assert 0.9 <= point["momentum"] <= 0.9999
        assert type(point["epochs"]) is int and 1 <= point["epochs"] <= 4
        assert type(point["hidden"]) is int and 1 <= point["hidden"] <= 1000
        assert type(point["lr"]) is float
    assert {p["epochs"] for p in points} == {1, 2, 3, 4}
    assert {p["batch-size"] for p in points} == {32, 64, 128}
    assert {type(p["batch-size"]) for p in points} == {int}
    assert {p["optimizer"] for p in points} == {"adam", "sgd"}
    # a log-uniform integer range gives its low end a whole share and reaches its top
    hidden = [p["hidden"] for p in points]
    assert hidden.count(1) > 200 and max(hidden) > 500


def test_logarithmic_ranges_spread_evenly_over_the_magnitudes():
    points = random_points(EVERY_KIND, 2000, seed=3)
    lr = statistics.median(p["lr"] for p in points)
    assert 10 ** -2.2 < lr < 10 ** -1.8  # the geometric mean of 1e-4 and 1 is 1e-2
    assert statistics.median(p["gamma"] for p in points) == pytest.approx(0.745, abs=0.02)
    hidden = statistics.median(p["hidden"] for p in points)
    assert 20 < hidden < 50  # near sqrt(1000), not near 500
    # ReverseLogarithmic: 1 - x is log-uniform, finely searched close to 1
    gap = statistics.median(1 - p["momentum"] for p in points)
    assert gap == pytest.approx(math.sqrt(0.1 * 0.0001), rel=0.25)


def test_auto_scaling_samples_like_linear():
    auto = spec(Range("gamma", CONTINUOUS, min=0.5, max=0.99),
                Range("epochs", INTEGER, min=1, max=9))
    linear = spec(Range("gamma", CONTINUOUS, min=0.5, max=0.99, scaling="Linear"),
                  Range("epochs", INTEGER, min=1, max=9, scaling="Linear"))
    assert random_points(auto, 20, seed=5) == random_points(linear, 20, seed=5)
