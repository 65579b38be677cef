"""One RunSpec as a CreateTrainingJob request: pure functions, checked field by field.

The request is built in the shape the API itself takes (PascalCase, what botocore sends and
what request.json records), so it can be read against the API reference and compared with
what was really sent. ``to_sdk_kwargs`` hands the same request to the v3 SDK
(``sagemaker.core.resources.TrainingJob.create``) through sagemaker-core's own
deserializer, so nothing is mapped by hand twice.

Sources for the rules applied here:

* Job names: made by ``names.job_name`` (the service model's TrainingJobName, and the
  SDK's 59-character limit for the Run named after the job); checked again here.
* Hyperparameters: the SDK JSON-encodes every value, the script-mode keys included
  (v2 ``Framework._json_encode_hyperparameters``: ``{str(k): json.dumps(v)}``), and the
  training toolkit ``json.loads`` each one back; ``contract.encode_hyperparameters`` does
  exactly that for local runs too, so both backends hand the script the same arguments.
* Spot: MaxWaitTimeInSeconds "must be equal to or greater than MaxRuntimeInSeconds"
  (API StoppingCondition); "SageMaker AI managed warm pools cannot be used with spot
  instances" (developer guide, Managed Warm Pools, Considerations), so a keep-alive is left
  out of spot jobs with a warning.

Standard library only; sagemaker.core is imported inside ``image_uri`` and
``to_sdk_kwargs``, which only the SageMaker backend calls.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sm_pytest.run.artifacts import folder_name
from sm_pytest.run.contract import (
    CHANNEL_NAME,
    INSTANCE_TYPE_PARAM,
    JOB_NAME_PARAM,
    LOG_LEVEL_PARAM,
    PROGRAM_PARAM,
    REGION_PARAM,
    SCRIPT_MODE_PARAMS,
    SUBMIT_DIR_PARAM,
    TORCH_DISTRIBUTED_PARAM,
    distribution_hyperparameters,
    encode_hyperparameters,
)
from sm_pytest.sagemaker.aws import s3_uri, utf16_cut, utf16_length
from sm_pytest.sagemaker.names import JOB_NAME_PATTERN, MAX_JOB_NAME, job_name
from sm_pytest.sagemaker.settings import OWN_TAG_PREFIX, SageMakerSettings, SettingsError
from sm_pytest.sagemaker.warm_pools import PIP_CACHE_DIR

if TYPE_CHECKING:
    from sm_pytest.spec.experiment_file import RunSpec

__all__ = [
    "CHECKPOINT_LOCAL_PATH",
    "RequestError",
    "build_request",
    "image_uri",
    "job_name",
    "pool_fields",
    "to_sdk_kwargs",
]

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
LOG_LEVEL = 20  # logging.INFO, the SDK's default container_log_level
# SDK v2 src/sagemaker/fw_utils.py _is_gpu_instance / _is_trainium_instance: the family of
# ml.<family>.<size> starts with p or g (GPU), or trn (Trainium).
_INSTANCE_FAMILY = re.compile(r"^ml[._]([a-z\d\-]+)\.?\w*$")
_EXPERIMENT_CONFIG_KEYS = {"ExperimentName", "TrialName", "TrialComponentDisplayName",
                           "RunName"}


class RequestError(ValueError):
    """A run cannot be expressed as a valid CreateTrainingJob request; says why."""


# --- the request ---------------------------------------------------------------------------

_DISTRIBUTION_PARAMS = frozenset({TORCH_DISTRIBUTED_PARAM, INSTANCE_TYPE_PARAM})


def _gpu_or_trainium(instance_type: str) -> bool:
    match = _INSTANCE_FAMILY.match(instance_type)
    family = match.group(1) if match else ""
    return family.startswith(("p", "g", "trn"))


def _tag_text(text: str) -> str:
    """A run id as a tag value: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@] only, at most 256 (UTF-16
    code units, as AWS counts)."""
    text = text.replace(",", " ")
    text = "".join(c if c.isalnum() or c in " _.:/=+-@" else "_" for c in text)
    return utf16_cut(text, 256)


def _hyperparameters(run: RunSpec, source_uri: str, region: str, name: str,
                     instance_type: str) -> dict[str, str]:
    clash = sorted(set(run.hyperparameters) & (SCRIPT_MODE_PARAMS | _DISTRIBUTION_PARAMS))
    if clash:
        raise RequestError(f"hyperparameter(s) {', '.join(clash)} are set by sm-pytest itself"
                           " (script mode) and cannot be given")
    try:
        encoded = encode_hyperparameters(run.hyperparameters)
    except TypeError as exc:
        raise RequestError(str(exc)) from None
    encoded.update(encode_hyperparameters({
        PROGRAM_PARAM: run.entry_point,
        SUBMIT_DIR_PARAM: source_uri,
        LOG_LEVEL_PARAM: LOG_LEVEL,
        REGION_PARAM: region,
        JOB_NAME_PARAM: name,
    }))
    # SDK v2 src/sagemaker/pytorch/estimator.py: PyTorch._pytorch_distribution_configuration
    # (sagemaker_torch_distributed_enabled, sagemaker_instance_type), then hyperparameters()
    # JSON-encodes each value (EstimatorBase._json_encode_hyperparameters): True -> "true",
    # the instance type -> '"ml.p4d.24xlarge"', quotes included. The local contract adds the
    # very same (one definition: contract.distribution_hyperparameters).
    encoded.update(encode_hyperparameters(
        distribution_hyperparameters(run.distribution, instance_type)))
    if len(encoded) > 100:
        raise RequestError(f"{len(encoded)} hyperparameters (with the {len(SCRIPT_MODE_PARAMS)}"
                           " script-mode ones); CreateTrainingJob allows 100")
    for key, value in encoded.items():
        if utf16_length(key) > 256:
            raise RequestError(f"hyperparameter name {key[:40]!r}... is longer than 256"
                               " characters")
        if utf16_length(value) > 2500:
            raise RequestError(f"hyperparameter {key!r} is {len(value)} characters once"
                               " JSON-encoded; SageMaker allows 2500 (pass large values as"
                               " an input channel instead)")
    return encoded


def _channels(inputs: dict[str, str]) -> list[dict[str, Any]]:
    if len(inputs) > 20:
        raise RequestError(f"{len(inputs)} input channels; CreateTrainingJob allows 20")
    channels = []
    for name in sorted(inputs):
        uri = inputs[name]
        if not CHANNEL_NAME.match(name):
            raise RequestError(f"channel name {name!r}: SageMaker allows 1-64 letters, digits,"
                               " '.', '-' and '_'")
        if not uri.startswith("s3://") or len(uri) > 1024:
            raise RequestError(f"input {name!r} is {uri!r}; a SageMaker job reads s3:// URIs"
                               " only (upload local folders first: uploads.resolve_inputs)")
        channels.append({
            "ChannelName": name,
            "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }},
            "InputMode": "File",
        })
    return channels


def _metric_definitions(run: RunSpec) -> list[dict[str, str]]:
    definitions = [{"Name": d.name, "Regex": d.regex} for d in run.metric_definitions]
    if len(definitions) > 40:
        raise RequestError(f"{len(definitions)} metric definitions; SageMaker allows 40")
    for d in definitions:
        if not 1 <= len(d["Name"]) <= 255 or not 1 <= len(d["Regex"]) <= 500:
            raise RequestError(f"metric {d['Name'][:40]!r}: SageMaker allows names of 1-255"
                               " and regexes of 1-500 characters")
    return definitions


def build_request(
    run: RunSpec,
    settings: SageMakerSettings,
    *,
    job_name: str,
    image_uri: str,
    source_uri: str,
    inputs: dict[str, str],
    experiment_config: dict | None = None,
) -> tuple[dict, list[str]]:
    """The CreateTrainingJob request for ``run`` (PascalCase, as the API takes it) and the
    warnings a user should see (nothing here is fatal that a warning can explain).

    ``source_uri`` is the uploaded sourcedir.tar.gz; ``inputs`` maps channel names to
    s3:// URIs (see uploads.resolve_inputs).

    Checkpoints (CheckpointConfig) are configured for spot jobs only, at
    ``s3://<bucket>/<prefix>/checkpoints/<experiment>/<run>/<job name>``: a spot job resumes
    from them after an interruption, within the same job. The job name in the path keeps
    one session's checkpoints from seeding the next session's run of the same experiment
    (a resumed "test" that trained nothing would pass for the wrong reason). On-demand jobs
    are never interrupted, so there they would only cost S3 traffic and storage.
    """
    warnings: list[str] = []
    if not JOB_NAME_PATTERN.fullmatch(job_name) or len(job_name) > MAX_JOB_NAME:
        raise RequestError(f"job name {job_name!r} is not a valid SageMaker training job name")
    if not settings.role or not settings.bucket:
        raise SettingsError("a SageMaker job needs a role and a bucket"
                            " (settings.require_launch_settings says how to give them)")
    if not settings.region:
        raise SettingsError("a SageMaker job needs a region (give --sm-region or AWS_REGION)")
    if not image_uri:
        raise RequestError("no training image URI")
    if not source_uri.startswith("s3://"):
        raise RequestError(f"source {source_uri!r} must be the s3:// URI of sourcedir.tar.gz")

    if settings.instance_count != run.instance_count:
        # settings.resolve takes the run's count (the experiment's top-level key); settings
        # built by hand must agree with it, or plan, fingerprint and job would differ.
        raise RequestError(f"settings.instance_count ({settings.instance_count}) differs from"
                           f" the run's instance_count ({run.instance_count})")
    resource_config = _resource_config(run, settings)
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": settings.max_run}
    if settings.keep_alive_s > 0 and settings.spot:
        warnings.append(
            f"keep_alive ({settings.keep_alive_s} s) is ignored for spot jobs: SageMaker"
            " managed warm pools cannot be used with spot instances (SageMaker developer"
            " guide, Managed Warm Pools, Considerations); the job keeps no warm pool")
    if run.instance_count > 1 and not run.distribution:
        warnings.append(
            f"instance_count is {run.instance_count}: each instance runs the script on"
            " the full data (FullyReplicated) unless the script itself distributes the work")
    if run.torch_distributed and not _gpu_or_trainium(settings.instance_type):
        # The SDK refuses this on the client (fw_utils.py validate_torch_distributed_
        # distribution, unless image_uri is given); the service and the toolkit run it.
        warnings.append(
            f"distribution torch_distributed on {settings.instance_type}: the SageMaker SDK"
            " would refuse it (\"Currently torch_distributed is supported only for GPU and"
            " Trainium instances.\", fw_utils.py); the job runs it anyway, with one process per"
            " host (the toolkit starts one per GPU, else one)")

    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": _metric_definitions(run),
        },
        "RoleArn": settings.role,
        "HyperParameters": _hyperparameters(run, source_uri, settings.region, job_name,
                                            settings.instance_type),
        "OutputDataConfig": {
            "S3OutputPath": s3_uri(settings.bucket, settings.prefix, "output"),
        },
        "ResourceConfig": resource_config,
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": settings.spot,
    }
    channels = _channels(inputs)
    if channels:
        request["InputDataConfig"] = channels
    if settings.spot:
        max_wait = settings.max_wait or 2 * settings.max_run
        if max_wait < settings.max_run:
            raise SettingsError(f"max_wait ({max_wait}) must be >= max_run ({settings.max_run})"
                                " for managed spot")
        stopping["MaxWaitTimeInSeconds"] = max_wait
        request["CheckpointConfig"] = {
            "S3Uri": s3_uri(settings.bucket, settings.prefix, "checkpoints",
                            folder_name(run.experiment), folder_name(run.run_id or "default"),
                            job_name),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        }
    environment = dict(settings.environment)
    if (settings.warm_pool_pip_cache and "KeepAlivePeriodInSeconds" in resource_config
            and (run.source_dir / "requirements.txt").is_file()):
        # pip keeps the wheels of requirements.txt in the warm pool's persistent cache, so
        # a job on a reused pool installs them without downloading (the toolkit runs a
        # plain `pip install -r requirements.txt`, which reads PIP_CACHE_DIR).
        environment.setdefault("PIP_CACHE_DIR", PIP_CACHE_DIR)
    elif settings.warm_pool_pip_cache and "KeepAlivePeriodInSeconds" not in resource_config:
        warnings.append("warm_pool_pip_cache needs a warm pool (keep_alive > 0, no spot): the"
                        " persistent cache exists only on warm-pool jobs, so pip's cache is"
                        " left where it is")
    if environment:
        request["Environment"] = environment
    tags = [{"Key": k, "Value": v} for k, v in settings.tags.items()
            if not k.startswith(OWN_TAG_PREFIX)]
    tags.append({"Key": f"{OWN_TAG_PREFIX}experiment", "Value": _tag_text(run.experiment)})
    if run.run_id:
        # Only with a run id: sagemaker-core drops empty strings inside shapes, and a Tag
        # without its Value is then refused by botocore.
        tags.append({"Key": f"{OWN_TAG_PREFIX}run", "Value": _tag_text(run.run_id)})
    request["Tags"] = tags
    if experiment_config:
        unknown = sorted(set(experiment_config) - _EXPERIMENT_CONFIG_KEYS)
        if unknown:
            raise RequestError(f"experiment_config has unknown key(s) {unknown}; expected"
                               f" {sorted(_EXPERIMENT_CONFIG_KEYS)}")
        request["ExperimentConfig"] = dict(experiment_config)
    return request, warnings


def _resource_config(run: RunSpec, settings: SageMakerSettings) -> dict[str, Any]:
    """ResourceConfig: the instances, their volume and, without spot, the warm pool."""
    resource_config: dict[str, Any] = {
        "InstanceType": settings.instance_type,
        "InstanceCount": run.instance_count,
        "VolumeSizeInGB": settings.volume_size_gb,
    }
    if settings.keep_alive_s > 0 and not settings.spot:
        resource_config["KeepAlivePeriodInSeconds"] = settings.keep_alive_s
    return resource_config


def pool_fields(run: RunSpec, settings: SageMakerSettings) -> dict[str, Any]:
    """The members of the run's request that decide which warm pool it may start on
    (warm_pools.match_key), known before its code and data are uploaded."""
    return {"RoleArn": settings.role, "ResourceConfig": _resource_config(run, settings),
            "EnableManagedSpotTraining": settings.spot}


# --- the SDK side (imports sagemaker.core) --------------------------------------------------


def image_uri(settings: SageMakerSettings, region: str | None = None) -> str:
    """The PyTorch training image for the settings' versions, instance type and region."""
    region = region or settings.region
    if not region:
        raise SettingsError("the training image depends on the region; give --sm-region or"
                            " AWS_REGION")
    from sagemaker.core import image_uris

    from sm_pytest.sagemaker.images import choose_versions

    try:
        # resolve() has chosen both already; settings built by hand may leave them out.
        version, py_version = choose_versions(settings.framework_version, settings.py_version,
                                              settings.instance_type)
        return image_uris.retrieve(
            framework="pytorch",
            region=region,
            version=version,
            py_version=py_version,
            instance_type=settings.instance_type,
            image_scope="training",
        )
    except ValueError as exc:
        sources = settings.sources
        where = ", ".join(f"{k} from {sources[k]}" for k in ("framework_version", "py_version")
                          if k in sources)
        raise SettingsError(
            f"no PyTorch training image for framework_version {settings.framework_version!r},"
            f" py_version {settings.py_version!r}, {settings.instance_type} in {region}"
            f"{' (' + where + ')' if where else ''}: {exc}") from None


def to_sdk_kwargs(request: dict) -> dict:
    """``request`` as keyword arguments of ``sagemaker.core.resources.TrainingJob.create``.

    sagemaker-core's own deserializer (``utils.code_injection.codec.transform`` over its
    shape graph, the one it uses for every Describe response) turns the PascalCase request
    into snake_case; each argument is then validated into the type ``create`` declares:
    shape objects, and ``resources.Tag`` for tags (the only Tag class it accepts). A key the
    API does not know is an error rather than silently dropped, and so is any value the
    SDK would lose on the way back out (its serializer drops falsy members of shapes, such
    as an empty string or a 0): what create() sends must be ``request``, exactly.
    """
    import inspect
    import typing

    import pydantic
    from sagemaker.core.resources import TrainingJob
    from sagemaker.core.utils.code_injection.codec import pascal_to_snake, transform
    from sagemaker.core.utils.code_injection.shape_dag import SHAPE_DAG
    from sagemaker.core.utils.utils import serialize

    known = {member["name"] for member in SHAPE_DAG["CreateTrainingJobRequest"]["members"]}
    unknown = sorted(set(request) - known)
    if unknown:
        raise RequestError(f"CreateTrainingJob has no field(s) {unknown}")
    snake = transform(request, "CreateTrainingJobRequest")
    hints = typing.get_type_hints(inspect.unwrap(TrainingJob.create.__func__))
    kwargs = {}
    for name, value in snake.items():
        kwargs[name] = _as_declared(hints.get(name), value, pydantic.BaseModel)
    pascal = {pascal_to_snake(name): name for name in known}
    sent = serialize({pascal[name]: value for name, value in kwargs.items()})
    lost = sorted(k for k in request if sent.get(k) != request[k])
    if lost:
        raise RequestError(f"sagemaker-core would not send {lost} as built (it drops empty"
                           " strings, 0 and False inside shapes); fix the request")
    return kwargs


def _as_declared(hint: Any, value: Any, base_model: type) -> Any:
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        hint = args[0]  # Optional[X]
    if isinstance(hint, type) and issubclass(hint, base_model) and isinstance(value, dict):
        return hint.model_validate(value)
    if typing.get_origin(hint) is list and isinstance(value, list):
        (member,) = typing.get_args(hint)
        return [_as_declared(member, item, base_model) for item in value]
    return value
