"""Check sagemaker-core's config schema once per process, not on every SDK call.

sagemaker-core validates its SDK defaults config (ours carries TelemetryOptOut, so it is never
empty) with ``jsonschema.validate(config, SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA)`` each time it
reads a setting: every ``TrainingJob.create``, every Experiments ``Run``/``load_run`` and
every telemetry-wrapped call. ``jsonschema.validate`` first checks the *schema* against the
JSON Schema meta-schema, which takes about 0.18 s here; the config itself takes 0.1 ms. An
8-job session made about 57 such calls, 10 s of CPU under one GIL.

:func:`install` replaces the SDK's ``validate_sagemaker_config`` functions with one that
checks the (constant) schema once and then validates each config as before, raising the same
``jsonschema.ValidationError`` (``best_match`` of the errors, as ``jsonschema.validate`` does).

The names patched are sagemaker-core internals: only the minor version below is patched;
with any other the SDK is left alone (correct, only slower). sagemaker-core's
``utils/intelligent_defaults_helper.py`` keeps a copy of its own; nothing in 2.27 imports it.
"""

from __future__ import annotations

import functools
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

PATCHED_SAGEMAKER_CORE = "2.27"
# Modules that bind validate_sagemaker_config by name (module attribute or staticmethod).
_FUNCTION_HOLDERS = ("sagemaker.core.config.config", "sagemaker.core.config",
                     "sagemaker.core.helper.session_helper", "sagemaker.core.local.local_session")


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema
    from sagemaker.core.config.config_schema import SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA

    validator_class = jsonschema.validators.validator_for(SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA)
    validator_class.check_schema(SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA)
    return validator_class(SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA)


def validate_sagemaker_config(sagemaker_config: dict | None = None) -> None:
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(sagemaker_config))
    if error is not None:
        raise error


def install() -> bool:
    """Patch the loaded SDK; True when it was patched (idempotent)."""
    try:
        installed = dist_version("sagemaker-core")
    except PackageNotFoundError:  # vendored, or installed without metadata: unknown version
        return False
    if installed.split(".")[:2] != PATCHED_SAGEMAKER_CORE.split("."):
        return False
    import sagemaker.core.config.config  # noqa: F401  (the holders below import it)
    import sagemaker.core.helper.session_helper  # noqa: F401
    from sagemaker.core.config.config_manager import SageMakerConfig

    SageMakerConfig.validate_sagemaker_config = staticmethod(validate_sagemaker_config)
    for name in _FUNCTION_HOLDERS:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "validate_sagemaker_config"):
            module.validate_sagemaker_config = validate_sagemaker_config
    return True
