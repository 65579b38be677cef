"""Collection as a user sees it: ids, -k, matrix and zip expansion, marks, where files are."""

from __future__ import annotations

from conftest import INI

SWEEP = """
    base: config/base.yaml
    matrix:
      lr: [0.1, 0.01]
      batch-size: [32, 64]
    expect:
      accuracy: ">= 0.9"
    marks: [sweep]
"""
PAIRS = """
    base: config/base.yaml
    zip:
      lr: [0.1, 0.2, 0.3]
      epochs: [1, 2, 3]
    expect:
      accuracy: ">= 0.9"
"""
BASELINE = """
    base: config/base.yaml
    expect:
      accuracy: ">= 0.9"
"""


def test_ids_are_readable_and_in_matrix_order(project):
    project.experiment("baseline", BASELINE)
    project.experiment("sweep", SWEEP)
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "experiments/baseline.yaml::baseline",
        "experiments/sweep.yaml::sweep[lr=0.1,batch-size=32]",
        "experiments/sweep.yaml::sweep[lr=0.1,batch-size=64]",
        "experiments/sweep.yaml::sweep[lr=0.01,batch-size=32]",
        "experiments/sweep.yaml::sweep[lr=0.01,batch-size=64]",
        "5 tests collected*",
    ])


def test_ids_are_stable_across_sessions(project):
    project.experiment("sweep", SWEEP)
    first = project.run("--collect-only", "-q").stdout.lines
    second = project.run("--collect-only", "-q").stdout.lines
    assert [line for line in first if "::" in line] == [line for line in second if "::" in line]


def test_zip_pairs_axes(project):
    project.experiment("pairs", PAIRS)
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "experiments/pairs.yaml::pairs[lr=0.1,epochs=1]",
        "experiments/pairs.yaml::pairs[lr=0.2,epochs=2]",
        "experiments/pairs.yaml::pairs[lr=0.3,epochs=3]",
        "3 tests collected*",
    ])


def test_zip_and_matrix_combine(project):
    project.experiment("both", """
        base: config/base.yaml
        matrix: {seed: [1, 2]}
        zip: {lr: [0.1, 0.2], epochs: [1, 2]}
    """)
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "*both[[]seed=1,lr=0.1,epochs=1]", "*both[[]seed=1,lr=0.2,epochs=2]",
        "*both[[]seed=2,lr=0.1,epochs=1]", "*both[[]seed=2,lr=0.2,epochs=2]",
        "4 tests collected*",
    ])


def test_k_selects_one_experiment(project):
    project.experiment("baseline", BASELINE)
    project.experiment("sweep", SWEEP)
    result = project.run("--collect-only", "-q", "-k", "sweep")
    result.stdout.fnmatch_lines(["4/5 tests collected (1 deselected)*"])
    assert "baseline" not in result.stdout.str().split("tests collected")[0]


def test_marks_select_and_are_registered(project):
    project.experiment("baseline", BASELINE)
    project.experiment("sweep", SWEEP)
    result = project.run("--collect-only", "-q", "-m", "sweep", "--strict-markers")
    result.stdout.fnmatch_lines(["4/5 tests collected (1 deselected)*"])
    assert result.ret == 0


def test_matrix_values_override_hyperparameters(project, pytester):
    project.experiment("sweep", """
        base: config/base.yaml
        hyperparameters: {lr: 5, epochs: 1}
        matrix: {lr: [0.1]}
    """)
    from sm_pytest.spec.experiment_file import load_experiment

    (run,) = load_experiment(project.root / "experiments" / "sweep.yaml", project.root)
    assert run.hyperparameters == {"epochs": 1, "lr": 0.1}
    assert run.swept == {"lr": 0.1}


def test_yaml_outside_experiment_folders_is_ignored(project):
    project.experiment("baseline", BASELINE)
    (project.root / "other").mkdir()
    (project.root / "other" / "compose.yaml").write_text("services: {}\n")
    result = project.pytester.runpytest("--collect-only", "-q", ".")
    result.stdout.fnmatch_lines(["experiments/baseline.yaml::baseline", "1 test collected*"])


def test_experiment_folders_are_configurable(project):
    project.pytester.makeini(INI + "sm_experiment_paths = gates\n")
    (project.root / "gates").mkdir()
    (project.root / "gates" / "nightly.yaml").write_text(BASELINE.replace("\n    ", "\n"))
    project.experiment("baseline", BASELINE)
    result = project.pytester.runpytest("--collect-only", "-q", ".")
    result.stdout.fnmatch_lines(["gates/nightly.yaml::nightly", "1 test collected*"])


def test_underscore_files_are_shared_bases_not_experiments(project):
    (project.root / "experiments" / "_shared.yaml").write_text(
        "source_dir: src\ninputs: {training: data}\n")
    project.experiment("uses_shared", "base: experiments/_shared.yaml\n")
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["experiments/uses_shared.yaml::uses_shared",
                                 "1 test collected*"])


def test_two_files_with_one_name_are_refused(project):
    project.experiment("baseline", BASELINE)
    (project.root / "experiments" / "nightly").mkdir()
    (project.root / "experiments" / "nightly" / "baseline.yaml").write_text(
        BASELINE.replace("\n    ", "\n"))
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "*experiments/nightly/baseline.yaml: the experiment name 'baseline' is taken by"
        " experiments/baseline.yaml*rename one of the files.",
        "*1 error*",
    ])
    # Names that SageMaker Experiments would write alike collide too.
    (project.root / "experiments" / "nightly" / "baseline.yaml").unlink()
    (project.root / "experiments" / "Base_Line.yaml").write_text(BASELINE.replace("\n    ", "\n"))
    (project.root / "experiments" / "base-line.yaml").write_text(BASELINE.replace("\n    ", "\n"))
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "*experiments/base-line.yaml: the experiment name 'base-line' is taken by"
        " experiments/Base_Line.yaml as 'Base_Line': names are compared as SageMaker*"])
    (project.root / "experiments" / "Base_Line.yaml").unlink()
    (project.root / "experiments" / "nightly" / "baseline.yaml").write_text(
        BASELINE.replace("\n    ", "\n"))
    # Selecting one of them is fine.
    result = project.pytester.runpytest("experiments/nightly", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["experiments/nightly/baseline.yaml::baseline",
                                 "1 test collected*"])
