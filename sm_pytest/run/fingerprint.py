"""What makes two runs the same training: a content hash of everything that can change the
model, and nothing that only changes how its metrics are judged.

    fingerprint_parts(run, backend="sagemaker", backend_settings={...})
        {"version": ..., "hyperparameters": ..., "entry_point": ..., "metric_definitions": ...,
         "source": ..., "input:training": ..., "backend": ...}     (each a sha256 hex digest)
    fingerprint(run, ...) == digest_parts(fingerprint_parts(run, ...))

Parts, so that a cache miss can say which one changed:

- ``hyperparameters``: the resolved values as canonical JSON (sorted keys, no spaces). A float
  is written in its shortest round-trip form, so ``0.1``, ``0.10`` and ``1.0e-1`` in YAML
  (all the same float) match. ``1`` and ``1.0`` do NOT match: the script receives ``--x 1``
  and ``--x 1.0``, and the SageMaker encoding keeps the type too. Strings are never read as
  numbers, for the same reason.
- ``entry_point`` and ``metric_definitions`` (name and regex, in name order).
- ``source``: the training code folder, with the very file selection that
  ``sagemaker.uploads.pack_source_dir`` packs and the local snapshot copies (``__pycache__``,
  ``.git`` and ``*.pyc`` left out, links followed): relative paths, the executable bit and
  the bytes (``hashing.source_hash``). It hashes the content itself rather than the gzip
  archive, so a Python or zlib upgrade that changes archive bytes does not invalidate every
  cached run.
- ``input:<channel>``: a local folder (or file) by ``hashing.dataset_hash`` (relative paths,
  sizes, bytes; the hash used to name uploaded datasets); an ``s3://`` URI by the URI string
  itself (its objects are not read).
- ``backend``: the backend name and the caller's ``backend_settings`` (for SageMaker use
  ``sagemaker.settings.fingerprint_settings``: instance type and count, image versions,
  spot, volume, container environment).
- ``hosts``: ``instance_count`` and ``distribution``, only when either differs from the
  default (1 host, no distribution): N hosts with torchrun train another model than one
  host does, and leaving the part out for single-host runs keeps every digest made before
  multi-host runs existed. The SageMaker ``backend`` part carries the count too
  (``fingerprint_settings``, kept there so that existing digests stay); it is the same
  number, since ``settings.resolve`` takes it from the run.
- ``search``: a ``tune:`` item's whole block (strategy, objective, limits, ranges, early
  stopping, seed), only for such items: a search of other ranges is another search.
- ``version``: this module's hashing scheme; bumping it invalidates every entry.

Not included: ``max_run`` and ``expect``. A longer time limit or a new threshold re-judges
the cached metrics instead of training again. Nor the experiment/run name: two runs with the
same content share one fingerprint.

Folder hashes are memoised per process on every file's (relative path, size, mtime_ns), so
1000 runs sharing one dataset read its bytes once (see ``hashing``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sm_pytest.run import hashing
from sm_pytest.spec.experiment_file import RunSpec

__all__ = [
    "FINGERPRINT_VERSION",
    "FingerprintError",
    "canonical_json",
    "digest_parts",
    "fingerprint",
    "fingerprint_parts",
    "source_hash",
]

FINGERPRINT_VERSION = "1"
INPUT_PREFIX = "input:"


class FingerprintError(ValueError):
    """Something a run needs cannot be hashed (a missing folder, an unusable value)."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normalise(value: Any, where: str) -> Any:
    """Plain JSON types with a canonical form: dict keys as strings, tuples as lists, numpy
    scalars as Python ints and floats."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _normalise(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    raise FingerprintError(f"{where}: a value of type {type(value).__name__} cannot be"
                           " fingerprinted; use strings, numbers, booleans, lists or mappings")


def canonical_json(value: Any, where: str = "value") -> str:
    """One text for one value: sorted keys, no whitespace, floats in shortest round-trip form
    (``repr``), NaN and infinities as ``NaN`` / ``Infinity``."""
    return json.dumps(_normalise(value, where), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=True)


# --- folders -------------------------------------------------------------------------------


def source_hash(source_dir: Path) -> str:
    """sha256 over the training code as it is shipped (``hashing.source_hash``): every entry
    of the folder as ``pack_source_dir`` packs it, its relative path, its executable bit and
    its bytes."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise FingerprintError(f"source_dir {source_dir} is not a folder; set 'source_dir' to"
                               " the folder holding the training code")
    return hashing.source_hash(source_dir)


def _input_hash(channel: str, location: str) -> str:
    if location.startswith("s3://"):
        return _sha256("s3:" + location)
    path = Path(location)
    if not path.exists():
        raise FingerprintError(f"input {channel!r}: {path} does not exist; fix the path in"
                               " 'inputs' or use an s3:// URI")
    try:
        return hashing.dataset_hash(path)
    except ValueError:  # an empty folder: nothing to read, one fixed hash
        return _sha256("empty-folder")


# --- the fingerprint -----------------------------------------------------------------------


def fingerprint_parts(run: RunSpec, *, backend: str,
                      backend_settings: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Each part's own sha256 (see the module docstring), keys in sorted order.

    Raises FingerprintError when the source folder or a local input is missing or a value
    cannot be written as JSON.
    """
    definitions = sorted((d.name, d.regex) for d in run.metric_definitions)
    parts = {
        "version": _sha256(FINGERPRINT_VERSION),
        "hyperparameters": _sha256(canonical_json(run.hyperparameters, "hyperparameters")),
        "entry_point": _sha256(run.entry_point),
        "metric_definitions": _sha256(canonical_json(definitions, "metric_definitions")),
        "source": source_hash(run.source_dir),
        "backend": _sha256(canonical_json(
            {"backend": backend, "settings": dict(backend_settings or {})}, "backend_settings")),
    }
    if run.instance_count != 1 or run.distribution:
        parts["hosts"] = _sha256(canonical_json(
            {"instance_count": run.instance_count, "distribution": dict(run.distribution)},
            "hosts"))
    if run.tune is not None:
        # A search: its ranges, strategy, objective, limits and seed; its trials follow.
        parts["search"] = _sha256(canonical_json(dataclasses.asdict(run.tune), "tune"))
    for channel in sorted(run.inputs):
        parts[INPUT_PREFIX + channel] = _input_hash(channel, str(run.inputs[channel]))
    return dict(sorted(parts.items()))


def digest_parts(parts: Mapping[str, str]) -> str:
    """The fingerprint of already computed parts."""
    return _sha256(canonical_json(dict(parts), "parts"))


def fingerprint(run: RunSpec, *, backend: str,
                backend_settings: Mapping[str, Any] | None = None) -> str:
    """The run's fingerprint: a sha256 hex digest over all of ``fingerprint_parts``."""
    return digest_parts(fingerprint_parts(run, backend=backend,
                                          backend_settings=backend_settings))
