"""Hyperparameters on their way to the script, as the SageMaker training toolkit maps them.

The SDK JSON-encodes each value into CreateTrainingJob's string map; the toolkit reads
hyperparameters.json back (``environment.read_hyperparameters``), splits off the reserved
``sagemaker_*`` keys (``mapping.split_by_criteria``) and turns the rest into ``--key value``
arguments (``mapping.to_cmd_args``). Comments cite the toolkit's modules (``params.py``,
``mapping.py``, ``environment.py``) of ``sagemaker-training`` 5.1.4.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "JOB_NAME_PARAM",
    "LOG_LEVEL_PARAM",
    "PROGRAM_PARAM",
    "REGION_PARAM",
    "RESERVED_HYPERPARAMETERS",
    "SAGEMAKER_PREFIX",
    "SCRIPT_MODE_PARAMS",
    "SUBMIT_DIR_PARAM",
    "arg_text",
    "decode_hyperparameters",
    "encode_hyperparameters",
    "hyperparameters_to_argv",
    "split_hyperparameters",
    "to_cmd_args",
]

# --- constants copied from the toolkit (params.py) -------------------------------------------

SAGEMAKER_PREFIX = "sagemaker_"
PROGRAM_PARAM = "sagemaker_program"
SUBMIT_DIR_PARAM = "sagemaker_submit_directory"
LOG_LEVEL_PARAM = "sagemaker_container_log_level"
JOB_NAME_PARAM = "sagemaker_job_name"
REGION_PARAM = "sagemaker_region"

# params.SAGEMAKER_HYPERPARAMETERS: split off with every other ``sagemaker_*`` key, and
# (unlike the other ``sagemaker_*`` keys) kept out of SM_FRAMEWORK_PARAMS too. Note the two
# that do not start with ``sagemaker_``: they are reserved all the same.
RESERVED_HYPERPARAMETERS = frozenset(
    {
        PROGRAM_PARAM,
        SUBMIT_DIR_PARAM,
        "sagemaker_enable_cloudwatch_metrics",
        REGION_PARAM,
        LOG_LEVEL_PARAM,
        JOB_NAME_PARAM,
        "default_user_module_name",
        "_tuning_objective_metric",
        "sagemaker_s3_output",
    }
)
# Keys the contract writes itself from ContainerJob fields (the script-mode hyperparameters);
# a user value would silently replace (or be replaced by) ours, so it is refused instead.
SCRIPT_MODE_PARAMS = frozenset(
    {PROGRAM_PARAM, SUBMIT_DIR_PARAM, LOG_LEVEL_PARAM, JOB_NAME_PARAM, REGION_PARAM}
)


def encode_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """Encode each value as the SageMaker Python SDK does for script mode: ``json.dumps`` of
    the Python value, so the CreateTrainingJob string map keeps its type (``"3"`` stays a
    string, ``3`` an int). SageMaker writes the map as-is to hyperparameters.json.

    (The v3 ModelTrainer passes plain strings through unencoded instead; both decode the same
    way except for strings that happen to be valid JSON, such as ``"3"`` or ``"true"``.)
    """
    encoded = {}
    for key, value in hyperparameters.items():
        try:
            encoded[key] = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"hyperparameter {key!r}: {type(value).__name__} value {value!r} cannot be "
                "sent to SageMaker (it must be JSON-serializable: str, int, float, bool, None,"
                " list or dict)"
            ) from exc
    return encoded


def decode_hyperparameters(stored: Mapping[str, Any]) -> dict[str, Any]:
    """environment.read_hyperparameters: ``json.loads`` each stored value; keep the raw value
    when that fails (ValueError, or TypeError for a value that is not a string)."""
    decoded = {}
    for key, value in stored.items():
        with contextlib.suppress(ValueError, TypeError):
            value = json.loads(value)
        decoded[key] = value
    return decoded


def split_hyperparameters(decoded: Mapping[str, Any]) -> tuple[dict, dict]:
    """mapping.split_by_criteria(keys=SAGEMAKER_HYPERPARAMETERS, prefix="sagemaker_"):
    (the user's hyperparameters, the reserved ones), both in file order."""
    user, reserved = {}, {}
    for key, value in decoded.items():
        if key in RESERVED_HYPERPARAMETERS or key.startswith(SAGEMAKER_PREFIX):
            reserved[key] = value
        else:
            user[key] = value
    return user, reserved


def arg_text(obj: Any) -> str:
    """mapping._decode: None is "", bytes are latin-1, anything else str()."""
    if obj is None:
        return ""
    if isinstance(obj, bytes):
        return obj.decode("latin1")
    return str(obj)


def to_cmd_args(mapping: Mapping[str, Any]) -> list[str]:
    """mapping.to_cmd_args: keys sorted by code point, ``--key`` exactly as written (``-k``
    for a one-letter key), then the value: dicts as ``k=v`` pairs joined by commas in key
    order, everything else str() (so True, [1, 2], 0.001; None gives "", still passed)."""
    argv = []
    for key in sorted(mapping):
        name = arg_text(key)
        if name:
            name = f"--{name}" if len(name) > 1 else f"-{name}"
        value = mapping[key]
        if hasattr(value, "items"):
            text = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        else:
            text = arg_text(value)
        argv += [name, text]
    return argv


def hyperparameters_to_argv(hyperparameters: Mapping[str, Any]) -> list[str]:
    """The script's arguments for these (Python-valued) hyperparameters, exactly as the
    toolkit builds them after the values round-trip through hyperparameters.json (so a tuple
    arrives as a list and dict keys as strings). Reserved keys (``sagemaker_*``,
    ``_tuning_objective_metric``, ``default_user_module_name``) never become arguments."""
    user, _ = split_hyperparameters(decode_hyperparameters(encode_hyperparameters(hyperparameters)))
    return to_cmd_args(user)
