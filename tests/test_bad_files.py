"""Every mistake in an experiment file is a collection error naming the file, the line and
what to do, never a traceback."""

from __future__ import annotations

import pytest

BAD_FILES = {
    "unknown_key": (
        "base: config/base.yaml\nhyperparameter:\n  lr: 0.1\n",
        "experiments/bad.yaml:2: unknown key 'hyperparameter': did you mean 'hyperparameters'?",
    ),
    "wrong_type": (
        "base: config/base.yaml\nhyperparameters: [lr, 0.1]\n",
        "experiments/bad.yaml:2: 'hyperparameters' must be a mapping of hyperparameter name"
        " to value, not a list",
    ),
    "empty_axis": (
        "base: config/base.yaml\nmatrix:\n  lr: []\n",
        "experiments/bad.yaml:3: matrix axis 'lr' is empty; give it at least one value",
    ),
    "axis_not_a_list": (
        "base: config/base.yaml\nmatrix:\n  lr: 0.1\n",
        "experiments/bad.yaml:3: matrix axis 'lr' must be a list of values, e.g. lr: [0.1,"
        " 0.01]; got a number",
    ),
    "empty_matrix": (
        "base: config/base.yaml\nmatrix: {}\n",
        "experiments/bad.yaml:2: 'matrix' is empty*",
    ),
    "zip_lengths": (
        "base: config/base.yaml\nzip:\n  lr: [0.1, 0.2]\n  epochs: [1]\n",
        "experiments/bad.yaml:2: zip axes must have equally long lists (lr: 2, epochs: 1);*",
    ),
    "bad_threshold": (
        "base: config/base.yaml\nexpect:\n  accuracy: 'at least 0.9'\n",
        "experiments/bad.yaml:3: cannot parse threshold 'at least 0.9' for 'accuracy'; write it"
        " as '>= 0.95'*",
    ),
    "unquoted_threshold": (
        "base: config/base.yaml\nexpect:\n  accuracy: 0.9\n",
        "experiments/bad.yaml:3: threshold for 'accuracy' must be a quoted string, got 0.9;*",
    ),
    "unknown_metric": (
        "base: config/base.yaml\nexpect:\n  f1: '>= 0.9'\n",
        "experiments/bad.yaml:3: no metric definition produces 'f1' (defined: accuracy, loss);"
        " add it to metric_definitions or fix the name",
    ),
    "syntax_error": (
        "base: config/base.yaml\nhyperparameters: {lr: 0.1\n",
        "experiments/bad.yaml:3: YAML syntax error: *",
    ),
    "not_a_mapping": (
        "- base\n- config/base.yaml\n",
        "experiments/bad.yaml:1: the experiment file must be a mapping of keys to values, not a"
        " list",
    ),
    "python_tag": (
        "base: config/base.yaml\nhyperparameters: !!python/object/apply:os.system ['ls']\n",
        "experiments/bad.yaml:2: tag 'tag:yaml.org,2002:python/object/apply:os.system' is not"
        " allowed*",
    ),
    "empty_file": (
        "",
        "experiments/bad.yaml: the experiment file is empty; see README.md for an example",
    ),
    "duplicate_key": (
        "base: config/base.yaml\nexpect:\n  accuracy: '>= 0.9'\n  accuracy: '>= 0.8'\n",
        "experiments/bad.yaml:4: duplicate key 'accuracy': keep one of them",
    ),
    "missing_base": (
        "base: config/nope.yaml\n",
        "experiments/bad.yaml:1: base config 'config/nope.yaml' was not found*",
    ),
    "bad_regex": (
        "base: config/base.yaml\nmetric_definitions:\n  - {Name: f1, Regex: 'f1=[0-9.]+'}\n",
        "experiments/bad.yaml:3: the Regex of metric 'f1' is unusable: it needs one capture"
        " group*",
    ),
    "bad_mark": (
        "base: config/base.yaml\nmarks: ['not a mark']\n",
        "experiments/bad.yaml:2: mark 'not a mark' is not a valid pytest marker name;*",
    ),
    "missing_input": (
        "base: config/base.yaml\ninputs: {training: nowhere}\n",
        "experiments/bad.yaml:2: input 'training': folder */nowhere does not exist;*",
    ),
    "repeated_value": (
        "base: config/base.yaml\nmatrix:\n  lr: [0.1, 0.1]\n",
        "experiments/bad.yaml:3: matrix axis 'lr' repeats the value 0.1;*",
    ),
    "empty_range": (
        "base: config/base.yaml\nexpect:\n  accuracy: '0.99..0.9'\n",
        "experiments/bad.yaml:3: range '0.99..0.9' for 'accuracy' is empty*",
    ),
    "alias_bomb": (
        "base: config/base.yaml\n"
        "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        "experiments/bad.yaml:*: the document expands to more than 100000 values*",
    ),
    "deep_nesting": (
        "a: " + "[" * 5000 + "]" * 5000 + "\n",
        "experiments/bad.yaml: the YAML is nested too deeply",
    ),
    "negative_max_run": (
        "base: config/base.yaml\nmax_run: -5\n",
        "experiments/bad.yaml:2: max_run must be a positive number of seconds",
    ),
    # Multi-host runs (issue 11): the count and the SDK's `distribution` vocabulary.
    "zero_hosts": (
        "base: config/base.yaml\ninstance_count: 0\n",
        "experiments/bad.yaml:2: instance_count must be at least 1 (the number of hosts to"
        " train on), not 0",
    ),
    "hosts_not_a_number": (
        "base: config/base.yaml\ninstance_count: '2'\n",
        "experiments/bad.yaml:2: 'instance_count' must be a whole number of hosts to train"
        " on, e.g. 2, not a string",
    ),
    "hosts_a_boolean": (
        "base: config/base.yaml\ninstance_count: true\n",
        "experiments/bad.yaml:2: 'instance_count' must be a whole number of hosts*, not a"
        " boolean",
    ),
    "hosts_a_fraction": (
        "base: config/base.yaml\ninstance_count: 1.5\n",
        "experiments/bad.yaml:2: 'instance_count' must be a whole number of hosts*, not a"
        " number",
    ),
    # One place for the number of hosts: never the sagemaker block, whatever the value.
    "hosts_in_sagemaker_block": (
        "base: config/base.yaml\nsagemaker:\n  instance_type: ml.g5.xlarge\n"
        "  instance_count: 2\n",
        "experiments/bad.yaml:4: 'sagemaker.instance_count' is not a SageMaker setting: it is"
        " the number of hosts to train on, the same for every backend; write it at the top"
        " level of the file, e.g. `instance_count: 2` next to `hyperparameters:`, and remove"
        " it from the sagemaker block",
    ),
    "hosts_in_sagemaker_block_equal_to_top_level": (
        "base: config/base.yaml\ninstance_count: 2\nsagemaker: {instance_count: 2}\n",
        "experiments/bad.yaml:3: 'sagemaker.instance_count' is not a SageMaker setting: *",
    ),
    "unknown_distribution": (
        "base: config/base.yaml\ndistribution:\n  torch_distribute: {enabled: true}\n",
        "experiments/bad.yaml:3: unknown distribution strategy 'torch_distribute': did you"
        " mean 'torch_distributed'?",
    ),
    "unsupported_distribution": (
        "base: config/base.yaml\ndistribution:\n  smdistributed: {dataparallel: {enabled:"
        " true}}\n",
        "experiments/bad.yaml:3: the SageMaker SDK's distribution strategy 'smdistributed'"
        " is not supported here; use torch_distributed: {enabled: true}, or no distribution"
        " for a script that calls init_process_group itself",
    ),
    "distribution_not_a_mapping": (
        "base: config/base.yaml\ndistribution: torch_distributed\n",
        "experiments/bad.yaml:2: 'distribution' must be a mapping of distribution strategy,"
        " e.g. {torch_distributed: {enabled: true}}, not a string",
    ),
    "torch_distributed_not_a_mapping": (
        "base: config/base.yaml\ndistribution:\n  torch_distributed: true\n",
        "experiments/bad.yaml:3: distribution.torch_distributed must be a mapping such as"
        " {enabled: true}, not a boolean",
    ),
    "torch_distributed_unknown_key": (
        "base: config/base.yaml\ndistribution:\n  torch_distributed:\n    enabled: true\n"
        "    nproc_per_node: 2\n",
        "experiments/bad.yaml:5: unknown key 'nproc_per_node' in"
        " distribution.torch_distributed: known keys are enabled",
    ),
    "torch_distributed_enabled_text": (
        "base: config/base.yaml\ndistribution:\n  torch_distributed: {enabled: 'yes'}\n",
        "experiments/bad.yaml:3: distribution.torch_distributed.enabled must be true or"
        " false, not a string",
    ),
    "torch_distributed_without_enabled": (
        "base: config/base.yaml\ndistribution:\n  torch_distributed: {}\n",
        "experiments/bad.yaml:3: distribution.torch_distributed needs `enabled: true` (or"
        " false to turn it off)",
    ),
    "torch_distributed_not_python": (
        "base: config/base.yaml\nentry_point: train.sh\ndistribution:\n"
        "  torch_distributed: {enabled: true}\n",
        "experiments/bad.yaml:2: entry_point 'train.sh' cannot run with distribution"
        " torch_distributed, as the SageMaker SDK says: \"Unsupported entry point type for"
        " the distribution torch_distributed. Only python programs (*.py) are supported.\""
        " (fw_utils.py); use a .py script or leave out torch_distributed",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_a_clear_collection_error(project, case):
    body, message = BAD_FILES[case]
    (project.root / "experiments" / "bad.yaml").write_text(body)
    project.experiment("good", "base: config/base.yaml\n")
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["*ERROR collecting experiments/bad.yaml*", message])
    output = result.stdout.str()
    assert "Traceback" not in output and "yamlsafe.py" not in output
    # other files still collect; pytest then stops before running anything
    assert "experiments/good.yaml::good" in output
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_huge_file_is_refused_before_parsing(project):
    (project.root / "experiments" / "huge.yaml").write_text("# pad\n" * 200_000)
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["experiments/huge.yaml: the file is * bytes; experiment and"
                                 " config files are limited to 1048576 bytes"])


def test_bad_base_config_names_the_config_file(project):
    (project.root / "config" / "base.yaml").write_text("hyperparameters: {lr: 1}\nmatrix: {}\n")
    project.experiment("bad", "base: config/base.yaml\n")
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["config/base.yaml:2: unknown key 'matrix'*"])


def test_dates_in_hyperparameters_are_refused_at_collection(project):
    (project.root / "experiments" / "bad.yaml").write_text(
        "base: config/base.yaml\nmatrix:\n  since: [2024-01-01]\n")
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["experiments/bad.yaml:3: matrix axis 'since' holds a"
                                 " date; axis values must be plain strings, numbers or"
                                 " booleans"])


def test_plan_with_xdist_is_refused(project):
    project.experiment("good", "base: config/base.yaml\n")
    result = project.run("--sm-plan", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--sm-plan runs nothing; leave out -n*"])
