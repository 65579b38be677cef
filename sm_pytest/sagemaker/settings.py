"""SageMaker settings for one run: where each one comes from, and checking all of them.

Precedence, highest first. Settings that belong to one run (instance type, time limits,
spot, warm pool, image versions, role, tags, environment) and settings of the whole session
(region, bucket, prefix, parallelism, emulation, keep_pools) differ in one place: an experiment
file may set the former, never the latter.

    per-run settings                         session settings
    1. command-line option (--sm-...)        1. command-line option (--sm-...)
    2. the experiment's `sagemaker:` block   2. SM_PYTEST_ROLE / SM_PYTEST_BUCKET
    3. SM_PYTEST_ROLE (role only)            3. ini option (sm_...)
    4. ini option (sm_...)                   4. config/sagemaker.yaml
    5. config/sagemaker.yaml                 5. standard AWS configuration (region only:
    6. built-in defaults                        AWS_REGION, AWS_DEFAULT_REGION, then the
                                                active profile in ~/.aws/config)
                                             6. built-in defaults

Why the experiment block beats the ini file: ini options and config/sagemaker.yaml are
both project-wide defaults, while an experiment that asks for `instance_type: ml.g5.xlarge`
asks for it because it needs it; a project default must not quietly downgrade it. Only the
person at the command line overrides an experiment. `tags` and `environment` are mappings
and merge instead (built-in < config file < experiment block, key by key).

Every value is checked here, before anything is launched, and every problem is a
SettingsError naming where the value came from (file and line, option, ini key or variable).

Standard library and yaml only: a local run imports this module's neighbours, never boto3.
The region is read from the environment and ~/.aws/config with configparser, as botocore
would read it, without importing botocore. AWS_ENDPOINT_URL and credentials are left to
boto3 itself.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sm_pytest.messages import suggest
from sm_pytest.run.contract import is_owned_variable
from sm_pytest.spec.yamlsafe import YamlError
from sm_pytest.spec.yamlsafe import load as load_yaml

__all__ = [
    "CONFIG_KEYS",
    "ENV_NAMES",
    "INI_NAMES",
    "OPTION_NAMES",
    "SageMakerSettings",
    "SettingsError",
    "fingerprint_settings",
    "require_launch_settings",
    "resolve",
]

DEFAULT_CONFIG_PATH = Path("config") / "sagemaker.yaml"
# StoppingCondition.MaxRuntimeInSeconds: "The maximum value is 28 days."
MAX_RUNTIME_LIMIT = 28 * 24 * 3600
# KeepAlivePeriodInSeconds: 0-21600 in botocore 1.44's model (the guide says 3600).
KEEP_ALIVE_LIMIT = 21600
# TagList max 50; two of them are ours (sm-pytest:experiment, sm-pytest:run).
OWN_TAG_PREFIX = "sm-pytest:"
MAX_USER_TAGS = 48

# How a user gives each setting, for messages. The plugin registers these very names.
OPTION_NAMES = {
    "role": "--sm-role",
    "region": "--sm-region",
    "bucket": "--sm-bucket",
    "prefix": "--sm-prefix",
    "instance_type": "--sm-instance-type",
    "max_parallel": "--sm-max-parallel",
    "keep_alive": "--sm-keep-alive",
    "keep_pools": "--sm-keep-pools",
    "spot": "--spot",
    "emulate": "--sm-emulate",
}
INI_NAMES = {key: f"sm_{key}" for key in OPTION_NAMES}
ENV_NAMES = {"role": "SM_PYTEST_ROLE", "bucket": "SM_PYTEST_BUCKET"}
_REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")

RUN, SESSION = "run", "session"


class SettingsError(ValueError):
    """A SageMaker setting is missing or wrong; the message says where and what to do."""


@dataclass(frozen=True)
class SageMakerSettings:
    """Everything needed to turn one RunSpec into a CreateTrainingJob request."""

    role: str | None = None
    region: str | None = None
    bucket: str | None = None
    prefix: str = "sm-pytest"
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_run: int = 3600
    max_wait: int | None = None  # with spot and no value: 2 x max_run
    keep_alive_s: int = 0
    keep_pools: bool = False  # leave the last warm pools Available at the end (sagemaker_pools)
    warm_pool_pip_cache: bool = False  # PIP_CACHE_DIR in the pool's cache (build_request)
    # None: derived by resolve() from the pinned SDK's image config (sagemaker/images.py):
    # the newest version with CPU and GPU training images, and that version's Python tag.
    framework_version: str | None = None
    py_version: str | None = None
    spot: bool = False
    max_parallel: int = 4
    emulate: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    # Where each value came from (key -> "config/sagemaker.yaml:7", "--spot", ...).
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # One-line notices for the user (deprecated but accepted keys); SageMakerSession passes
    # them on once per session with its other notices.
    notices: tuple[str, ...] = field(default=(), compare=False, repr=False)


def fingerprint_settings(settings: SageMakerSettings) -> dict[str, Any]:
    """The settings that can change what a job computes, for the run fingerprint's
    ``backend`` part: the rest (role, bucket, max_run, max_wait, keep-alive, tags,
    parallelism) only changes where it runs, how long it may take, or what it costs."""
    return {
        "instance_type": settings.instance_type,
        # The run's own count (resolve takes RunSpec.instance_count); kept here so that the
        # digests made before multi-host runs stay the same. The fingerprint's `hosts` part
        # holds the same number, for every backend, only when it is not 1.
        "instance_count": settings.instance_count,
        "framework_version": settings.framework_version,
        "py_version": settings.py_version,
        "spot": settings.spot,
        "volume_size_gb": settings.volume_size_gb,
        "environment": dict(settings.environment),
    }


# --- checking one value ------------------------------------------------------------------


class _Invalid(Exception):
    """Raised by a parser; the message completes "<key> (<value>) ..."."""


def _text(value: Any, textual: bool) -> str:
    if isinstance(value, str):
        return value.strip()
    raise _Invalid(f"must be a string, not {_kind(value)}")


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "empty"}
    return names.get(type(value), type(value).__name__)


def _integer(low: int, high: int, unit: str = "") -> Callable[[Any, bool], int]:
    def parse(value: Any, textual: bool) -> int:
        if textual and isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be a whole number{' of' + unit if unit else ''},"
                           f" not {_kind(value)}")
        if not low <= value <= high:
            raise _Invalid(f"must be between {low} and {high}{unit}")
        return value

    return parse


def _boolean(value: Any, textual: bool) -> bool:
    if isinstance(value, bool):
        return value
    if textual and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    raise _Invalid("must be true or false")


def _pattern(regex: str, hint: str, *, lower: bool = False) -> Callable[[Any, bool], str]:
    compiled = re.compile(regex)

    def parse(value: Any, textual: bool) -> str:
        text = _text(value, textual)
        if lower:
            text = text.lower()
        if not compiled.fullmatch(text):
            raise _Invalid(f"is not valid: {hint}")
        return text

    return parse


_ROLE = _pattern(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-/]+",
                 "give the full ARN of an IAM role, e.g."
                 " arn:aws:iam::123456789012:role/SageMakerExecutionRole")
_REGION = _pattern(r"[a-z]{2}(-[a-z]+)+-\d+", "give a region code such as us-east-1")
_INSTANCE_TYPE = _pattern(r"ml\.[a-z0-9-]+\.[a-z0-9]+",
                          "give a SageMaker training instance type such as ml.m5.xlarge"
                          " (local mode is not supported; run without --sm instead)")
_PY_VERSION = _pattern(r"py3\d+", "give the image's Python tag such as py312")


def _bucket(value: Any, textual: bool) -> str:
    text = _text(value, textual)
    if text.startswith("s3://"):
        raise _Invalid("must be a bucket name without s3:// (put folders in `prefix`)")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", text) or ".." in text:
        raise _Invalid("is not a valid S3 bucket name (3-63 lower-case letters, digits, '.'"
                       " and '-', starting and ending with a letter or digit)")
    return text


def _prefix(value: Any, textual: bool) -> str:
    text = _text(value, textual).strip("/")
    if text and (not re.fullmatch(r"[A-Za-z0-9!_.*'()/-]+", text) or "//" in text
                 or any(part in (".", "..") for part in text.split("/"))):
        raise _Invalid("is not a usable S3 key prefix (letters, digits and !_.*'()-"
                       " in '/'-separated parts, e.g. teams/ml/sm-pytest)")
    return text


def _framework_version(value: Any, textual: bool) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise _Invalid(f"must be quoted: YAML reads {value!r} as a number (so 2.10 would"
                       ' become 2.1); write it as a string, e.g. "2.8.0"')
    text = _text(value, textual)
    if not re.fullmatch(r"\d+(\.\d+){1,2}", text):
        raise _Invalid('must be a PyTorch version such as "2.8.0"')
    return text


_TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")  # TagKey/TagValue: [\p{L}\p{Z}\p{N}_.:/=+\-@]*


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _tags(value: Any, textual: bool) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Invalid("must be a mapping of tag key to value, e.g. {team: ml}")
    tags = {}
    for key, raw in value.items():
        text = _scalar_text(raw)
        if not isinstance(key, str) or text is None:
            raise _Invalid(f"entry {key!r}: keys and values must be strings")
        if not 1 <= len(key) <= 128 or not _TAG_TEXT.fullmatch(key):
            raise _Invalid(f"key {key!r} is not a valid tag key (1-128 letters, digits,"
                           " spaces and _.:/=+-@)")
        if len(text) > 256 or not _TAG_TEXT.fullmatch(text):
            raise _Invalid(f"value of {key!r} is not a valid tag value (at most 256 letters,"
                           " digits, spaces and _.:/=+-@)")
        if key.lower().startswith("aws:"):
            raise _Invalid(f"key {key!r}: the aws: prefix is reserved by AWS")
        if key.startswith(OWN_TAG_PREFIX):
            raise _Invalid(f"key {key!r}: the {OWN_TAG_PREFIX} prefix is set by sm-pytest")
        tags[key] = text
    return tags


def _environment(value: Any, textual: bool) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Invalid("must be a mapping of variable name to value, e.g. {LOG_LEVEL: debug}")
    environment = {}
    for key, raw in value.items():
        text = _scalar_text(raw)
        if not isinstance(key, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]{0,511}", key):
            raise _Invalid(f"{key!r} is not a valid variable name")
        if text is None:
            raise _Invalid(f"{key!r}: values must be strings or numbers (quote true/false)")
        if len(text) > 512:
            raise _Invalid(f"{key!r}: values are limited to 512 characters")
        if is_owned_variable(key):
            raise _Invalid(f"{key!r} belongs to the SageMaker training container contract and"
                           " cannot be set; pass a hyperparameter instead")
        environment[key] = text
    if len(environment) > 100:
        raise _Invalid("holds more than 100 variables (the CreateTrainingJob limit)")
    return environment


@dataclass(frozen=True)
class _Key:
    attr: str
    parse: Callable[[Any, bool], Any]
    scope: str
    hint: str


CONFIG_KEYS: dict[str, _Key] = {
    "role": _Key("role", _ROLE, RUN, "IAM role ARN SageMaker assumes"),
    "region": _Key("region", _REGION, SESSION, "AWS region, e.g. us-east-1"),
    "bucket": _Key("bucket", _bucket, SESSION, "S3 bucket for code, data and outputs"),
    "prefix": _Key("prefix", _prefix, SESSION, "S3 key prefix under the bucket"),
    "instance_type": _Key("instance_type", _INSTANCE_TYPE, RUN, "e.g. ml.m5.xlarge"),
    "volume_size_gb": _Key("volume_size_gb", _integer(1, 16384, " GB"), RUN, "EBS volume size"),
    "max_run": _Key("max_run", _integer(1, MAX_RUNTIME_LIMIT, " seconds"), RUN,
                    "MaxRuntimeInSeconds"),
    "max_wait": _Key("max_wait", _integer(1, MAX_RUNTIME_LIMIT, " seconds"), RUN,
                     "MaxWaitTimeInSeconds (spot only)"),
    "keep_alive": _Key("keep_alive_s", _integer(0, KEEP_ALIVE_LIMIT, " seconds"), RUN,
                       "warm pool KeepAlivePeriodInSeconds, 0 for none"),
    "keep_pools": _Key("keep_pools", _boolean, SESSION, "leave warm pools Available at the end"),
    "warm_pool_pip_cache": _Key("warm_pool_pip_cache", _boolean, RUN, "pip cache in the pool"),
    "framework_version": _Key("framework_version", _framework_version, RUN,
                              "PyTorch training image version"),
    "py_version": _Key("py_version", _PY_VERSION, RUN,
                       "image Python tag, e.g. py313 (default: the version's own)"),
    "spot": _Key("spot", _boolean, RUN, "managed spot training"),
    "max_parallel": _Key("max_parallel", _integer(1, 1000), SESSION, "jobs in flight at once"),
    "emulate": _Key("emulate", _boolean, SESSION, "emulate SageMaker in process"),
    "tags": _Key("tags", _tags, RUN, "tags on every job"),
    "environment": _Key("environment", _environment, RUN, "container environment variables"),
}
# The number of instances is the experiment's top-level `instance_count` (one number of
# hosts for local, emulated and SageMaker runs alike), never a sagemaker: or config key.
_TOP_LEVEL_KEYS = {"instance_count": "the number of hosts to train on"}
# Keys the config file may hold that are not job settings; their readers validate them.
CONFIG_FILE_ONLY_KEYS = {"prices": "USD per instance-hour for the plan's cost bound (plan.py)"}
_MAPPINGS = ("tags", "environment")
_DEFAULTS = SageMakerSettings()


# --- where values come from ----------------------------------------------------------------


@dataclass
class _Layer:
    name: str
    values: Mapping[str, Any]
    where: Callable[[str], str]
    textual: bool = False
    label: Callable[[str], str] = str  # how the key is named in that source




def _load_config(path: Path) -> tuple[dict, Callable[[str], str], list[str]]:
    """The config file's values, where each was written, and notices for the user."""
    try:
        doc = load_yaml(path)
    except YamlError as exc:
        raise SettingsError(str(exc)) from None

    def where(key: str) -> str:
        line = doc.line_of((key,))
        return f"{path}:{line}" if line else str(path)

    if doc.value is None:
        return {}, where, []
    if not isinstance(doc.value, dict):
        raise SettingsError(f"{path}: must be a mapping of setting to value, e.g."
                            " instance_type: ml.m5.xlarge")
    notices = []
    values = dict(doc.value)
    for key in doc.value:
        if key == "instance_count" and _is_one(doc.value[key]):
            # config/sagemaker.yaml as shipped before multi-host runs held `instance_count:
            # 1`; it means what the top-level default means, so projects made from it keep
            # working, with a notice to remove it. Any other value is refused below.
            notices.append(f"{where(key)}: 'instance_count: 1' in the SageMaker config file is"
                           " deprecated and ignored (the number of hosts is the experiment's"
                           " top-level instance_count, default 1); remove it")
            del values[key]
            continue
        if key in _TOP_LEVEL_KEYS:
            raise SettingsError(f"{where(key)}: {_top_level(key)}")
        if key not in CONFIG_KEYS and key not in CONFIG_FILE_ONLY_KEYS:
            raise SettingsError(f"{where(key)}: unknown key {key!r}: "
                                f"{suggest(key, {**CONFIG_KEYS, **CONFIG_FILE_ONLY_KEYS})}")
    return values, where, notices


def _is_one(value: Any) -> bool:
    return type(value) is int and value == 1  # not True, 1.0 or "1": those stay refused


def _top_level(key: str) -> str:
    return (f"{key!r} is not a SageMaker setting: it is {_TOP_LEVEL_KEYS[key]}, the same for"
            f" every backend; write it at the top level of the experiment file (or its base"
            f" config), e.g. `{key}: 2` next to `hyperparameters:`, and remove it here")


def _experiment_where(path: Path | None) -> Callable[[str], str]:
    """Where a key of the run's sagemaker block was written: 'experiments/x.yaml:12', or a
    note that it came from the experiment's base file (RunSpec.sagemaker merges both)."""
    if path is None:
        return lambda key: "the experiment's sagemaker block"
    try:
        doc = load_yaml(path)  # parsed at collection already; yamlsafe keeps it
    except (OSError, YamlError):
        doc = None

    def where(key: str) -> str:
        if doc is None:
            return str(path)
        if ("sagemaker", key) in doc.lines:
            return f"{path}:{doc.lines[('sagemaker', key)]}"
        if "sagemaker" in doc.lines and key == "":
            return f"{path}:{doc.lines[('sagemaker',)]}"
        return f"{path} (its base file's sagemaker block)"

    return where


def _check_block(block: Mapping, where: Callable[[str], str]) -> None:
    if not isinstance(block, Mapping):
        raise SettingsError(f"{where('')}: the sagemaker block must be a mapping")
    for key in block:
        if key in _TOP_LEVEL_KEYS:
            raise SettingsError(f"{where(key)}: 'sagemaker.{key}': {_top_level(key)}")
        spec = CONFIG_KEYS.get(key)
        if spec is None:
            raise SettingsError(f"{where(key)}: unknown key 'sagemaker.{key}': "
                                f"{suggest(key, CONFIG_KEYS)}")
        if spec.scope == SESSION:
            raise SettingsError(
                f"{where(key)}: 'sagemaker.{key}' is a setting of the whole session, not of one"
                f" experiment; set it in config/sagemaker.yaml, with ini option"
                f" {INI_NAMES.get(key, key)} or {OPTION_NAMES.get(key, 'on the command line')}")


def _aws_region(environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The region as the AWS CLI and SDKs find it without a client: AWS_REGION,
    AWS_DEFAULT_REGION, then `region` of the active profile in the shared config file."""
    for name in _REGION_VARIABLES:
        if environ.get(name):
            return environ[name], f"environment variable {name}"
    home = environ.get("HOME") or os.path.expanduser("~")
    raw = environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    config_file = Path(home + raw[1:] if raw.startswith("~") else raw)
    # botocore: 'profile': ['AWS_DEFAULT_PROFILE', 'AWS_PROFILE']
    profile = environ.get("AWS_DEFAULT_PROFILE") or environ.get("AWS_PROFILE") or "default"
    section = "default" if profile == "default" else f"profile {profile}"
    parser = configparser.RawConfigParser()
    try:
        parser.read(config_file, encoding="utf-8")
        region = parser.get(section, "region", fallback=None)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None, ""
    if region:
        return region.strip(), f"{config_file} [{section}] region"
    return None, ""


def _textual_layer(name: str, values: Mapping[str, Any] | None, where) -> _Layer:
    values = values or {}
    unknown = sorted(set(values) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"unknown {name} setting(s) {unknown}; known: {sorted(OPTION_NAMES)}")
    given = {k: v for k, v in values.items() if v is not None and v != ""}
    return _Layer(name, given, where, textual=True)


def resolve(
    *,
    cli: dict,
    ini: dict,
    config_path: Path | None,
    experiment_block: dict,
    environ: Mapping[str, str],
    experiment_path: Path | None = None,
    instance_count: int = 1,
) -> SageMakerSettings:
    """The settings of one run, from every source in the order documented at the top.

    ``cli`` and ``ini`` use the keys of OPTION_NAMES with None for "not given";
    ``config_path`` is config/sagemaker.yaml or None; ``experiment_block`` is the run's
    ``sagemaker:`` mapping (RunSpec.sagemaker); ``environ`` is os.environ or a stand-in;
    ``instance_count`` is the run's own (RunSpec.instance_count, checked by the spec).
    Raises SettingsError naming the source of the first wrong value.
    """
    cli_layer = _textual_layer("command-line", cli, lambda k: OPTION_NAMES[k])
    ini_layer = _textual_layer("ini", ini, lambda k: f"ini option {INI_NAMES[k]}")
    env_values = {k: environ[v] for k, v in ENV_NAMES.items() if environ.get(v)}
    env_layer = _Layer("environment", env_values,
                       lambda k: f"environment variable {ENV_NAMES[k]}", textual=True)
    config_values, config_where, notices = ({}, str, [])
    if config_path is not None and Path(config_path).is_file():
        config_values, config_where, notices = _load_config(Path(config_path))
    config_layer = _Layer("config", config_values, config_where)
    block_where = _experiment_where(experiment_path)
    block = experiment_block or {}
    _check_block(block, block_where)
    block_layer = _Layer("experiment", block, block_where, label=lambda k: f"sagemaker.{k}")
    region, region_where = _aws_region(environ)
    aws_layer = _Layer("aws", {"region": region} if region else {}, lambda k: region_where,
                       textual=True)

    orders = {
        RUN: [cli_layer, block_layer, env_layer, ini_layer, config_layer],
        SESSION: [cli_layer, env_layer, ini_layer, config_layer, aws_layer],
    }
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, spec in CONFIG_KEYS.items():
        if key in _MAPPINGS:
            merged: dict[str, str] = {}
            for layer in (config_layer, block_layer):
                if layer.values.get(key) is not None:
                    merged.update(_parse(spec, key, layer))
                    sources[key] = layer.where(key)
            if len(merged) > (MAX_USER_TAGS if key == "tags" else 100):
                raise SettingsError(f"{sources[key]}: {key} holds {len(merged)} entries"
                                    " together; CreateTrainingJob allows"
                                    f" {MAX_USER_TAGS if key == 'tags' else 100}")
            values[spec.attr] = merged
            continue
        for layer in orders[spec.scope]:
            if layer.values.get(key) is not None:
                values[spec.attr] = _parse(spec, key, layer)
                sources[key] = layer.where(key)
                break
        else:
            values[spec.attr] = getattr(_DEFAULTS, spec.attr)
            sources[key] = "built-in default"

    values["instance_count"] = instance_count
    sources["instance_count"] = ("the experiment's instance_count" if instance_count != 1
                                 else "built-in default")
    _image_versions(values, sources)
    if values["spot"]:
        if values["max_wait"] is None:
            values["max_wait"] = min(2 * values["max_run"], MAX_RUNTIME_LIMIT)
            sources["max_wait"] = "2 x max_run (no max_wait given)"
        elif values["max_wait"] < values["max_run"]:
            raise SettingsError(
                f"{sources['max_wait']}: max_wait ({values['max_wait']}) must be >= max_run"
                f" ({values['max_run']}, {sources['max_run']}) for managed spot: MaxWait is the"
                " time spent waiting for spot capacity plus the run time; raise max_wait or"
                " lower max_run")
    return SageMakerSettings(**values, sources=sources, notices=tuple(notices))


def _image_versions(values: dict[str, Any], sources: dict[str, str]) -> None:
    """Fill in framework_version and py_version from the SDK's image config where nobody
    set them, and refuse a combination that has no image, naming what exists."""
    from sm_pytest.sagemaker.images import ImageVersionError, choose_versions

    given = {key: values[key] for key in ("framework_version", "py_version")
             if sources[key] != "built-in default"}
    try:
        chosen = choose_versions(given.get("framework_version"), given.get("py_version"),
                                 values.get("instance_type"))
    except ImageVersionError as exc:
        where = ", ".join(f"{key} from {sources[key]}" for key in given)
        raise SettingsError(f"{where or 'the built-in default'}: {exc}") from None
    for key, value in zip(("framework_version", "py_version"), chosen, strict=True):
        if key not in given:
            values[key] = value
            sources[key] = ("built-in default: the newest PyTorch training image that the"
                            " installed SDK lists for CPU and GPU"
                            if key == "framework_version" else
                            f"derived from framework_version {chosen[0]}")


def _parse(spec: _Key, key: str, layer: _Layer) -> Any:
    value = layer.values[key]
    try:
        return spec.parse(value, layer.textual)
    except _Invalid as exc:
        shown = value if isinstance(value, (str, int, float, bool)) else _kind(value)
        raise SettingsError(f"{layer.where(key)}: {layer.label(key)} ({shown!r}) {exc}"
                            ) from None


def require_launch_settings(s: SageMakerSettings) -> None:
    """Raise one SettingsError listing every setting a launch needs but nobody gave."""
    missing = []
    if not s.role:
        missing.append(
            f"role: the IAM role SageMaker assumes; give {OPTION_NAMES['role']} ARN, ini"
            f" {INI_NAMES['role']}, `role:` in config/sagemaker.yaml (or an experiment's"
            f" sagemaker block), or environment variable {ENV_NAMES['role']}")
    if not s.bucket:
        missing.append(
            f"bucket: the S3 bucket for code, data and outputs; give {OPTION_NAMES['bucket']}"
            f" NAME, ini {INI_NAMES['bucket']}, `bucket:` in config/sagemaker.yaml, or"
            f" environment variable {ENV_NAMES['bucket']}")
    if not s.region and not s.emulate:
        missing.append(
            f"region: give {OPTION_NAMES['region']} REGION, ini {INI_NAMES['region']},"
            " `region:` in config/sagemaker.yaml, AWS_REGION / AWS_DEFAULT_REGION, or"
            " `region` in your AWS profile (~/.aws/config)")
    if missing:
        raise SettingsError("SageMaker runs need settings that were not given:\n"
                            + "\n".join(f"  - {item}" for item in missing))
