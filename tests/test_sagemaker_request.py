"""SageMaker settings (sources, precedence, checks) and the CreateTrainingJob request, field
by field; the SDK round trip under moto at the end."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sm_pytest.run.contract import (
    decode_hyperparameters,
    encode_hyperparameters,
    is_owned_variable,
)
from sm_pytest.sagemaker import request as rq
from sm_pytest.sagemaker.settings import (
    SageMakerSettings,
    SettingsError,
    require_launch_settings,
    resolve,
)
from sm_pytest.spec.experiment_file import RunSpec
from sm_pytest.spec.metrics import MetricDefinition

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-cpu-py313"
SOURCE = "s3://bkt/sm-pytest/source/0123456789abcdef/sourcedir.tar.gz"
DATA = "s3://bkt/sm-pytest/datasets/mnist-sample-0123456789ab/"


def make_run(experiment="lr_sweep", run_id="lr=0.1", **changes) -> RunSpec:
    fields = dict(
        experiment=experiment, run_id=run_id, path=Path(f"experiments/{experiment}.yaml"),
        line=1, description="", source_dir=Path("src"), entry_point="train.py",
        hyperparameters={"epochs": 3, "lr": 0.1, "batch-size": 64, "name": "3",
                         "flag": True, "nothing": None},
        swept={"lr": 0.1}, inputs={"training": "data/mnist-sample"},
        metric_definitions=(MetricDefinition("test_accuracy", r"test_accuracy=([0-9.]+)"),
                            MetricDefinition("test_loss", r"test_loss=([0-9.]+)")),
        expect=(), marks=(), max_run=900, sagemaker={},
    )
    fields.update(changes)
    return RunSpec(**fields)


def settings(**changes) -> SageMakerSettings:
    base = dict(role=ROLE, region="us-east-1", bucket="bkt", keep_alive_s=1800,
                max_wait=7200, tags={"project": "sm-pytest"})
    base.update(changes)
    return SageMakerSettings(**base)


def build(run=None, s=None, **kwargs):
    run = run or make_run()
    s = s or settings()
    args = dict(job_name=rq.job_name(run, "abc123000"), image_uri=IMAGE, source_uri=SOURCE,
                inputs={"training": DATA})
    args.update(kwargs)
    return rq.build_request(run, s, **args)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def res(*, cli=None, ini=None, config=None, block=None, environ=None, path=None):
    return resolve(cli=cli or {}, ini=ini or {}, config_path=config,
                   experiment_block=block or {}, environ=environ or {"HOME": "/nonexistent"},
                   experiment_path=path)


# --- settings: sources and precedence ------------------------------------------------------


def test_builtin_defaults_without_any_source():
    s = res()
    assert (s.role, s.bucket, s.region) == (None, None, None)
    assert (s.instance_type, s.instance_count, s.volume_size_gb) == ("ml.m5.xlarge", 1, 30)
    assert (s.max_run, s.max_wait, s.keep_alive_s, s.spot) == (3600, None, 0, False)
    # The image versions come from sagemaker-core 2.27's image config (test_sagemaker_images).
    assert (s.framework_version, s.py_version, s.prefix, s.max_parallel) == (
        "2.10.0", "py313", "sm-pytest", 4)
    assert s.sources["instance_type"] == "built-in default"


def test_shipped_config_file_is_valid_and_matches_the_brief():
    s = res(config=Path(__file__).parents[1] / "config" / "sagemaker.yaml")
    assert (s.framework_version, s.py_version, s.instance_type) == ("2.10.0", "py313",
                                                                   "ml.m5.xlarge")
    assert (s.max_run, s.max_wait, s.keep_alive_s, s.max_parallel) == (3600, 7200, 1800, 4)
    assert s.tags == {"project": "sm-pytest"} and s.role is None and s.bucket is None


def test_per_run_precedence_cli_then_experiment_then_ini_then_config(tmp_path):
    config = write(tmp_path / "config" / "sagemaker.yaml", """\
        instance_type: ml.m5.large
        keep_alive: 600
        max_run: 100
    """)
    s = res(config=config)
    assert (s.instance_type, s.keep_alive_s, s.max_run) == ("ml.m5.large", 600, 100)
    s = res(config=config, ini={"instance_type": "ml.c5.xlarge", "keep_alive": "60"})
    assert (s.instance_type, s.keep_alive_s) == ("ml.c5.xlarge", 60)
    # The experiment beats project defaults (ini and config file) ...
    s = res(config=config, ini={"instance_type": "ml.c5.xlarge"},
            block={"instance_type": "ml.g5.xlarge", "max_run": 200})
    assert (s.instance_type, s.max_run) == ("ml.g5.xlarge", 200)
    # ... and the command line beats the experiment.
    s = res(config=config, ini={"instance_type": "ml.c5.xlarge"},
            cli={"instance_type": "ml.p3.2xlarge", "keep_alive": "0"},
            block={"instance_type": "ml.g5.xlarge"})
    assert (s.instance_type, s.keep_alive_s) == ("ml.p3.2xlarge", 0)
    assert s.sources["instance_type"] == "--sm-instance-type"


def test_session_precedence_and_environment_variables(tmp_path):
    config = write(tmp_path / "sagemaker.yaml", f"role: {ROLE}\nbucket: from-config\n"
                   "region: eu-west-1\nmax_parallel: 2\n")
    s = res(config=config, environ={"AWS_REGION": "us-west-2"})
    assert (s.bucket, s.region, s.max_parallel) == ("from-config", "eu-west-1", 2)
    s = res(config=config, ini={"bucket": "from-ini", "max_parallel": "3"})
    assert (s.bucket, s.max_parallel) == ("from-ini", 3)
    env = {"SM_PYTEST_BUCKET": "from-env", "SM_PYTEST_ROLE": ROLE.replace("Role", "Env")}
    s = res(config=config, ini={"bucket": "from-ini"}, environ=env)
    assert s.bucket == "from-env" and s.role.endswith("SageMakerEnv")
    s = res(config=config, cli={"bucket": "from-cli"}, environ=env)
    assert s.bucket == "from-cli"
    assert s.sources["bucket"] == "--sm-bucket"


def test_region_from_the_standard_aws_configuration(tmp_path):
    aws = write(tmp_path / "home" / ".aws" / "config", """\
        [default]
        region = ap-south-1
        [profile work]
        region = eu-central-1
    """)
    home = str(tmp_path / "home")
    assert res(environ={"HOME": home}).region == "ap-south-1"
    assert res(environ={"HOME": home, "AWS_PROFILE": "work"}).region == "eu-central-1"
    assert res(environ={"HOME": home, "AWS_PROFILE": "nope"}).region is None
    assert res(environ={"HOME": home, "AWS_DEFAULT_REGION": "us-west-1"}).region == "us-west-1"
    both = {"HOME": home, "AWS_DEFAULT_REGION": "us-west-1", "AWS_REGION": "us-east-2"}
    assert res(environ=both).region == "us-east-2"
    moved = tmp_path / "elsewhere"
    aws.rename(moved)
    assert res(environ={"HOME": home, "AWS_CONFIG_FILE": str(moved)}).region == "ap-south-1"
    # A project's own region beats the ambient AWS configuration.
    config = write(tmp_path / "sagemaker.yaml", "region: sa-east-1\n")
    assert res(config=config, environ={"HOME": home, "AWS_REGION": "us-east-2"}).region == (
        "sa-east-1")


def test_mappings_merge_key_by_key(tmp_path):
    config = write(tmp_path / "sagemaker.yaml", """\
        tags: {project: sm-pytest, team: ml}
        environment: {A: "1", B: two}
    """)
    s = res(config=config, block={"tags": {"team": "vision", "cost": 7},
                                  "environment": {"B": "three"}})
    assert s.tags == {"project": "sm-pytest", "team": "vision", "cost": "7"}
    assert s.environment == {"A": "1", "B": "three"}


def test_textual_sources_are_parsed():
    s = res(cli={"spot": True, "max_parallel": "8"}, ini={"emulate": "yes", "keep_alive": "5"})
    assert (s.spot, s.max_parallel, s.emulate, s.keep_alive_s) == (True, 8, True, 5)
    assert s.max_wait == 2 * s.max_run  # spot without max_wait


def test_unknown_cli_key_is_a_programming_error():
    with pytest.raises(TypeError, match="unknown command-line"):
        res(cli={"instance": "x"})


# --- settings: errors ------------------------------------------------------------------------


def test_unknown_config_key_suggests_and_names_file_and_line(tmp_path):
    config = write(tmp_path / "config" / "sagemaker.yaml", "prefix: p\ninstance_typ: x\n")
    with pytest.raises(SettingsError) as info:
        res(config=config)
    assert str(info.value) == (f"{config}:2: unknown key 'instance_typ': did you mean"
                               " 'instance_type'?")


def test_unknown_block_key_suggests_with_the_experiment_line(tmp_path):
    experiment = write(tmp_path / "experiments" / "x.yaml", """\
        description: x
        sagemaker:
          instance_type: ml.m5.xlarge
          max_runtime: 60
    """)
    with pytest.raises(SettingsError) as info:
        res(block={"instance_type": "ml.m5.xlarge", "max_runtime": 60}, path=experiment)
    assert str(info.value) == (f"{experiment}:4: unknown key 'sagemaker.max_runtime': did you"
                               " mean 'max_run'?")


def test_session_keys_are_refused_in_an_experiment(tmp_path):
    experiment = write(tmp_path / "x.yaml", "sagemaker:\n  bucket: b\n")
    with pytest.raises(SettingsError, match=r"x.yaml:2: 'sagemaker.bucket' is a setting of"
                                            r" the whole session.*--sm-bucket"):
        res(block={"bucket": "b"}, path=experiment)


def test_max_wait_below_max_run_for_spot_names_both_sources(tmp_path):
    config = write(tmp_path / "config" / "sagemaker.yaml", "max_run: 3600\nmax_wait: 600\n")
    res(config=config)  # without spot max_wait is unused: no error
    with pytest.raises(SettingsError) as info:
        res(config=config, cli={"spot": True})
    assert str(info.value).startswith(
        f"{config}:2: max_wait (600) must be >= max_run (3600, {config}:1) for managed spot")
    experiment = write(tmp_path / "e.yaml", "sagemaker:\n  max_run: 9000\n")
    with pytest.raises(SettingsError, match=r"max_wait \(7200\) must be >= max_run \(9000,"
                                            r" .*e.yaml:2\)"):
        res(config=write(tmp_path / "c.yaml", "max_wait: 7200\n"), cli={"spot": True},
            block={"max_run": 9000}, path=experiment)


@pytest.mark.parametrize("key, value, message", [
    ("role", "SageMakerRole", "give the full ARN of an IAM role"),
    ("bucket", "s3://bkt", "without s3://"),
    ("bucket", "My_Bucket", "not a valid S3 bucket name"),
    ("prefix", "a/../b", "not a usable S3 key prefix"),
    ("instance_type", "local", "ml.m5.xlarge"),
    ("max_run", "3600", "must be a whole number of seconds, not a string"),
    ("max_run", 0, "between 1 and 2419200 seconds"),
    ("keep_alive", 99999, "between 0 and 21600 seconds"),
    ("framework_version", 2.8, "must be quoted"),
    ("py_version", "3.12", "py312"),
    ("spot", "yes", "must be true or false"),
    ("region", "Frankfurt", "us-east-1"),
    ("tags", {"aws:owner": "x"}, "reserved by AWS"),
    ("tags", {"sm-pytest:run": "x"}, "set by sm-pytest"),
    ("tags", {"k": "a,b"}, "not a valid tag value"),
    ("tags", ["a"], "must be a mapping"),
    ("environment", {"SM_MODEL_DIR": "/x"}, "container contract"),
    ("environment", {"1BAD": "x"}, "not a valid variable name"),
    ("environment", {"FLAG": True}, "quote true/false"),
])
def test_bad_config_values_are_named(tmp_path, key, value, message):
    config = tmp_path / "sagemaker.yaml"
    config.write_text(json.dumps({key: value}))  # JSON is YAML
    with pytest.raises(SettingsError, match=message) as info:
        res(config=config)
    assert str(info.value).startswith(f"{config}:1: {key} (")


@pytest.mark.parametrize("name, owned", [
    ("SM_MODEL_DIR", True), ("SM_ANYTHING", True), ("PYTHONPATH", True),
    ("SAGEMAKER_PROGRAM", True), ("SAGEMAKER_SUBMIT_DIRECTORY", True),
    ("SAGEMAKER_REGION", True), ("SAGEMAKER_JOB_NAME", True),
    ("SAGEMAKER_CONTAINER_LOG_LEVEL", True), ("SAGEMAKER_TRAINING_MODULE", True),
    ("SAGEMAKER_BASE_DIR", True), ("TRAINING_JOB_NAME", True), ("CURRENT_HOST", True),
    ("SM", False), ("sm_model_dir", False), ("SAGEMAKER_OTHER", False), ("MY_SM_DIR", False),
    ("PYTHONPATHS", False), ("LOG_LEVEL", False),
])
def test_environment_refuses_what_the_container_contract_owns(name, owned):
    # The very names the contract drops from an inherited environment (one definition).
    assert is_owned_variable(name) is owned
    if owned:
        with pytest.raises(SettingsError, match="belongs to the SageMaker training container"):
            res(block={"environment": {name: "x"}})
    else:
        assert res(block={"environment": {name: "x"}}).environment == {name: "x"}


def test_bad_cli_value_names_the_option():
    with pytest.raises(SettingsError, match=r"^--sm-max-parallel: max_parallel \('many'\)"):
        res(cli={"max_parallel": "many"})
    with pytest.raises(SettingsError, match=r"^ini option sm_keep_alive: keep_alive"):
        res(ini={"keep_alive": "-1"})


def test_require_launch_settings_lists_everything_missing_at_once():
    with pytest.raises(SettingsError) as info:
        require_launch_settings(res())
    message = str(info.value)
    for needle in ("role:", "--sm-role", "sm_role", "SM_PYTEST_ROLE", "bucket:",
                   "--sm-bucket", "SM_PYTEST_BUCKET", "region:", "AWS_REGION"):
        assert needle in message
    assert message.count("\n  - ") == 3
    require_launch_settings(settings())
    require_launch_settings(settings(region=None, emulate=True))  # the emulator has one


def test_local_modules_import_no_aws_sdk():
    code = ("import sys, json; import sm_pytest.sagemaker.settings, sm_pytest.sagemaker.request,"
            " sm_pytest.sagemaker.uploads, sm_pytest.run.safe_tar; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))
    assert not loaded & {"sagemaker", "boto3", "botocore", "moto", "s3transfer", "pandas"}


# --- job names ---------------------------------------------------------------------------


def test_job_name_is_readable_and_traceable():
    assert rq.job_name(make_run(), "3fa2c1004") == "lr-sweep-lr-0p1-3fa2c1004"
    assert rq.job_name(make_run("baseline", ""), "3fa2c1000") == "baseline-3fa2c1000"
    assert rq.job_name(make_run("Batch_LR", "lr=1e-3,batch-size=64"), "x1") == (
        "batch-lr-lr-1e-3-batch-size-64-x1")


@pytest.mark.parametrize("experiment, run_id", [
    ("a" * 120, "lr=0.1"), ("x", "p=" + "9" * 80), ("__", "=="), ("é-ü", "лр=1"),
    ("lr_sweep", "path=/tmp/a b,c"), ("-", "-"),
])
def test_job_names_are_always_valid_and_keep_the_token(experiment, run_id):
    name = rq.job_name(make_run(experiment, run_id), "abc123-007")
    assert rq.JOB_NAME_PATTERN.fullmatch(name) and len(name) <= 63
    assert name.endswith("abc123-007")
    assert name == rq.job_name(make_run(experiment, run_id), "abc123-007")  # deterministic


def test_long_names_differ_by_token_after_truncation():
    a = rq.job_name(make_run("e" * 80, "lr=0.1"), "abc123000")
    b = rq.job_name(make_run("e" * 80, "lr=0.2"), "abc123001")
    # 59, not the service's 63: each job is also a Run of that name (names.job_name).
    assert a != b and len(a) == 59 and a.startswith("eeee")


@pytest.mark.parametrize("token", ["", "-a", "a_b", "a--b", "x" * 41])
def test_bad_tokens_are_refused(token):
    with pytest.raises(ValueError, match="token"):
        rq.job_name(make_run(), token)


# --- the request, field by field --------------------------------------------------------------


def test_request_on_demand_field_by_field():
    run = make_run()
    request, warnings = build(run, experiment_config={
        "ExperimentName": "lr-sweep", "TrialName": "Default-Run-Group-lr-sweep",
        "RunName": "lr-sweep-lr-0-1"})
    assert warnings == []
    assert request["TrainingJobName"] == "lr-sweep-lr-0p1-abc123000"
    assert request["AlgorithmSpecification"] == {
        "TrainingImage": IMAGE, "TrainingInputMode": "File",
        "MetricDefinitions": [{"Name": "test_accuracy", "Regex": r"test_accuracy=([0-9.]+)"},
                              {"Name": "test_loss", "Regex": r"test_loss=([0-9.]+)"}]}
    assert request["RoleArn"] == ROLE
    assert request["InputDataConfig"] == [{
        "ChannelName": "training",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": DATA,
                                        "S3DataDistributionType": "FullyReplicated"}},
        "InputMode": "File"}]
    assert request["OutputDataConfig"] == {"S3OutputPath": "s3://bkt/sm-pytest/output"}
    assert request["ResourceConfig"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                                         "VolumeSizeInGB": 30, "KeepAlivePeriodInSeconds": 1800}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert request["EnableManagedSpotTraining"] is False
    assert "CheckpointConfig" not in request
    assert "Environment" not in request
    assert request["Tags"] == [{"Key": "project", "Value": "sm-pytest"},
                               {"Key": "sm-pytest:experiment", "Value": "lr_sweep"},
                               {"Key": "sm-pytest:run", "Value": "lr=0.1"}]
    assert request["ExperimentConfig"]["RunName"] == "lr-sweep-lr-0-1"
    json.dumps(request)  # request.json is written as is


def test_hyperparameters_are_encoded_exactly_as_for_local_runs():
    run = make_run()
    hps = build(run)[0]["HyperParameters"]
    assert {k: v for k, v in hps.items() if not k.startswith("sagemaker_")} == (
        encode_hyperparameters(run.hyperparameters))
    assert hps["name"] == '"3"' and hps["lr"] == "0.1" and hps["flag"] == "true"
    assert hps["nothing"] == "null"
    assert hps["sagemaker_program"] == '"train.py"'
    assert hps["sagemaker_submit_directory"] == json.dumps(SOURCE)
    assert hps["sagemaker_container_log_level"] == "20"
    assert hps["sagemaker_region"] == '"us-east-1"'
    assert hps["sagemaker_job_name"] == '"lr-sweep-lr-0p1-abc123000"'
    decoded = decode_hyperparameters(hps)  # what the toolkit reads back
    assert {k: v for k, v in decoded.items() if not k.startswith("sagemaker_")} == (
        run.hyperparameters)
    assert all(isinstance(v, str) for v in hps.values())


def test_spot_request_has_max_wait_and_checkpoints_and_no_warm_pool():
    run = make_run()
    request, warnings = build(run, settings(spot=True))
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600,
                                            "MaxWaitTimeInSeconds": 7200}
    assert request["CheckpointConfig"] == {
        "S3Uri": "s3://bkt/sm-pytest/checkpoints/lr_sweep/lr=0.1/lr-sweep-lr-0p1-abc123000",
        "LocalPath": "/opt/ml/checkpoints"}
    assert "KeepAlivePeriodInSeconds" not in request["ResourceConfig"]
    assert len(warnings) == 1 and "warm pools cannot be used with spot" in warnings[0]
    request, warnings = build(run, settings(spot=True, keep_alive_s=0, max_wait=None))
    assert warnings == [] and request["StoppingCondition"]["MaxWaitTimeInSeconds"] == 7200


def test_optional_fields():
    s = settings(keep_alive_s=0, environment={"PIP_CACHE_DIR": "/tmp/pip"}, prefix="",
                 tags={}, instance_count=2)
    request, warnings = build(make_run("baseline", "", instance_count=2), s, inputs={})
    assert "KeepAlivePeriodInSeconds" not in request["ResourceConfig"]
    assert request["Environment"] == {"PIP_CACHE_DIR": "/tmp/pip"}
    assert request["OutputDataConfig"] == {"S3OutputPath": "s3://bkt/output"}
    assert "InputDataConfig" not in request and "ExperimentConfig" not in request
    assert request["Tags"] == [{"Key": "sm-pytest:experiment", "Value": "baseline"}]
    assert any("instance_count is 2" in w for w in warnings)


TORCHRUN = {"torch_distributed": {"enabled": True}}


def test_instance_count_is_the_runs_own():
    # SDK v2 src/sagemaker/job.py _prepare_resource_config: InstanceCount and InstanceType,
    # nothing else for N > 1.
    request, warnings = build(make_run(instance_count=3), settings(instance_count=3))
    assert request["ResourceConfig"]["InstanceCount"] == 3
    assert [w for w in warnings if "instance_count is 3: each instance runs the script on"
            " the full data" in w]
    assert "sagemaker_torch_distributed_enabled" not in request["HyperParameters"]
    # resolve() takes the count from the run; settings made otherwise must agree with it.
    with pytest.raises(rq.RequestError, match=r"settings.instance_count \(1\) differs from"
                                              r" the run's instance_count \(3\)"):
        build(make_run(instance_count=3), settings())


def test_torch_distributed_hyperparameters_as_the_sdk_sets_them():
    # SDK v2 src/sagemaker/pytorch/estimator.py: _pytorch_distribution_configuration adds
    # LAUNCH_TORCH_DISTRIBUTED_ENV_NAME and INSTANCE_TYPE_ENV_NAME, and hyperparameters()
    # JSON-encodes them (EstimatorBase._json_encode_hyperparameters): nothing else, and no
    # sagemaker_distributed_dataparallel_enabled without "smdistributed".
    run = make_run(instance_count=2, distribution=TORCHRUN)
    request, warnings = build(run, settings(instance_type="ml.p4d.24xlarge", instance_count=2))
    hyperparameters = request["HyperParameters"]
    assert hyperparameters["sagemaker_torch_distributed_enabled"] == "true"
    assert hyperparameters["sagemaker_instance_type"] == '"ml.p4d.24xlarge"'
    plain, _ = build(make_run(instance_count=2), settings(instance_type="ml.p4d.24xlarge",
                                                        instance_count=2))
    added = set(hyperparameters) - set(plain["HyperParameters"])
    assert added == {"sagemaker_torch_distributed_enabled", "sagemaker_instance_type"}
    assert request["ResourceConfig"]["InstanceCount"] == 2
    # With a distribution the hosts work together: no "full data on each instance" warning,
    # and a GPU instance is what the SDK asks for.
    assert warnings == []
    single, _ = build(make_run(distribution=TORCHRUN), settings(instance_type="ml.g5.xlarge"))
    assert single["HyperParameters"]["sagemaker_instance_type"] == '"ml.g5.xlarge"'
    assert single["ResourceConfig"]["InstanceCount"] == 1


@pytest.mark.parametrize("instance_type, warned", [
    ("ml.m5.xlarge", True), ("ml.c5.2xlarge", True), ("ml.g5.xlarge", False),
    ("ml.p4d.24xlarge", False), ("ml.trn1.32xlarge", False),
])
def test_torch_distributed_on_cpu_is_a_warning(instance_type, warned):
    # SDK v2 src/sagemaker/fw_utils.py validate_torch_distributed_distribution refuses CPU
    # types on the client ("Currently torch_distributed is supported only for GPU and
    # Trainium instances."; _is_gpu_instance: family p* or g*; _is_trainium_instance: trn*);
    # the service does not, so the request is still built.
    request, warnings = build(make_run(instance_count=2, distribution=TORCHRUN),
                              settings(instance_type=instance_type, instance_count=2))
    cpu = [w for w in warnings if "supported only for GPU and Trainium instances" in w]
    assert bool(cpu) is warned
    if warned:
        assert cpu[0].startswith(f"distribution torch_distributed on {instance_type}:")
    assert request["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"


def test_distribution_hyperparameters_cannot_be_given():
    with pytest.raises(rq.RequestError, match="sagemaker_torch_distributed_enabled"):
        build(make_run(hyperparameters={"sagemaker_torch_distributed_enabled": True}))


def test_instance_count_is_refused_in_settings_with_a_pointer(tmp_path):
    config = write(tmp_path / "config" / "sagemaker.yaml", "prefix: p\ninstance_count: 2\n")
    with pytest.raises(SettingsError) as info:
        res(config=config)
    assert str(info.value).startswith(f"{config}:2: 'instance_count' is not a SageMaker"
                                      " setting: it is the number of hosts to train on")
    assert "top level of the experiment file" in str(info.value)
    experiment = write(tmp_path / "experiments" / "x.yaml",
                       "sagemaker:\n  instance_type: ml.g5.xlarge\n  instance_count: 2\n")
    with pytest.raises(SettingsError) as info:
        res(block={"instance_type": "ml.g5.xlarge", "instance_count": 2}, path=experiment)
    assert str(info.value).startswith(f"{experiment}:3: 'sagemaker.instance_count':"
                                      " 'instance_count' is not a SageMaker setting")


def test_instance_count_1_in_the_config_file_is_accepted_with_a_notice(tmp_path):
    # config/sagemaker.yaml as shipped before multi-host runs held `instance_count: 1`.
    config = write(tmp_path / "config" / "sagemaker.yaml", "prefix: p\ninstance_count: 1\n")
    resolved = res(config=config)
    assert (resolved.instance_count, resolved.prefix) == (1, "p")
    assert resolved.sources["instance_count"] == "built-in default"
    assert resolved.notices == (
        f"{config}:2: 'instance_count: 1' in the SageMaker config file is deprecated and"
        " ignored (the number of hosts is the experiment's top-level instance_count, default"
        " 1); remove it",)
    # the run's own count still rules, the 1 of the file notwithstanding
    assert resolve(cli={}, ini={}, config_path=config, experiment_block={},
                   environ={"HOME": "/nonexistent"}, instance_count=3).instance_count == 3
    assert res().notices == ()


@pytest.mark.parametrize("value", ["2", "0", "true", "1.0", "'1'"])
def test_instance_count_other_than_1_in_the_config_file_is_still_refused(tmp_path, value):
    config = write(tmp_path / "config" / "sagemaker.yaml", f"instance_count: {value}\n")
    with pytest.raises(SettingsError, match=r"'instance_count' is not a SageMaker setting:"
                                            r" .* top level of the experiment file") as info:
        res(config=config)
    assert str(info.value).startswith(f"{config}:1: ")


def test_resolved_instance_count_comes_from_the_run():
    resolved = resolve(cli={}, ini={}, config_path=None, experiment_block={},
                       environ={"HOME": "/nonexistent"}, instance_count=4)
    assert resolved.instance_count == 4
    assert resolved.sources["instance_count"] == "the experiment's instance_count"
    assert res().instance_count == 1


def test_channels_are_sorted():
    request, _ = build(inputs={"validation": DATA + "v/", "training": DATA})
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["training", "validation"]


@pytest.mark.parametrize("change, message", [
    (dict(inputs={"training": "data/mnist-sample"}), "s3:// URIs only"),
    (dict(inputs={"bad name": DATA}), "channel name"),
    (dict(source_uri="src"), "sourcedir.tar.gz"),
    (dict(job_name="bad_name"), "not a valid SageMaker training job name"),
    (dict(experiment_config={"Experiment": "x"}), "unknown key"),
])
def test_request_errors(change, message):
    with pytest.raises(rq.RequestError, match=message):
        build(**change)


def test_reserved_and_oversized_hyperparameters_are_refused():
    with pytest.raises(rq.RequestError, match="sagemaker_program"):
        build(make_run(hyperparameters={"sagemaker_program": "x.py"}))
    with pytest.raises(rq.RequestError, match="2500"):
        build(make_run(hyperparameters={"big": "x" * 2600}))
    with pytest.raises(rq.RequestError, match="allows 100"):
        build(make_run(hyperparameters={f"h{i}": i for i in range(96)}))


def test_missing_launch_settings_are_settings_errors():
    with pytest.raises(SettingsError):
        build(s=settings(role=None))
    with pytest.raises(SettingsError, match="region"):
        build(s=settings(region=None))


# --- the SDK side: image lookup and TrainingJob.create under moto -----------------------------


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """Fake credentials, no endpoint override, no SageMaker config files or telemetry."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config = tmp_path / "sagemaker-config.yaml"
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
                      "      TelemetryOptOut: true\n")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    monkeypatch.setenv("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", str(config))


def test_image_uri_is_the_pytorch_training_image(aws):
    pytest.importorskip("sagemaker.core")
    assert rq.image_uri(settings()) == IMAGE
    gpu = rq.image_uri(settings(instance_type="ml.g5.xlarge"), region="eu-west-1")
    assert gpu == IMAGE.replace("us-east-1", "eu-west-1").replace("-cpu-", "-gpu-")
    with pytest.raises(SettingsError, match="no PyTorch training image for framework_version"
                                            " '0.0.1'"):
        rq.image_uri(settings(framework_version="0.0.1"))


def test_sdk_create_sends_exactly_the_request(aws):
    pytest.importorskip("sagemaker.core")
    moto = pytest.importorskip("moto")
    import boto3
    from sagemaker.core.resources import Tag, TrainingJob
    from sagemaker.core.shapes import ResourceConfig

    experiment = {"ExperimentName": "lr-sweep", "TrialName": "Default-Run-Group-lr-sweep",
                  "RunName": "lr-sweep-lr-0-1"}
    requests = [
        build(s=settings(spot=True, environment={"A": "1"}), experiment_config=experiment)[0],
        build(make_run("baseline", ""), settings())[0],
        build(make_run("two_hosts", "", instance_count=2, distribution=TORCHRUN),
              settings(instance_type="ml.g5.xlarge", instance_count=2))[0],
    ]
    kwargs = rq.to_sdk_kwargs(requests[0])
    assert isinstance(kwargs["resource_config"], ResourceConfig)
    assert all(isinstance(tag, Tag) for tag in kwargs["tags"])
    sent = []
    with moto.mock_aws():
        session = boto3.Session(region_name="us-east-1")
        session.events.register("provide-client-params.sagemaker.CreateTrainingJob",
                                lambda params, **_: sent.append(json.loads(json.dumps(params))))
        for request in requests:
            job = TrainingJob.create(**rq.to_sdk_kwargs(request), session=session,
                                     region="us-east-1")
            assert job.training_job_name == request["TrainingJobName"]
    assert sent == requests


def test_to_sdk_kwargs_refuses_unknown_fields_and_values_the_sdk_would_drop():
    pytest.importorskip("sagemaker.core")
    request, _ = build()
    with pytest.raises(rq.RequestError, match="TrainingJobNam"):
        rq.to_sdk_kwargs({**request, "TrainingJobNam": "x"})
    request["Tags"].append({"Key": "empty", "Value": ""})
    with pytest.raises(rq.RequestError, match=r"would not send \['Tags'\]"):
        rq.to_sdk_kwargs(request)
