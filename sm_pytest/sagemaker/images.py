"""Which PyTorch training image versions exist, from the pinned SDK's own image config.

sagemaker-core ships ``sagemaker/core/image_uri_config/pytorch.json``, the table its
``image_uris.retrieve`` looks images up in. Reading that file tells which framework versions
have training images for CPU and GPU instances and which Python tags each one has, so the
default image moves with the SDK pin instead of going out of support in a hard-coded line.

The file is found through the distribution's metadata, without importing ``sagemaker``
(whose package ``__init__`` imports all of sagemaker.core, about 1.5 s): standard library
only, cheap enough for settings resolution.
"""

from __future__ import annotations

import functools
import json
from importlib.metadata import PackageNotFoundError, distribution
from typing import Any

__all__ = ["ImageVersionError", "choose_versions", "default_framework_version", "processor",
           "py_versions", "training_versions"]

SDK_DISTRIBUTION = "sagemaker-core"
CONFIG_FILE = "sagemaker/core/image_uri_config/pytorch.json"
# The default image must run on the instance types users pick in either direction; a version
# the user names only on the processor of the instance type they name.
REQUIRED_PROCESSORS = frozenset({"cpu", "gpu"})


class ImageVersionError(ValueError):
    """No PyTorch training image for the versions asked for; the message lists the ones
    that exist."""


@functools.lru_cache(maxsize=1)
def _training_config() -> dict[str, Any]:
    try:
        sdk = distribution(SDK_DISTRIBUTION)
    except PackageNotFoundError:
        raise ImageVersionError(
            f"{SDK_DISTRIBUTION} is not installed, so the PyTorch training images are not"
            " known; install sm-pytest[sagemaker]") from None
    path = sdk.locate_file(CONFIG_FILE)
    try:
        return json.loads(path.read_text(encoding="utf-8"))["training"]
    except (OSError, ValueError, KeyError) as exc:
        raise ImageVersionError(
            f"cannot read the PyTorch image config of {SDK_DISTRIBUTION} {sdk.version}"
            f" ({path}): {exc}") from None


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return ()


def processor(instance_type: str | None) -> str | None:
    """The image processor the SDK picks for `instance_type` (image_uris._processor's rule
    for the cpu/gpu images PyTorch has, without importing the SDK); None when it cannot
    tell."""
    if not instance_type:
        return None
    if instance_type.startswith("local"):
        return "cpu" if instance_type == "local" else "gpu"
    family = instance_type.removeprefix("ml.").removeprefix("ml_").split(".")[0]
    if not family or family.startswith(("inf", "trn")):
        return None
    return "gpu" if family[0] in ("g", "p") else "cpu"


def _described(processors: frozenset[str]) -> str:
    return " and ".join(sorted(p.upper() for p in processors))


@functools.lru_cache(maxsize=4)
def training_versions(processors: frozenset[str] = REQUIRED_PROCESSORS
                      ) -> dict[str, tuple[str, ...]]:
    """Framework version -> its Python tags, for every version with a training image for
    each of `processors` (CPU and GPU unless told), oldest first."""
    config = _training_config()
    default_processors = config.get("processors") or []
    versions = {}
    for version, entry in config.get("versions", {}).items():
        available = set(entry.get("processors") or default_processors)
        if available >= processors and _version_key(version):
            versions[version] = tuple(entry.get("py_versions") or ())
    return dict(sorted(versions.items(), key=lambda item: _version_key(item[0])))


def default_framework_version() -> str:
    """The newest version with training images for both CPU and GPU instances."""
    versions = training_versions()
    if not versions:
        raise ImageVersionError(f"{SDK_DISTRIBUTION}'s image config lists no PyTorch training"
                                " image for both CPU and GPU instances")
    return list(versions)[-1]


def py_versions(framework_version: str,
                processors: frozenset[str] = REQUIRED_PROCESSORS) -> tuple[str, ...]:
    """The Python tags of ``framework_version`` (an alias such as "2.8" resolves as the
    SDK resolves it); ImageVersionError naming the versions that exist if it has no image
    for each of `processors`."""
    version = _training_config().get("version_aliases", {}).get(framework_version,
                                                                 framework_version)
    versions = training_versions(processors)
    if version not in versions:
        raise ImageVersionError(
            f"framework_version {framework_version!r} has no PyTorch training image for"
            f" {_described(processors)} in {SDK_DISTRIBUTION}"
            f" {distribution(SDK_DISTRIBUTION).version}; it lists {', '.join(versions)}")
    return versions[version]


def choose_versions(framework_version: str | None, py_version: str | None,
                    instance_type: str | None = None) -> tuple[str, str]:
    """(framework_version, py_version) to use: the default version when none is given, and
    the version's newest Python tag when no py_version is given. A version given must have
    an image for `instance_type`'s processor (for CPU and GPU when that is unknown). A
    combination that has no image is an ImageVersionError naming what exists."""
    if framework_version:
        kind = processor(instance_type)
        tags = py_versions(framework_version,
                           frozenset({kind}) if kind else REQUIRED_PROCESSORS)
    else:
        framework_version = default_framework_version()
        tags = py_versions(framework_version)
    if py_version is None:
        if not tags:
            raise ImageVersionError(f"the image config lists no py_version for"
                                    f" framework_version {framework_version!r}; set py_version")
        return framework_version, sorted(tags, key=lambda tag: _version_key(tag[2:]))[-1]
    if py_version not in tags:
        raise ImageVersionError(
            f"framework_version {framework_version!r} has no image for py_version"
            f" {py_version!r}: its py_versions are {', '.join(tags) or 'none'} (leave"
            " py_version out to take the version's own)")
    return framework_version, py_version
