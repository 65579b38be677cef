"""The training-container contract (sm_pytest/run/contract/), checked against the real thing.

The conformance tests run the SageMaker training toolkit (sagemaker-training 5.1.4, the code
that starts user scripts inside the SageMaker framework containers) on a copy of the config
files that prepare_container_tree wrote, with a probe as the training script, and compare
what the probe saw with what the local tree gives: every variable, the arguments, the working
directory, the success and failure files. They need the toolkit installed
(``pip install sagemaker-training==5.1.4``, part of the ``dev`` extra) and fail without it,
unless SM_PYTEST_SKIP_ORACLE=1. The toolkit is only ever run in a subprocess: importing it
here would make it create ~/sagemaker_local/... (it reads SAGEMAKER_BASE_DIR at import).

The other tests need nothing but the standard library.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sm_pytest.run import contract
from sm_pytest.run.contract import (
    LOCAL_EXTENSIONS,
    ContainerJob,
    hyperparameters_to_argv,
    prepare_container_tree,
)
from sm_pytest.run.contract import environment as host

ORACLE_DIR = Path(__file__).parent / "oracle"
TOOLKIT = "sagemaker-training"
TOOLKIT_VERSION = "5.1.4"
MASK = "<masked>"
ROOT = "<ROOT>"

# Every kind of value and key the argv and SM_HP_* rules treat specially.
TRICKY_HYPERPARAMETERS = {
    "epochs": 3,
    "lr": 1e-3,  # 0.001
    "use-cuda": False,  # bool
    "dropout": None,  # null: "" in argv and SM_HP_DROPOUT
    "layers": [64, 32],  # list: Python repr
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},  # dict: k=v,... sorted
    "b": 16,  # one letter: -b
    "Batch-Size": 128,  # upper case (sorts first) and a dash
    "batch-size": 64,  # "-" sorts before "_"
    "batch_size": 32,
    "label": "chiffre \u00e9crit \u2014 \u6570\u5b57",  # non-ASCII
    "scale": "3",  # a string that looks like JSON stays a string
    "note": "",
    "sagemaker_foo": "bar",  # unknown sagemaker_*: SM_FRAMEWORK_PARAMS only
    "_tuning_objective_metric": "validation:accuracy",  # reserved
}
CHANNELS = ("training", "Eval-set_2")


# --- the oracle ---------------------------------------------------------------------------


def _require_toolkit() -> None:
    if importlib.util.find_spec("sagemaker_training") is None:
        if os.environ.get("SM_PYTEST_SKIP_ORACLE") == "1":
            pytest.skip("SM_PYTEST_SKIP_ORACLE=1: conformance oracle not run")
        pytest.fail(
            f"The conformance oracle needs the SageMaker training toolkit: pip install "
            f"{TOOLKIT}=={TOOLKIT_VERSION} (or pip install -e '.[dev]'). "
            "Set SM_PYTEST_SKIP_ORACLE=1 to skip these tests instead.",
            pytrace=False,
        )
    version = importlib.metadata.version(TOOLKIT)
    if version != TOOLKIT_VERSION:
        pytest.fail(
            f"{TOOLKIT} {version} is installed, but the contract is pinned to and verified "
            f"against {TOOLKIT_VERSION}: install that, or move the pin after re-checking "
            "sm_pytest/run/contract/ against the new toolkit source.",
            pytrace=False,
        )


def _make_source(tmp: Path) -> Path:
    """A source dir: the probe as train.py, plus what the snapshot must keep or drop."""
    src = tmp / "src"
    src.mkdir()
    shutil.copy(ORACLE_DIR / "probe_train.py", src / "train.py")
    (src / "helpers.py").write_text("X = 1\n")
    (src / "requirements.txt").write_text("# nothing\n")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "helpers.cpython-311.pyc").write_bytes(b"\0")
    (src / "stale.pyc").write_bytes(b"\0")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return src


def _make_channels(tmp: Path) -> dict[str, Path]:
    channels = {}
    for i, name in enumerate(CHANNELS):
        d = tmp / "datasets" / f"data-{i}"
        d.mkdir(parents=True)
        (d / f"part-{i}.csv").write_text("1,2\n")
        (d / "labels.idx").write_bytes(b"\1\2")
        channels[name] = d
    return channels


def _build_oracle_tree(tree: contract.ContainerTree, oracle_root: Path) -> None:
    """What the platform would hand the toolkit: the same three config files, the channel
    data downloaded into input/data, model/ and output/, and the code unpacked into code/
    (without requirements.txt or setup.py: the toolkit would pip-install them)."""
    (oracle_root / "input").mkdir(parents=True)
    shutil.copytree(tree.input_config_dir, oracle_root / "input" / "config")
    for name, path in tree.channel_dirs.items():
        shutil.copytree(path.resolve(), oracle_root / "input" / "data" / name)
    (oracle_root / "model").mkdir()
    (oracle_root / "output").mkdir()
    shutil.copytree(
        tree.code_dir,
        oracle_root / "code",
        ignore=shutil.ignore_patterns("requirements.txt", "setup.py"),
    )


def _oracle_environ(tmp: Path, oracle_root: Path, job_name: str, **extra: str) -> dict:
    """The container's environment for the toolkit: inherited, minus every input that would
    change what it computes (FIELD-NOTES section 1), plus what the platform sets."""
    cleared_prefixes = ("SM_", "SAGEMAKER_", "AWS_")
    cleared = {"TRAINING_JOB_NAME", "S3_ENDPOINT_URL", "CURRENT_HOST"}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(cleared_prefixes) and k not in cleared
    }
    nowhere = str(tmp / "no-aws-config")
    env.update(
        SAGEMAKER_BASE_DIR=str(oracle_root),
        TRAINING_JOB_NAME=job_name,  # set by the platform in every training container
        AWS_CONFIG_FILE=nowhere,  # Environment() builds a boto3 Session: keep it offline
        AWS_SHARED_CREDENTIALS_FILE=nowhere,
        AWS_EC2_METADATA_DISABLED="true",
        USE_SMDEBUG="0",
    )
    env.update(extra)
    return env


def _run_oracle(tmp: Path, tree: contract.ContainerTree, job_name: str, **extra: str):
    oracle_root = (tmp / "oracle").resolve()
    _build_oracle_tree(tree, oracle_root)
    environ = _oracle_environ(tmp, oracle_root, job_name, **extra)
    proc = subprocess.run(
        [sys.executable, str(ORACLE_DIR / "run_toolkit.py")],
        env=environ,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return oracle_root, environ, proc


def _run_local(tree: contract.ContainerTree, base: dict[str, str]):
    proc = subprocess.run(
        tree.command,
        cwd=tree.cwd,
        env=tree.process_env(base),
        capture_output=True,
        text=True,
        timeout=60,
    )
    tree.record_exit(proc.returncode)
    return proc


def _probe(model_dir: Path) -> dict:
    return json.loads((model_dir / "probe.json").read_text(encoding="utf-8"))


def _unroot(text: str, roots: list[Path]) -> str:
    for root in sorted((str(r) for r in roots), key=len, reverse=True):
        text = text.replace(root, ROOT)
    return text


def _normalize(env: dict[str, str], roots: list[Path]) -> dict[str, str]:
    """Mask what FIELD-NOTES says differs by host or tree: the host probes (counts and
    smddp checks) and the base-dir prefix of paths."""
    out = {k: _unroot(v, roots) for k, v in env.items()}
    for key in ("SM_NUM_CPUS", "SM_NUM_GPUS", "SM_NUM_NEURONS"):
        if key in out:
            out[key] = MASK
    if "SM_TRAINING_ENV" in out:
        training_env = json.loads(out["SM_TRAINING_ENV"])
        for key in training_env:
            if key.startswith(("num_", "is_smddp")):
                training_env[key] = MASK
        out["SM_TRAINING_ENV"] = json.dumps(training_env, sort_keys=True)
    return out


def _job(src: Path, channels: dict[str, Path], job_name: str, hps=None) -> ContainerJob:
    return ContainerJob(
        job_name=job_name,
        program="train.py",
        source_dir=src,
        hyperparameters=TRICKY_HYPERPARAMETERS if hps is None else hps,
        channels=channels,
        instance_type="local",
        region="",
    )


@pytest.fixture(scope="module")
def conformance(tmp_path_factory):
    """One job, prepared locally and run both ways: by the toolkit on a copy of its config
    (oracle) and by tree.command locally."""
    _require_toolkit()
    tmp = tmp_path_factory.mktemp("conformance").resolve()
    job_name = "conformance-lr-0-001-20261126-0812"
    tree = prepare_container_tree(
        _job(_make_source(tmp), _make_channels(tmp), job_name), root=tmp / "local" / "attempt-1"
    )
    oracle_root, oracle_environ, oracle = _run_oracle(tmp, tree, job_name)
    assert oracle.returncode == 0, f"the toolkit failed:\n{oracle.stdout}\n{oracle.stderr}"
    # A stale SM_* variable and a stale SM_MODEL_DIR in the parent must not reach the run.
    base = dict(os.environ, SM_STALE="1", SM_MODEL_DIR="/nowhere", PROBE_MARK="kept")
    local = _run_local(tree, base)
    assert local.returncode == 0, f"the local run failed:\n{local.stdout}\n{local.stderr}"
    return {
        "tree": tree,
        "roots": [tree.root, oracle_root],
        "oracle_root": oracle_root,
        "oracle_environ": oracle_environ,
        "oracle": _probe(oracle_root / "model"),
        "local": _probe(tree.model_dir),
    }


def _toolkit_set(c) -> set[str]:
    """Variables the toolkit set or changed for the script (not inherited unchanged)."""
    given, seen = c["oracle_environ"], c["oracle"]["env"]
    return {k for k, v in seen.items() if given.get(k) != v}


def test_toolkit_sets_exactly_the_variables_we_set(conformance):
    toolkit_set = _toolkit_set(conformance)
    ours = set(conformance["tree"].env)
    # TRAINING_JOB_NAME comes from the platform (an input to the toolkit, not its output).
    assert ours - LOCAL_EXTENSIONS == toolkit_set | {"TRAINING_JOB_NAME"}
    assert {"SM_CHECKPOINT_DIR", "SAGEMAKER_BASE_DIR"} == LOCAL_EXTENSIONS
    assert {k for k in ours if k.startswith("SM_")} - {
        k for k in toolkit_set if k.startswith("SM_")
    } == {"SM_CHECKPOINT_DIR"}


def test_every_variable_matches_the_toolkit(conformance):
    roots = conformance["roots"]
    tree_env = _normalize(conformance["tree"].env, roots)
    oracle_env = _normalize(conformance["oracle"]["env"], roots)
    compared = (_toolkit_set(conformance) | {"TRAINING_JOB_NAME", "SAGEMAKER_BASE_DIR"}) - {
        "PYTHONPATH"
    }
    mismatches = {
        k: {"local": tree_env.get(k), "toolkit": oracle_env.get(k)}
        for k in sorted(compared)
        if tree_env.get(k) != oracle_env.get(k)
    }
    assert not mismatches, json.dumps(mismatches, indent=1, ensure_ascii=False)
    # PYTHONPATH: the toolkit's sys.path with the code dir first; ours the code dir first.
    for env in (tree_env, oracle_env):
        assert env["PYTHONPATH"].split(os.pathsep)[0] == f"{ROOT}/code"


def test_training_env_has_every_property(conformance):
    training_env = json.loads(conformance["oracle"]["env"]["SM_TRAINING_ENV"])
    ours = json.loads(conformance["tree"].env["SM_TRAINING_ENV"])
    assert sorted(ours) == sorted(training_env)
    assert len(training_env) == 37  # FIELD-NOTES says 38; 5.1.4 has 37 properties


def test_the_script_sees_what_the_toolkit_gives(conformance):
    """tree.command run with tree.process_env(): the same argv, cwd, variables and data."""
    tree, roots = conformance["tree"], conformance["roots"]
    local, oracle = conformance["local"], conformance["oracle"]
    assert local["argv"] == oracle["argv"] == ["train.py", *tree.argv]
    assert _unroot(local["cwd"], roots) == _unroot(oracle["cwd"], roots) == f"{ROOT}/code"
    assert local["channel_files"] == oracle["channel_files"]
    assert set(local["channel_files"]) == set(CHANNELS)
    for key, value in tree.env.items():
        assert local["env"][key] == value, key
    assert "SM_STALE" not in local["env"]
    assert local["env"]["PROBE_MARK"] == "kept"


def test_argv_follows_the_toolkit_rules(conformance):
    argv = conformance["oracle"]["argv"][1:]
    assert argv == conformance["tree"].argv
    assert argv == hyperparameters_to_argv(TRICKY_HYPERPARAMETERS)
    assert argv == [
        "--Batch-Size", "128",
        "-b", "16",
        "--batch-size", "64",
        "--batch_size", "32",
        "--dropout", "",
        "--epochs", "3",
        "--label", "chiffre \u00e9crit \u2014 \u6570\u5b57",
        "--layers", "[64, 32]",
        "--lr", "0.001",
        "--note", "",
        "--optimizer", "momentum=0.9,name=sgd,nesterov=True",
        "--scale", "3",
        "--use-cuda", "False",
    ]  # fmt: skip


def test_hyperparameter_variables(conformance):
    env = conformance["oracle"]["env"]
    assert env["SM_HP_USE-CUDA"] == "false"
    assert env["SM_HP_DROPOUT"] == ""
    assert env["SM_HP_LR"] == "0.001"
    assert env["SM_HP_SCALE"] == "3"
    # "Batch-Size" and "batch-size" share SM_HP_BATCH-SIZE: the later key in the file wins.
    assert env["SM_HP_BATCH-SIZE"] == "64"
    assert env["SM_HP_LABEL"] == TRICKY_HYPERPARAMETERS["label"]
    assert env["SM_HP_OPTIMIZER"] == '{"momentum":0.9,"name":"sgd","nesterov":true}'
    assert "\\u00e9" in env["SM_HPS"]
    assert json.loads(env["SM_FRAMEWORK_PARAMS"]) == {"sagemaker_foo": "bar"}
    hps = json.loads(env["SM_HPS"])
    assert "sagemaker_foo" not in hps and "_tuning_objective_metric" not in hps
    assert not any(k.startswith("SM_HP_SAGEMAKER") or k == "SM_HP__TUNING_OBJECTIVE_METRIC"
                   for k in env)  # fmt: skip


def test_success_file(conformance):
    tree, oracle_root = conformance["tree"], conformance["oracle_root"]
    assert (oracle_root / "output" / "success").read_text() == ""
    assert tree.success_file.read_text() == ""
    assert not tree.failure_file.exists()
    assert not (oracle_root / "output" / "failure").exists()


@pytest.mark.parametrize(
    "probe_env",
    [
        pytest.param({"PROBE_EXIT_CODE": "3"}, id="exit-code"),
        pytest.param(
            {"PROBE_EXIT_CODE": "2", "PROBE_FAILURE_TEXT": "diverged: loss is nan"},
            id="script-wrote-failure",
        ),
    ],
)
def test_failure_file_matches_the_toolkit(tmp_path, probe_env):
    _require_toolkit()
    tmp = tmp_path.resolve()
    job_name = "conformance-failing"
    hps = {"epochs": 1, "label": "\u00e9t\u00e9", "flag": True}
    tree = prepare_container_tree(
        _job(_make_source(tmp), {}, job_name, hps), root=tmp / "local" / "attempt-1"
    )
    oracle_root, _, oracle = _run_oracle(tmp, tree, job_name, **probe_env)
    local = _run_local(tree, dict(os.environ, **probe_env))
    # The toolkit exits 1 whatever the script's code; the code is in the failure file.
    assert oracle.returncode == 1, oracle.stderr
    assert local.returncode == int(probe_env["PROBE_EXIT_CODE"])
    roots = [tree.root, oracle_root]
    expected = _unroot((oracle_root / "output" / "failure").read_text(), roots)
    assert _unroot(tree.failure_file.read_text(), roots) == expected
    if "PROBE_FAILURE_TEXT" in probe_env:
        assert expected == probe_env["PROBE_FAILURE_TEXT"]  # never overwritten
    else:
        assert expected.startswith("ExecuteUserScriptError:\nExitCode 3\n")
    assert not (oracle_root / "output" / "success").exists()
    assert not tree.success_file.exists()


# --- hyperparameters_to_argv (no oracle) -------------------------------------------------


def test_argv_example_from_the_brief():
    argv = hyperparameters_to_argv({"epochs": 3, "lr": 0.1, "batch-size": 64})
    assert argv == ["--batch-size", "64", "--epochs", "3", "--lr", "0.1"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "True"),
        (False, "False"),
        (None, ""),
        (1e-3, "0.001"),
        (1e-7, "1e-07"),
        (1.0, "1.0"),
        (10**20, "100000000000000000000"),
        ([1, "a", None], "[1, 'a', None]"),
        ((1, 2), "[1, 2]"),  # a tuple arrives as a JSON list
        ({"b": 2, "a": 1}, "a=1,b=2"),
        ({"a": {"x": True}}, "a={'x': True}"),  # nested values: str()
        ({10: "y", 2: "x"}, "10=y,2=x"),  # keys become strings, then sort as strings
        ({}, ""),
        ("3", "3"),  # stays a string (it was JSON-encoded as "\"3\"")
        ("true", "true"),
        ("", ""),
        ("caf\u00e9 \u6570", "caf\u00e9 \u6570"),
        ("--not-an-option", "--not-an-option"),
    ],
)
def test_argv_values(value, text):
    assert hyperparameters_to_argv({"key": value}) == ["--key", text]


def test_argv_order_and_names():
    hps = {"b": 1, "a_b": 2, "a-b": 3, "B": 4, "Zeta": 5, "_private": 6, "a": 7}
    assert hyperparameters_to_argv(hps) == [
        "-B", "4", "--Zeta", "5", "--_private", "6", "-a", "7", "--a-b", "3", "--a_b", "2",
        "-b", "1",
    ]  # fmt: skip


def test_argv_leaves_out_reserved_keys():
    hps = {
        "sagemaker_program": "x.py",
        "sagemaker_anything": 1,
        "_tuning_objective_metric": "acc",
        "default_user_module_name": "m",  # reserved although it lacks the prefix
        "sagemakerish": 1,
        "Sagemaker_upper": 2,  # the prefix is case-sensitive
    }
    assert hyperparameters_to_argv(hps) == ["--Sagemaker_upper", "2", "--sagemakerish", "1"]
    assert hyperparameters_to_argv({}) == []


def test_argv_refuses_values_sagemaker_cannot_carry():
    with pytest.raises(TypeError, match="'path'"):
        hyperparameters_to_argv({"path": Path("x")})


# --- prepare_container_tree (no oracle) --------------------------------------------------


@pytest.fixture
def small_job(tmp_path):
    src = _make_source(tmp_path)
    data = tmp_path / "mnist"
    data.mkdir()
    (data / "train.gz").write_bytes(b"x")
    single = tmp_path / "labels.csv"
    single.write_text("0\n")
    return ContainerJob(
        job_name="lr_sweep-lr-0.1-20261126-0812",
        program="train.py",
        source_dir=src,
        hyperparameters={"epochs": 3, "lr": 0.1, "batch-size": 64},
        channels={"training": data, "labels": single},
        instance_type="local",
        region="",
    )


def test_layout(small_job, tmp_path):
    root = tmp_path / "attempt-1"
    tree = prepare_container_tree(small_job, root=root)
    assert tree.root == root.resolve()
    for d in (
        tree.code_dir, tree.model_dir, tree.input_config_dir, tree.input_data_dir,
        tree.output_dir, tree.output_data_dir, tree.output_intermediate_dir,
        tree.checkpoint_dir,
    ):  # fmt: skip
        assert d.is_dir() and d.is_relative_to(tree.root)
    assert tree.input_config_dir == tree.root / "input" / "config"
    assert tree.failure_file == tree.root / "output" / "failure"
    assert tree.success_file == tree.root / "output" / "success"
    # Channels: a symlink to the data, never a copy; a single file inside its channel dir.
    training = tree.channel_dirs["training"]
    assert training == tree.root / "input" / "data" / "training"
    assert training.is_symlink() and training.resolve() == small_job.channels["training"]
    assert (tree.channel_dirs["labels"] / "labels.csv").read_text() == "0\n"
    # The code snapshot: everything but caches and VCS data.
    names = sorted(p.relative_to(tree.code_dir).as_posix() for p in tree.code_dir.rglob("*"))
    assert names == ["helpers.py", "requirements.txt", "train.py"]
    assert tree.command == [sys.executable, "--", "train.py", *tree.argv]
    assert tree.cwd == tree.code_dir
    assert tree.argv == ["--batch-size", "64", "--epochs", "3", "--lr", "0.1"]


def test_channels_are_copied_when_symlinks_fail(small_job, tmp_path, monkeypatch):
    def no_symlinks(*args, **kwargs):
        raise OSError("symbolic links are not available here")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    tree = prepare_container_tree(small_job, root=tmp_path / "run")
    training = tree.channel_dirs["training"]
    assert not training.is_symlink() and (training / "train.gz").read_bytes() == b"x"
    assert (tree.channel_dirs["labels"] / "labels.csv").read_text() == "0\n"


def test_config_files(small_job, tmp_path):
    tree = prepare_container_tree(small_job, root=tmp_path / "run")
    hps = json.loads(tree.hyperparameters_file.read_text())
    assert hps == {
        "epochs": "3",
        "lr": "0.1",
        "batch-size": "64",
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": json.dumps(str(tree.code_dir)),
        "sagemaker_container_log_level": "20",
        "sagemaker_job_name": '"lr_sweep-lr-0.1-20261126-0812"',
        "sagemaker_region": '""',
    }
    assert json.loads(tree.resource_config_file.read_text()) == {
        "current_host": "algo-1",
        "current_instance_type": "local",
        "current_group_name": "homogeneousCluster",
        "hosts": ["algo-1"],
        "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": "local",
             "hosts": ["algo-1"]},
        ],
        "network_interface_name": "eth0",
    }  # fmt: skip
    channel = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
               "RecordWrapperType": "None"}  # fmt: skip
    assert json.loads(tree.input_data_config_file.read_text()) == {
        "training": channel,
        "labels": channel,
    }


def test_env_essentials(small_job, tmp_path):
    tree = prepare_container_tree(small_job, root=tmp_path / "run")
    env = tree.env
    assert env["SM_MODEL_DIR"] == str(tree.model_dir)
    assert env["SM_CHANNEL_TRAINING"] == str(tree.channel_dirs["training"])
    assert env["SM_CHANNELS"] == '["labels","training"]'
    assert env["SM_CHECKPOINT_DIR"] == str(tree.checkpoint_dir)
    assert env["SM_OUTPUT_DATA_DIR"] == str(tree.output_data_dir)
    assert env["SM_NUM_CPUS"] == str(os.cpu_count())
    assert env["SM_NUM_NEURONS"] == "0"
    assert env["SM_USER_ARGS"] == json.dumps(tree.argv, separators=(",", ":"))
    assert env["SM_HPS"] == '{"batch-size":64,"epochs":3,"lr":0.1}'
    assert env["SM_LOG_LEVEL"] == "20"
    assert env["SM_CURRENT_HOST"] == env["CURRENT_HOST"] == "algo-1"
    assert env["SAGEMAKER_JOB_NAME"] == env["TRAINING_JOB_NAME"] == small_job.job_name
    assert env["SAGEMAKER_REGION"] == ""
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(tree.code_dir)
    assert all(isinstance(v, str) for v in env.values())


def test_num_gpus_honours_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(host, "_gpus_on_host", lambda: 4)
    assert contract.detect_num_gpus({}) == 4
    assert contract.detect_num_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == 2
    assert contract.detect_num_gpus({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert contract.detect_num_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == 0
    assert contract.detect_num_gpus({"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5"}) == 4


def test_gpu_probe_is_quick_and_safe():
    host._gpus_on_host.cache_clear()
    assert host._gpus_on_host() >= 0


def test_never_overwrites(small_job, tmp_path):
    root = tmp_path / "attempt-1"
    root.mkdir()
    (root / "notes.txt").write_text("the caller's own file is fine")
    prepare_container_tree(small_job, root=root)
    with pytest.raises(FileExistsError, match="input"):
        prepare_container_tree(small_job, root=root)


@pytest.mark.parametrize("program", ["", "../train.py", "-c", "/abs/train.py", "a b.py", "./t.py"])
def test_refuses_programs_the_toolkit_refuses(small_job, tmp_path, program):
    job = ContainerJob(**{**small_job.__dict__, "program": program})
    with pytest.raises(ValueError, match="program"):
        prepare_container_tree(job, root=tmp_path / "run")


def test_refuses_missing_program_and_data(small_job, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        prepare_container_tree(
            ContainerJob(**{**small_job.__dict__, "program": "nope.py"}), root=tmp_path / "a"
        )
    with pytest.raises(FileNotFoundError, match="training"):
        prepare_container_tree(
            ContainerJob(**{**small_job.__dict__, "channels": {"training": tmp_path / "nope"}}),
            root=tmp_path / "b",
        )


@pytest.mark.parametrize("key", ["sagemaker_program", "sagemaker_job_name", "sagemaker_region"])
def test_refuses_hyperparameters_the_job_sets(small_job, tmp_path, key):
    job = ContainerJob(**{**small_job.__dict__, "hyperparameters": {key: "x"}})
    with pytest.raises(ValueError, match=key):
        prepare_container_tree(job, root=tmp_path / "run")


def test_shell_and_package_entry_points(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "run.sh").write_text('#!/bin/sh\necho "$@"\n')
    tree = prepare_container_tree(
        ContainerJob(job_name="j", program="run.sh", source_dir=src,
                     hyperparameters={"msg": "it's", "num": 1}),
        root=tmp_path / "a",
    )  # fmt: skip
    assert tree.command == ["/bin/sh", "-c", "./run.sh --msg 'it'\"'\"'s' --num 1"]
    assert os.access(tree.code_dir / "run.sh", os.X_OK)
    out = subprocess.run(tree.command, cwd=tree.cwd, env=tree.process_env(), text=True,
                         capture_output=True, check=True).stdout  # fmt: skip
    assert out == "--msg it's --num 1\n"
    (src / "setup.py").write_text("")
    (src / "train.py").write_text("")
    tree = prepare_container_tree(
        ContainerJob(job_name="j", program="train.py", source_dir=src), root=tmp_path / "b"
    )
    assert tree.command == [sys.executable, "-m", "train"]


def test_record_exit(small_job, tmp_path):
    tree = prepare_container_tree(small_job, root=tmp_path / "run")
    assert tree.record_exit(137) == tree.failure_file
    text = tree.failure_file.read_text()
    assert text.startswith('ExecuteUserScriptError:\nExitCode 137\nErrorMessage ""\nExtraInfo')
    assert text.endswith(f'Command "{" ".join(tree.command)}"')
    tree.record_exit(1)  # an existing failure file is kept
    assert tree.failure_file.read_text() == text


def test_contract_is_pure_standard_library():
    # Every module of the package, and the one walker it shares, imports only the standard
    # library and each other.
    package = Path(contract.__file__).parent
    imported = set()
    for module in [*sorted(package.glob("*.py")), package.parent / "hashing.py"]:
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module)
    ours = {m for m in imported if m.split(".")[0] == "sm_pytest"}
    assert ours <= {f"sm_pytest.run.contract.{p.stem}" for p in package.glob("*.py")} | {
        "sm_pytest.run.hashing"}, ours
    others = {m.split(".")[0] for m in imported - ours}
    assert others <= set(sys.stdlib_module_names) | {"__future__"}, others


def test_toolkit_env_and_the_tree_read_one_layout(small_job, tmp_path):
    tree = prepare_container_tree(small_job, root=tmp_path / "run")
    layout = contract.ContainerLayout(tree.root)
    assert isinstance(tree, contract.ContainerLayout)
    env = tree.env
    assert env["SM_MODEL_DIR"] == str(layout.model_dir) == str(tree.model_dir)
    assert env["SM_INPUT_CONFIG_DIR"] == str(layout.input_config_dir)
    assert env["SM_OUTPUT_INTERMEDIATE_DIR"] == str(layout.output_intermediate_dir)
    assert env["SM_CHANNEL_TRAINING"] == str(layout.channel_dir("training"))
    assert layout.hyperparameters_file.is_file() and layout.resource_config_file.is_file()
    assert [p.name for p in layout.top_level] == ["input", "model", "output", "code",
                                                  "checkpoints"]
    # A plain base dir gives the same variables as the layout itself.
    stored = json.loads(layout.hyperparameters_file.read_text())
    args = (json.loads(layout.resource_config_file.read_text()),
            json.loads(layout.input_data_config_file.read_text()))
    assert (contract.toolkit_env(tree.root, stored, *args, num_cpus=1, num_gpus=0)
            == contract.toolkit_env(layout, stored, *args, num_cpus=1, num_gpus=0))


# Bases the toolkit keeps as spelled (os.path.join) and a Path would normalise.
ODD_BASES = ["./rel/base", "{tmp}//double/slash", "{tmp}/dot/./base", "{tmp}/trailing/"]


@pytest.mark.parametrize("base_spelling", ODD_BASES)
def test_toolkit_env_keeps_the_base_dir_as_the_toolkit_spells_it(small_job, tmp_path,
                                                                  base_spelling):
    _require_toolkit()
    tmp = tmp_path.resolve()
    tree = prepare_container_tree(small_job, root=tmp / "made")
    base = base_spelling.format(tmp=tmp)
    # The toolkit reads only the config files; relative bases resolve from its cwd, tmp.
    shutil.copytree(tree.input_config_dir, tmp / base / "input" / "config")
    job_name = small_job.job_name
    proc = subprocess.run(
        [sys.executable, str(ORACLE_DIR / "toolkit_env.py")],
        env=_oracle_environ(tmp, base, job_name), cwd=tmp, capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    toolkit = json.loads(proc.stdout)
    ours = contract.toolkit_env(
        base,
        json.loads(tree.hyperparameters_file.read_text()),
        json.loads(tree.resource_config_file.read_text()),
        json.loads(tree.input_data_config_file.read_text()),
        num_cpus=97, num_gpus=98, num_neurons=99, training_job_name=job_name,
    )
    assert _normalize(ours, []) == _normalize(toolkit, [])
    assert ours["SM_MODEL_DIR"] == os.path.join(base, "model")
    assert ours["SM_CHANNEL_TRAINING"] == os.path.join(base, "input", "data", "training")


def test_toolkit_paths_join_like_the_toolkit_and_the_layout_normalises():
    paths = contract.ToolkitPaths.under("./rel//x/./y")
    assert paths.model_dir == "./rel//x/./y/model"
    assert paths.input_config_dir == "./rel//x/./y/input/config"
    assert paths.output_intermediate_dir == "./rel//x/./y/output/intermediate"
    assert paths.channel_dir("train") == "./rel//x/./y/input/data/train"
    layout = contract.ContainerLayout(Path("./rel//x/./y"))
    assert str(layout.model_dir) == "rel/x/y/model"
    assert layout.toolkit_paths == contract.ToolkitPaths.under("rel/x/y")
    for name in ("code_dir", "model_dir", "input_dir", "input_config_dir", "output_dir",
                 "output_data_dir", "output_intermediate_dir"):
        assert getattr(layout.toolkit_paths, name) == str(getattr(layout, name)), name
    assert layout.toolkit_paths.channel_dir("t") == str(layout.channel_dir("t"))


# One list of what the contract owns; sagemaker.settings refuses the same names
# (tests/test_sagemaker_request.py).
OWNED_AND_NOT = [
    ("SM_MODEL_DIR", True), ("SM_ANYTHING", True), ("PYTHONPATH", True),
    ("SAGEMAKER_PROGRAM", True), ("SAGEMAKER_BASE_DIR", True), ("TRAINING_JOB_NAME", True),
    ("CURRENT_HOST", True), ("SAGEMAKER_CONTAINER_LOG_LEVEL", True),
    ("SAGEMAKER_TRAINING_MODULE", True), ("SM", False), ("sm_model_dir", False),
    ("SAGEMAKER_OTHER", False), ("MY_SM_DIR", False), ("LOG_LEVEL", False),
]


@pytest.mark.parametrize("name, owned", OWNED_AND_NOT)
def test_owned_variables_never_leak_into_a_run(small_job, tmp_path, name, owned):
    assert contract.is_owned_variable(name) is owned
    tree = prepare_container_tree(small_job, root=tmp_path / "run")
    env = tree.process_env({name: "inherited"})
    assert (env.get(name) == "inherited") is not owned


def test_the_package_keeps_the_old_import_paths():
    from sm_pytest.run.contract import hyperparameters, layout, tree

    for name in contract.__all__:
        assert getattr(contract, name) is not None
    assert contract.ContainerTree is tree.ContainerTree
    assert contract.encode_hyperparameters is hyperparameters.encode_hyperparameters
    assert contract.toolkit_env is host.toolkit_env
    assert contract.ContainerLayout is layout.ContainerLayout


# --- several hosts ------------------------------------------------------------------------

RENDEZVOUS = contract.Rendezvous("127.0.0.1", 45678)
# sagemaker-pytorch-training-toolkit training.py (_set_nccl_environment,
# _set_distributed_environment), with the local rendezvous; GLOO_SOCKET_IFNAME is ours.
LAUNCHER_VARIABLES = {"MASTER_ADDR", "MASTER_PORT", "NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE",
                      "NCCL_DEBUG", "GLOO_SOCKET_IFNAME"}
# sagemaker-training torch_distributed.py _setup (NCCL_PROTO), and torchrun's own PET_*
# options, set so that a single-host torchrun does not fall back to port 29500.
TORCHRUN_VARIABLES = {"NCCL_PROTO", "PET_MASTER_ADDR", "PET_MASTER_PORT"}


def _host_trees(job: ContainerJob, tmp: Path, hosts=None, rendezvous=RENDEZVOUS):
    return {
        host: prepare_container_tree(job, root=tmp / "hosts" / host, current_host=host,
                                     rendezvous=rendezvous)
        for host in (job.hosts if hosts is None else hosts)
    }


def _toolkit_env_for(tree: contract.ContainerTree, tmp: Path, job_name: str) -> dict:
    """The toolkit's variables for this host's tree (toolkit_env.py reads its config)."""
    proc = subprocess.run(
        [sys.executable, str(ORACLE_DIR / "toolkit_env.py")],
        env=_oracle_environ(tmp, tree.root, job_name), cwd=tmp, capture_output=True,
        text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _agrees_with_the_toolkit(tree: contract.ContainerTree, tmp: Path, job_name: str) -> dict:
    toolkit = _toolkit_env_for(tree, tmp, job_name)
    ours = dict(tree.env)
    launcher = LAUNCHER_VARIABLES | TORCHRUN_VARIABLES
    # What the generic toolkit sets is exactly ours, less the local extensions, the
    # platform's TRAINING_JOB_NAME, PYTHONPATH (written when it runs the script) and the
    # PyTorch image's launcher variables (not the generic toolkit's).
    assert set(toolkit) == set(ours) - LOCAL_EXTENSIONS - launcher - {"TRAINING_JOB_NAME",
                                                                      "PYTHONPATH"}
    mine = {k: v for k, v in ours.items() if k in toolkit}
    assert _normalize(mine, []) == _normalize(toolkit, [])
    return toolkit


@pytest.mark.parametrize("distribution", [{}, {"torch_distributed": {"enabled": True}}],
                         ids=["script-per-host", "torch_distributed"])
def test_every_host_of_a_two_host_job_agrees_with_the_toolkit(small_job, tmp_path,
                                                               distribution):
    _require_toolkit()
    tmp = tmp_path.resolve()
    job = dataclasses.replace(small_job, hosts=contract.host_names(2), distribution=distribution)
    trees = _host_trees(job, tmp)
    seen = {}
    for name, tree in trees.items():
        toolkit = _agrees_with_the_toolkit(tree, tmp, job.job_name)
        training_env = json.loads(toolkit["SM_TRAINING_ENV"])
        seen[name] = training_env
        assert toolkit["SM_HOSTS"] == '["algo-1","algo-2"]'
        assert toolkit["SM_CURRENT_HOST"] == toolkit["CURRENT_HOST"] == name
        assert json.loads(toolkit["SM_RESOURCE_CONFIG"])["current_host"] == name
        assert training_env["current_host"] == name
        assert training_env["hosts"] == ["algo-1", "algo-2"]
        assert training_env["master_hostname"] == "algo-1"
        assert training_env["is_master"] is (name == "algo-1")
        assert training_env["network_interface_name"] == contract.LOOPBACK_INTERFACE
        assert training_env["current_instance_group_hosts"] == ["algo-1", "algo-2"]
        if distribution:
            # sagemaker_torch_distributed_enabled makes the group a distribution group.
            assert training_env["distribution_hosts"] == ["algo-1", "algo-2"]
            assert training_env["distribution_instance_groups"] == ["homogeneousCluster"]
            assert training_env["additional_framework_parameters"] == {
                "sagemaker_instance_type": "local", "sagemaker_torch_distributed_enabled": True}
        else:
            assert training_env["distribution_instance_groups"] == []
        # Only the host's own name tells the trees apart (besides their paths).
        assert json.loads(tree.resource_config_file.read_text()) == {
            **json.loads(trees["algo-1"].resource_config_file.read_text()),
            "current_host": name}
    assert seen["algo-1"]["is_master"] and not seen["algo-2"]["is_master"]


def test_ten_hosts_sort_as_strings_and_agree_with_the_toolkit(small_job, tmp_path):
    _require_toolkit()
    tmp = tmp_path.resolve()
    names = contract.host_names(10)
    assert names == ("algo-1", "algo-10", "algo-2", "algo-3", "algo-4", "algo-5", "algo-6",
                     "algo-7", "algo-8", "algo-9")
    # Given in any order, the tree lists them as the platform does.
    job = dataclasses.replace(small_job, hosts=tuple(reversed(names)))
    for name, tree in _host_trees(job, tmp, hosts=["algo-10", "algo-2", "algo-1"]).items():
        toolkit = _agrees_with_the_toolkit(tree, tmp, job.job_name)
        training_env = json.loads(toolkit["SM_TRAINING_ENV"])
        assert json.loads(toolkit["SM_HOSTS"]) == list(names)
        assert training_env["current_host"] == name
        assert training_env["master_hostname"] == "algo-1"
        assert training_env["is_master"] is (name == "algo-1")


def test_host_names_and_the_local_rendezvous():
    assert contract.host_names(1) == ("algo-1",)
    assert contract.host_names(3) == ("algo-1", "algo-2", "algo-3")
    with pytest.raises(ValueError, match="at least 1 host"):
        contract.host_names(0)
    rendezvous = contract.Rendezvous.local()
    assert rendezvous.master_addr == "127.0.0.1"
    # Free: it can be bound again at once (it was released).
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", rendezvous.master_port))
    assert 0 < rendezvous.master_port < 65536


def test_the_local_rendezvous_port_is_below_the_ephemeral_range(tmp_path, monkeypatch):
    import socket

    from sm_pytest.run.contract import hosts

    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("32768\t60999\n")
    assert hosts.ephemeral_range(str(ranges)) == (32768, 60999)
    ports = {hosts.free_local_port(range_file=str(ranges)) for _ in range(20)}
    assert all(hosts.LOWEST_PORT <= port < 32768 for port in ports), ports
    assert len(ports) > 1  # chosen at random: two runs at once rarely pick the same one
    # A port that is taken is not chosen: with only one candidate, bound here, the choice
    # falls back to one the kernel hands out.
    with socket.socket() as taken, monkeypatch.context() as patch:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        patch.setattr(hosts, "LOWEST_PORT", port - 2)
        ranges.write_text(f"{port + 1}\t{port + 5000}\n")
        patch.setattr(hosts.random, "randint", lambda low, high: port)
        assert hosts.free_local_port(range_file=str(ranges)) != port
    # No range to read (not Linux): port 0, the kernel's choice.
    assert hosts.ephemeral_range(str(tmp_path / "absent")) is None
    assert 0 < hosts.free_local_port(range_file=str(tmp_path / "absent")) < 65536
    if hosts.ephemeral_range() is not None:  # this machine's own range
        low = hosts.ephemeral_range()[0]
        assert contract.Rendezvous.local().master_port < low


def test_a_single_host_without_rendezvous_is_the_single_container_tree(small_job, tmp_path):
    plain = prepare_container_tree(small_job, root=tmp_path / "a")
    explicit = prepare_container_tree(
        dataclasses.replace(small_job, hosts=("algo-1",), distribution={}),
        root=tmp_path / "b", current_host="algo-1")
    unroot = {k: _unroot(v, [plain.root, explicit.root]) for k, v in plain.env.items()}
    assert unroot == {k: _unroot(v, [plain.root, explicit.root]) for k, v in explicit.env.items()}
    assert not set(plain.env) & (LAUNCHER_VARIABLES | TORCHRUN_VARIABLES)
    assert plain.command[1:] == ["--", "train.py", *plain.argv]
    config = json.loads(plain.resource_config_file.read_text())
    assert config["hosts"] == ["algo-1"] and config["network_interface_name"] == "eth0"


def test_launcher_variables(small_job, tmp_path):
    job = dataclasses.replace(small_job, hosts=contract.host_names(2))
    tree = prepare_container_tree(job, root=tmp_path / "h2", current_host="algo-2",
                                  rendezvous=RENDEZVOUS)
    lo = contract.LOOPBACK_INTERFACE
    # pytorch toolkit training.py: MASTER_ADDR/MASTER_PORT (the master's name and 7777 on
    # SageMaker; the local rendezvous here), NCCL_SOCKET_IFNAME, NCCL_IB_DISABLE, NCCL_DEBUG.
    assert {k: tree.env[k] for k in LAUNCHER_VARIABLES} == {
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "45678", "NCCL_SOCKET_IFNAME": lo,
        "NCCL_IB_DISABLE": "1", "NCCL_DEBUG": "WARN", "GLOO_SOCKET_IFNAME": lo}
    assert not set(tree.env) & TORCHRUN_VARIABLES  # no torch_distributed: no torchrun
    # Without a distribution every host runs the script itself (runner.ProcessRunner).
    assert tree.command[1:] == ["--", "train.py", *tree.argv]
    assert tree.process_env({})["MASTER_PORT"] == "45678"


def _torchrun_tree(small_job, tmp_path, count, current, monkeypatch, gpus=0):
    monkeypatch.setattr(host, "_gpus_on_host", lambda: gpus)
    job = dataclasses.replace(small_job, hosts=contract.host_names(count),
                              distribution={"torch_distributed": {"enabled": True}})
    return prepare_container_tree(job, root=tmp_path / current, current_host=current,
                                  rendezvous=RENDEZVOUS, python="/py")


def test_torchrun_command_on_several_hosts(small_job, tmp_path, monkeypatch):
    # sagemaker-training torch_distributed.py _create_command: --nnodes N --nproc_per_node P,
    # then for N > 1 --master_addr --master_port --node_rank <index of the host>.
    tree = _torchrun_tree(small_job, tmp_path, 3, "algo-3", monkeypatch)
    assert tree.command == [
        "/py", "-m", "torch.distributed.run", "--nnodes", "3", "--nproc_per_node", "1",
        "--master_addr", "127.0.0.1", "--master_port", "45678", "--node_rank", "2",
        "train.py", *tree.argv]
    assert tree.argv == ["--batch-size", "64", "--epochs", "3", "--lr", "0.1"]
    # torch_distributed.py _setup.
    assert tree.env["NCCL_PROTO"] == "simple"
    assert tree.env["PET_MASTER_PORT"] == "45678"
    # The SDK's hyperparameters for the distribution (pytorch/estimator.py).
    stored = json.loads(tree.hyperparameters_file.read_text())
    assert stored["sagemaker_torch_distributed_enabled"] == "true"
    assert stored["sagemaker_instance_type"] == '"local"'


def test_torchrun_command_on_one_host_counts_the_gpus(small_job, tmp_path, monkeypatch):
    # runner.py: P is the number of GPUs, else 1; one node gets no rendezvous flags.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    tree = _torchrun_tree(small_job, tmp_path, 1, "algo-1", monkeypatch, gpus=4)
    assert tree.command == ["/py", "-m", "torch.distributed.run", "--nnodes", "1",
                            "--nproc_per_node", "4", "train.py", *tree.argv]


def test_local_hosts_divide_the_gpus_among_them(small_job, tmp_path, monkeypatch):
    # Several hosts on one machine: each its own G // N of the visible GPUs, so that two
    # NCCL ranks never share a device; SM_NUM_GPUS and torchrun's P count that share.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    trees = [_torchrun_tree(small_job, tmp_path, 2, name, monkeypatch, gpus=4)
             for name in ("algo-1", "algo-2")]
    assert [t.env["CUDA_VISIBLE_DEVICES"] for t in trees] == ["0,1", "2,3"]
    assert [t.env["SM_NUM_GPUS"] for t in trees] == ["2", "2"]
    for tree in trees:
        assert tree.command[tree.command.index("--nproc_per_node") + 1] == "2"
        assert tree.process_env({"CUDA_VISIBLE_DEVICES": "0,1,2,3"})[
            "CUDA_VISIBLE_DEVICES"] == tree.env["CUDA_VISIBLE_DEVICES"]
    # From the ones CUDA_VISIBLE_DEVICES lists, in its order; a remainder stays unused.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1,2")
    assert contract.hosts.visible_gpus() == ["3", "1", "2"]
    assert [contract.hosts.local_host_devices(("algo-1", "algo-2"), name)
            for name in ("algo-1", "algo-2")] == ["3", "1"]
    # Without a distribution (the plain script, device local rank 0) too.
    plain = dataclasses.replace(small_job, hosts=contract.host_names(2))
    tree = prepare_container_tree(plain, root=tmp_path / "plain", current_host="algo-2",
                                  rendezvous=RENDEZVOUS)
    assert (tree.env["CUDA_VISIBLE_DEVICES"], tree.env["SM_NUM_GPUS"]) == ("1", "1")
    # CUDA_VISIBLE_DEVICES="" means the CPU: nothing to divide, one process per host.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cpu = _torchrun_tree(small_job, tmp_path / "cpu", 2, "algo-2", monkeypatch, gpus=4)
    assert "CUDA_VISIBLE_DEVICES" not in cpu.env and cpu.env["SM_NUM_GPUS"] == "0"
    assert cpu.command[cpu.command.index("--nproc_per_node") + 1] == "1"
    # Fewer GPUs than hosts: refused, saying what to do.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(ValueError, match=r"2 hosts on this machine's 1 GPU\(s\).*"
                                         r"CUDA_VISIBLE_DEVICES= \(empty\)"):
        _torchrun_tree(small_job, tmp_path / "few", 2, "algo-1", monkeypatch, gpus=1)
    # One host keeps every GPU and its environment as it was.
    one = _torchrun_tree(small_job, tmp_path / "one", 1, "algo-1", monkeypatch, gpus=4)
    assert "CUDA_VISIBLE_DEVICES" not in one.env and one.env["SM_NUM_GPUS"] == "4"


def test_bad_host_and_distribution_input(small_job, tmp_path):
    job = dataclasses.replace(small_job, hosts=contract.host_names(2))
    with pytest.raises(ValueError, match="'algo-3' is not one of the hosts"):
        prepare_container_tree(job, root=tmp_path / "x", current_host="algo-3")
    with pytest.raises(ValueError, match="only 'torch_distributed' is supported"):
        prepare_container_tree(dataclasses.replace(job, distribution={"mpi": {}}),
                               root=tmp_path / "y", rendezvous=RENDEZVOUS)
    sh = dataclasses.replace(job, program="run.sh",
                             distribution={"torch_distributed": {"enabled": True}})
    with pytest.raises(ValueError, match=r"Only python programs \(\*\.py\)"):
        prepare_container_tree(sh, root=tmp_path / "z", rendezvous=RENDEZVOUS)
    clash = dataclasses.replace(job, distribution={"torch_distributed": {"enabled": True}},
                                hyperparameters={"sagemaker_torch_distributed_enabled": True})
    with pytest.raises(ValueError, match="sagemaker_torch_distributed_enabled"):
        prepare_container_tree(clash, root=tmp_path / "w", rendezvous=RENDEZVOUS)
