"""`instance_count` and `distribution` (issue 11): read from experiment files and their base
configs, merged, handed to every backend; and the refusal of more local hosts than cores."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import SM, needs_emulator
from sm_pytest import items
from sm_pytest.spec.experiment_file import load_experiment
from sm_pytest.spec.yamlsafe import YamlError

TORCHRUN = {"torch_distributed": {"enabled": True}}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('accuracy=0.9')\n")
    (tmp_path / "src" / "train.sh").write_text("echo accuracy=0.9\n")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "config").mkdir()
    return tmp_path


def load(root: Path, body: str, base: str | None = None):
    if base is not None:
        (root / "config" / "base.yaml").write_text(textwrap.dedent(base))
    path = root / "experiments" / "two_hosts.yaml"
    path.write_text(textwrap.dedent(body))
    return load_experiment(path, root)


def test_defaults_are_one_host_without_distribution(root):
    (run,) = load(root, "description: one host\n")
    assert (run.instance_count, dict(run.distribution), run.torch_distributed) == (1, {}, False)


def test_the_issue_example_reads_as_two_torchrun_hosts(root):
    runs = load(root, """\
        instance_count: 2
        distribution:
          torch_distributed: {enabled: true}
        matrix:
          lr: [0.1, 0.01]
    """)
    assert [(r.instance_count, dict(r.distribution), r.torch_distributed) for r in runs] == [
        (2, TORCHRUN, True), (2, TORCHRUN, True)]


def test_base_config_gives_defaults_and_the_experiment_overrides(root):
    base = "instance_count: 4\ndistribution:\n  torch_distributed: {enabled: true}\n"
    (inherited,) = load(root, "base: config/base.yaml\n", base)
    assert (inherited.instance_count, inherited.torch_distributed) == (4, True)
    # The experiment's own values win; `enabled: false` turns off the base's strategy, and
    # a strategy that is off is left out (the run is then plain, as with no distribution).
    (own,) = load(root, "base: config/base.yaml\ninstance_count: 2\ndistribution:\n"
                        "  torch_distributed: {enabled: false}\n", base)
    assert (own.instance_count, dict(own.distribution), own.torch_distributed) == (2, {}, False)


def test_without_distribution_several_hosts_run_the_script_as_is(root):
    (run,) = load(root, "instance_count: 3\nentry_point: train.sh\n")
    assert (run.instance_count, run.torch_distributed) == (3, False)


@pytest.mark.parametrize("base, message", [
    ("instance_count: 0\n", "instance_count must be at least 1"),
    ("instance_count: -2\n", "instance_count must be at least 1"),
    ("distribution: {torch_distributed: {enabled: 1}}\n", "must be true or false"),
    ("distribution: {horovod: {enabled: true}}\n", "unknown distribution strategy"),
    ("sagemaker: {instance_count: 1}\n", "'sagemaker.instance_count' is not a SageMaker"
                                          " setting: it is the number of hosts"),
])
def test_base_config_mistakes_name_the_config_file(root, base, message):
    with pytest.raises(YamlError, match=message) as info:
        load(root, "base: config/base.yaml\n", base)
    assert info.value.path == root / "config" / "base.yaml" and info.value.line == 1


def test_a_non_python_entry_point_in_the_base_is_marked_there(root):
    base = "entry_point: train.sh\n"
    with pytest.raises(YamlError, match="Only python programs") as info:
        load(root, "base: config/base.yaml\ndistribution:\n  torch_distributed:"
                   " {enabled: true}\n", base)
    assert (info.value.path, info.value.line) == (root / "config" / "base.yaml", 1)


# --- more local hosts than this machine has cores ------------------------------------------


def test_hosts_up_to_the_core_count_are_allowed(root):
    (run,) = load(root, "instance_count: 2\n")
    assert items.local_hosts_problem(run, root, cores=2) is None
    assert items.local_hosts_problem(run, root, cores=16) is None
    problem = items.local_hosts_problem(run, root, cores=1)
    assert problem == (
        "experiments/two_hosts.yaml:1: instance_count 2 is more hosts than this machine has"
        " CPU cores (1): each local host is a training process that needs at least one core"
        " of its own. Run it on SageMaker with --sm, or use at most 1 host")
    emulated = items.local_hosts_problem(run, root, emulated=True, cores=1)
    assert "each local host (the emulator runs every host here too)" in emulated
    assert "with --sm (without --sm-emulate)" in emulated


def test_too_many_hosts_from_the_base_name_the_base(root):
    (run,) = load(root, "base: config/base.yaml\n", "instance_count: 8\n")
    problem = items.local_hosts_problem(run, root, cores=2)
    assert problem.startswith("experiments/two_hosts.yaml (instance_count from its base"
                              " config): instance_count 8 is more hosts")


def test_real_sagemaker_runs_are_not_limited_by_local_cores(root, monkeypatch):
    (run,) = load(root, "instance_count: 64\n")
    monkeypatch.setattr(items, "cpu_cores", lambda: 2)
    real = SimpleNamespace(sagemaker=SimpleNamespace(
        settings_for=lambda r: SimpleNamespace(emulate=False)))
    item = SimpleNamespace(run=run, config=SimpleNamespace(rootpath=root))
    items.ExperimentItem._check_hosts(item, real)  # nothing raised: the hosts are AWS's
    emulated = SimpleNamespace(sagemaker=SimpleNamespace(
        settings_for=lambda r: SimpleNamespace(emulate=True)))
    with pytest.raises(ValueError, match="instance_count 64 is more hosts"):
        items.ExperimentItem._check_hosts(item, emulated)
    with pytest.raises(ValueError, match="instance_count 64 is more hosts"):
        items.ExperimentItem._check_hosts(item, SimpleNamespace(sagemaker=None))


def test_too_many_local_hosts_is_an_error_of_that_item_only(project):
    # In a subprocess (an in-process session's summary loads pandas, which cannot be loaded
    # twice in one process), so with the real core count: no machine here has 4096 cores.
    project.experiment("many", "base: config/base.yaml\ninstance_count: 4096\n")
    project.experiment("one", "base: config/base.yaml\n")
    result = project.run_subprocess("-rA")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*experiments/many.yaml:2: instance_count 4096 is more hosts than this machine has"
        " CPU cores (*): each local host is a training process that needs at least one core"
        " of its own. Run it on SageMaker with --sm, or use at most * hosts*"])
    assert not (project.artifacts / "many" / "default" / "attempt-0001" / "train.log").exists()


@needs_emulator
def test_too_many_emulated_hosts_are_refused_before_the_job(project):
    # In a subprocess (the SDK cannot be loaded twice in one process), so with the real
    # core count: no machine this runs on has 4096 cores.
    project.experiment("many", "base: config/base.yaml\ninstance_count: 4096\n")
    result = project.run_subprocess(*SM, "-rA")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*experiments/many.yaml:2: instance_count 4096 is more hosts"
                                 " than this machine has CPU cores (*): each local host (the"
                                 " emulator runs every host here too)*"])
    assert not list(project.artifacts.glob("many/*/attempt-*/hosts"))


def test_plan_shows_the_hosts_of_local_and_sagemaker_runs(project):
    project.experiment("two", "base: config/base.yaml\ninstance_count: 2\n")
    local = project.run("--sm-plan")
    assert local.ret == 0
    local.stdout.fnmatch_lines(["*two*local*2 x local*"])
    (project.root / "config" / "sagemaker.yaml").write_text(
        "instance_type: ml.m5.xlarge\nmax_run: 3600\nkeep_alive: 0\n"
        "prices: {ml.m5.xlarge: 0.23}\n")
    project.pytester.makeini("[pytest]\nsm_config = config/sagemaker.yaml\n")
    # In a subprocess: --sm may load the SDK, which cannot be loaded twice in one process.
    remote = project.run_subprocess("--sm", "--sm-region", "us-east-1", "--sm-plan")
    assert remote.ret == 0
    # 2 instances: twice the bound of one ((3600 + 120 s grace) x $0.23/h x 2 = $0.48).
    remote.stdout.fnmatch_lines(["*two*sagemaker*2 x ml.m5.xlarge*$0.23*$0.48*"])


def test_instance_count_in_the_sagemaker_block_points_to_the_top_level_key(project):
    # Refused at collection, so also without --sm (where it used to run ONE host).
    project.experiment("two", "base: config/base.yaml\nsagemaker:\n  instance_count: 2\n")
    for args in [(), ("--sm", "--sm-region", "us-east-1", "--sm-plan")]:
        result = project.run_subprocess(*args)
        assert result.ret == pytest.ExitCode.INTERRUPTED
        output = result.stdout.str() + result.stderr.str()
        assert "ERROR collecting experiments/two.yaml" in output
        assert "experiments/two.yaml:3: 'sagemaker.instance_count' is not a SageMaker" \
               " setting: it is the number of hosts to train on" in output
        assert "write it at the top level of the file" in output
        assert "Traceback" not in output
        assert not project.artifacts.exists()  # nothing ran


def test_instance_count_in_the_sagemaker_block_is_refused_even_when_it_agrees(root):
    # Accepted, sagemaker: {instance_count: 2} alone ran ONE host locally (and two with
    # --sm); equal to the top-level count it is still a second place for one number.
    for body, line in [("sagemaker:\n  instance_count: 2\n", 2),
                       ("instance_count: 2\nsagemaker:\n  spot: true\n  instance_count: 2\n", 4)]:
        with pytest.raises(YamlError, match=r"write it at the top level of the file, e\.g\."
                                            r" `instance_count: 2`") as info:
            load(root, body)
        assert (info.value.path, info.value.line) == (root / "experiments" / "two_hosts.yaml",
                                                      line)
