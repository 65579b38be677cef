"""The process environment an Emulator sets for its lifetime, and puts back after.

    from sm_pytest.sagemaker.emulator.environment import restore_env, set_env

    saved: dict[str, str | None] = {}
    set_env(saved, workdir, region="us-east-1", max_attempts=1)
    ...
    restore_env(saved)

Retries: the emulator sets ``AWS_MAX_ATTEMPTS=1`` (``max_attempts``) and
``AWS_RETRY_MODE=standard`` for its lifetime, so that an injected ThrottlingException
reaches the caller instead of being absorbed by botocore's own retries (sagemaker-core then
also keeps its hands off: it adds its 10-attempt default only when neither is set). Pass
``max_attempts=None`` to leave botocore's retry settings alone.

Also for its lifetime: fake credentials and the region in the environment, any
AWS_PROFILE / endpoint / web-identity settings removed, an empty AWS config and credentials
file, and a SageMaker SDK config (SAGEMAKER_USER_CONFIG_OVERRIDE and
SAGEMAKER_ADMIN_CONFIG_OVERRIDE) that opts out of telemetry. Everything is restored after.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CLEARED_ENV", "TELEMETRY_OPT_OUT_YAML", "restore_env", "set_env"]

TELEMETRY_OPT_OUT_YAML = (
    "SchemaVersion: '1.0'\n"
    "SageMaker:\n"
    "  PythonSDK:\n"
    "    Modules:\n"
    "      TelemetryOptOut: true\n"
)
# Variables that would send requests elsewhere or pick real credentials; removed for the
# emulator's lifetime (AWS_ENDPOINT_URL_<SERVICE> too).
CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_CA_BUNDLE",
)


def set_env(saved: dict[str, str | None], workdir: Path, region: str,
            max_attempts: int | None) -> None:
    """Write the config files under ``workdir / "config"`` and set the emulator's variables,
    recording in ``saved`` each variable's value before (None: unset). ``saved`` is filled
    as it goes, so that :func:`restore_env` undoes whatever was done if this stops midway."""
    config_dir = workdir / "config"
    config_dir.mkdir()
    (config_dir / "aws-config").write_text("", encoding="utf-8")
    (config_dir / "aws-credentials").write_text("", encoding="utf-8")
    sagemaker_config = config_dir / "sagemaker-config.yaml"
    sagemaker_config.write_text(TELEMETRY_OPT_OUT_YAML, encoding="utf-8")
    values: dict[str, str | None] = {
        name: None
        for name in os.environ
        if name in CLEARED_ENV or name.startswith("AWS_ENDPOINT_URL")
    }
    values.update({
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_CONFIG_FILE": str(config_dir / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "aws-credentials"),
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(sagemaker_config),
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(sagemaker_config),
    })
    if max_attempts is not None:
        values["AWS_MAX_ATTEMPTS"] = str(max_attempts)
        values["AWS_RETRY_MODE"] = "standard"
    for name, value in values.items():
        saved.setdefault(name, os.environ.get(name))
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def restore_env(saved: dict[str, str | None]) -> None:
    """Put back every variable recorded in ``saved`` by :func:`set_env`, and empty it."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    saved.clear()
