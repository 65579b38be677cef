"""Experiment files: schema, validation, `base:` merging and matrix/zip expansion.

One YAML file becomes an ordered list of fully resolved RunSpecs. Order and ids are
deterministic because pytest-xdist requires every worker to collect the same items in the
same order. Every mistake is raised as a YamlError naming the file, the line and what to do.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sm_pytest.messages import suggest, type_name
from sm_pytest.spec import thresholds, tolerances, yamlsafe
from sm_pytest.spec.metrics import MetricDefinition, regex_problem
from sm_pytest.spec.tune_parse import parse_tune
from sm_pytest.spec.tuning import TuneSpec
from sm_pytest.spec.yamlsafe import Located, YamlError

DEFAULT_ENTRY_POINT = "train.py"
DEFAULT_SOURCE_DIR = "src"
DEFAULT_MAX_RUN = 24 * 3600  # SageMaker's default MaxRuntimeInSeconds

# key -> (accepted python types, what to write)
_COMMON_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "description": ((str,), "a one-line string"),
    "entry_point": ((str,), "the training script's file name inside source_dir, e.g. train.py"),
    "source_dir": ((str,), "the folder holding the training code, e.g. src"),
    "hyperparameters": ((dict,), "a mapping of hyperparameter name to value"),
    "metric_definitions": ((list,), "a list of {Name: ..., Regex: ...} mappings"),
    "inputs": ((dict,), "a mapping of channel name to a local folder or an s3:// URI"),
    "max_run": ((int,), "the time limit of one run in seconds, e.g. 3600"),
    "sagemaker": ((dict,), "a mapping of SageMaker settings, e.g. {instance_type: ml.m5.xlarge}"),
    "tolerances": ((dict,), "a mapping of metric name to {direction, max_drop, k} for"
                            " baseline comparison, e.g. {test_accuracy: {max_drop: 0.01}}"),
    # One number of hosts for every backend: SageMaker's ResourceConfig.InstanceCount, the
    # emulator's hosts and the local hosts alike (so not a key of the sagemaker: block).
    "instance_count": ((int,), "a whole number of hosts to train on, e.g. 2"),
    "distribution": ((dict,), "a mapping of distribution strategy, e.g."
                              " {torch_distributed: {enabled: true}}"),
}
# The SageMaker SDK's `distribution` vocabulary (v2 src/sagemaker/pytorch/estimator.py);
# of its strategies only torch_distributed (torchrun on every host) is supported here.
DISTRIBUTIONS = {"torch_distributed": "torchrun on every host"}
# The estimator's other strategies (same file: smdistributed, pytorchddp, mpi), named so
# that they are refused as unsupported rather than as a misspelling of torch_distributed.
_SDK_ONLY_DISTRIBUTIONS = ("smdistributed", "pytorchddp", "mpi")
TORCH_DISTRIBUTED_KEYS = {"enabled": "true or false"}
BASE_KEYS = dict(_COMMON_KEYS)
EXPERIMENT_KEYS = {
    **_COMMON_KEYS,
    "base": ((str,), "the path of a config file with defaults, e.g. config/mnist.yaml"),
    "matrix": ((dict,), "a mapping of hyperparameter name to a list of values (cartesian)"),
    "zip": ((dict,), "a mapping of hyperparameter name to equally long lists (paired)"),
    "expect": ((dict,), "a mapping of metric name to a threshold such as '>= 0.95'"),
    "marks": ((list,), "a list of pytest marker names, e.g. [sweep, slow]"),
    "repeat": ((int, dict), "a number of seeds to repeat each run with, e.g. 3"),
    "tune": ((dict,), "a mapping describing a hyperparameter search, e.g. {strategy: Random,"
                      " objective: {metric: accuracy, type: Maximize}, max_jobs: 8,"
                      " ranges: {lr: {min: 0.01, max: 1.0}}}"),
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_MARK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHANNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class RunSpec:
    """One fully resolved training run: what the backends execute and the checks judge."""

    experiment: str
    run_id: str  # "" for an experiment without a matrix, else e.g. "lr=0.1"
    path: Path
    line: int
    description: str
    source_dir: Path
    entry_point: str
    hyperparameters: dict[str, Any]
    swept: dict[str, Any]
    inputs: dict[str, str]
    metric_definitions: tuple[MetricDefinition, ...]
    expect: tuple[thresholds.Threshold, ...]
    marks: tuple[str, ...]
    max_run: int
    sagemaker: dict[str, Any] = field(default_factory=dict)
    tolerances: dict[str, tolerances.Tolerance] = field(default_factory=dict)
    repeat: tolerances.Repeat | None = None
    repeat_index: int | None = None  # which repeat this is, when `repeat` runs it several times
    instance_count: int = 1  # hosts (SageMaker instances) that run this one training
    # Enabled strategies only, e.g. {"torch_distributed": {"enabled": True}}; a strategy
    # written with `enabled: false` (say, to turn off the base file's) is left out.
    distribution: Mapping[str, Any] = field(default_factory=dict)
    # A `tune:` block: this item is a search, whose trials are trial(...) of it.
    tune: TuneSpec | None = None
    trial_index: int | None = None  # which trial of the search this is, numbered from 1

    @property
    def torch_distributed(self) -> bool:
        """Whether each host runs the script through torchrun (SDK torch_distributed)."""
        strategy = self.distribution.get("torch_distributed") or {}
        return bool(strategy.get("enabled", False))

    @property
    def folder(self) -> str:
        """The run's folder under its experiment in the artifacts tree."""
        base = self.run_id or "default"
        if self.trial_index is not None:
            return f"{base}-trial{self.trial_index:03d}"
        return base if self.repeat_index is None else f"{base}-repeat{self.repeat_index + 1}"

    def trial(self, number: int, values: Mapping[str, Any]) -> RunSpec:
        """Trial `number` of this item's search: its hyperparameters with `values` (one
        point of the tune ranges) over them, in a folder of its own."""
        return dataclasses.replace(self, hyperparameters={**self.hyperparameters, **values},
                                   trial_index=number)

    def repeats(self) -> list[RunSpec]:
        """The runs to execute for this item: itself, or one per seed with `repeat`."""
        if self.repeat is None:
            return [self]
        key = self.repeat.seed_key
        first = self.hyperparameters.get(key, 1)
        first = first if isinstance(first, int) and not isinstance(first, bool) else 1
        return [dataclasses.replace(self, hyperparameters={**self.hyperparameters, key: seed},
                                    repeat_index=i)
                for i, seed in enumerate(self.repeat.seeds(first))]

    @property
    def name(self) -> str:
        """The pytest item name: `baseline` or `lr_sweep[lr=0.1]`."""
        return f"{self.experiment}[{self.run_id}]" if self.run_id else self.experiment


def _check_keys(doc: Located, schema: dict, what: str) -> dict:
    value = doc.value
    if value is None:
        raise YamlError(doc.path, None, f"the {what} is empty; see README.md for an example")
    if not isinstance(value, dict):
        raise doc.error((), f"the {what} must be a mapping of keys to values, not"
                            f" {type_name(value)}")
    for key, item in value.items():
        if key not in schema:
            raise doc.error((key,), f"unknown key {key!r}: {suggest(key, schema)}")
        types, hint = schema[key]
        if isinstance(item, bool) or not isinstance(item, types):
            raise doc.error((key,), f"{key!r} must be {hint}, not {type_name(item)}")
    return value


_PLAIN = (str, int, float, bool, type(None))


def _plain(value: Any) -> bool:
    """Strings, numbers, booleans, null, and lists/mappings of them (what SageMaker's
    hyperparameters, the fingerprint and pytest-xdist can all carry)."""
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def _check_hyperparameters(doc: Located, key_path: tuple, hps: dict) -> None:
    for name, value in hps.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise doc.error((*key_path, name), f"hyperparameter name {name!r} is not usable as"
                            " a command-line option; use letters, digits, '_', '-' and '.'")
        if not _plain(value):
            raise doc.error((*key_path, name), f"hyperparameter {name!r} holds a value YAML"
                            " reads as a date or another special type; quote it as a string")


def _metric_definitions(doc: Located, raw: list) -> dict[str, MetricDefinition]:
    found: dict[str, MetricDefinition] = {}
    for i, item in enumerate(raw):
        where = ("metric_definitions", i)
        if not isinstance(item, dict) or set(item) != {"Name", "Regex"}:
            raise doc.error(where, "each metric definition must be a mapping with exactly the"
                            " keys Name and Regex, e.g. {Name: test_accuracy, Regex:"
                            " 'test_accuracy=([0-9.]+)'}")
        name, regex = item["Name"], item["Regex"]
        if not isinstance(name, str) or not isinstance(regex, str):
            raise doc.error(where, "Name and Regex of a metric definition must be strings")
        problem = regex_problem(regex)
        if problem:
            raise doc.error((*where, "Regex"), f"the Regex of metric {name!r} is unusable: "
                            f"{problem}")
        found[name] = MetricDefinition(name, regex)
    return found


def _inputs(doc: Located, raw: dict, rootdir: Path) -> dict[str, str]:
    resolved = {}
    for channel, location in raw.items():
        if not isinstance(channel, str) or not _CHANNEL.match(channel):
            raise doc.error(("inputs", channel), f"channel name {channel!r} is invalid; use"
                            " letters, digits, '_' and '-', e.g. training")
        if not isinstance(location, str) or not location:
            raise doc.error(("inputs", channel), f"input {channel!r} must be a local folder or"
                            " an s3:// URI")
        if location.startswith("s3://"):
            resolved[channel] = location
            continue
        folder = (rootdir / location).resolve()
        if not folder.is_dir():
            raise doc.error(("inputs", channel), f"input {channel!r}: folder {folder} does not"
                            " exist; fix the path (relative to the project root) or use s3://")
        resolved[channel] = str(folder)
    return resolved


def _check_hosts(doc: Located, values: dict) -> None:
    """`instance_count` and `distribution` of one file (experiment or base config)."""
    block = values.get("sagemaker") or {}
    if "instance_count" in block:
        # Refused whatever its value (even one equal to the top-level count): one place for
        # the number of hosts, which the local hosts and the emulator read too. Accepted
        # here, it would run ONE host locally while --sm launched several.
        raise doc.error(("sagemaker", "instance_count"), "'sagemaker.instance_count' is not"
                        " a SageMaker setting: it is the number of hosts to train on, the same"
                        " for every backend; write it at the top level of the file, e.g."
                        " `instance_count: 2` next to `hyperparameters:`, and remove it from"
                        " the sagemaker block")
    count = values.get("instance_count")
    if count is not None and count < 1:
        raise doc.error(("instance_count",), f"instance_count must be at least 1 (the number"
                        f" of hosts to train on), not {count}")
    for strategy, config in (values.get("distribution") or {}).items():
        where = ("distribution", strategy)
        if strategy in _SDK_ONLY_DISTRIBUTIONS:
            raise doc.error(where, f"the SageMaker SDK's distribution strategy {strategy!r}"
                            " is not supported here; use torch_distributed: {enabled: true},"
                            " or no distribution for a script that calls init_process_group"
                            " itself")
        if strategy not in DISTRIBUTIONS:
            raise doc.error(where, f"unknown distribution strategy {strategy!r}:"
                            f" {suggest(strategy, DISTRIBUTIONS, 'strategies')}")
        if not isinstance(config, dict):
            raise doc.error(where, f"distribution.{strategy} must be a mapping such as"
                            f" {{enabled: true}}, not {type_name(config)}")
        for key, value in config.items():
            if key not in TORCH_DISTRIBUTED_KEYS:
                raise doc.error((*where, key), f"unknown key {key!r} in distribution."
                                f"{strategy}: {suggest(key, TORCH_DISTRIBUTED_KEYS)}")
            if not isinstance(value, bool):
                raise doc.error((*where, key), f"distribution.{strategy}.{key} must be true"
                                f" or false, not {type_name(value)}")
        if "enabled" not in config:
            # The SDK reads a missing `enabled` as false; written out, it was meant either way.
            raise doc.error(where, f"distribution.{strategy} needs `enabled: true` (or false"
                            " to turn it off)")


def _distribution(doc: Located, raw: dict, base_doc: Located | None, base: dict,
                  entry_point: str) -> dict[str, Any]:
    """The merged distribution (experiment over base, strategy by strategy), enabled
    strategies only, refused with a script torchrun cannot run."""
    merged = {**base.get("distribution", {}), **raw.get("distribution", {})}
    enabled = {name: dict(config) for name, config in merged.items() if config.get("enabled")}
    if "torch_distributed" in enabled and not entry_point.endswith(".py"):
        # SDK v2 src/sagemaker/fw_utils.py validate_torch_distributed_distribution; the
        # toolkit's torchrun runner refuses the same (sagemaker_training/torch_distributed.py).
        # The default (train.py) ends in .py, so the entry point was written in one file.
        source = doc if "entry_point" in raw or base_doc is None else base_doc
        raise source.error(("entry_point",), f"entry_point {entry_point!r} cannot run with"
                           " distribution torch_distributed, as the SageMaker SDK says:"
                           " \"Unsupported entry point type for the distribution"
                           " torch_distributed. Only python programs (*.py) are supported.\""
                           " (fw_utils.py); use a .py script or leave out torch_distributed")
    return enabled


def _load_base(doc: Located, rootdir: Path) -> tuple[Located | None, dict]:
    base_ref = doc.value.get("base")
    if base_ref is None:
        return None, {}
    candidates = [rootdir / base_ref, doc.path.parent / base_ref]
    for candidate in candidates:
        if candidate.is_file():
            base = yamlsafe.load(candidate)
            return base, _check_keys(base, BASE_KEYS, "config file")
    raise doc.error(("base",), f"base config {base_ref!r} was not found (looked in "
                    f"{rootdir} and {doc.path.parent}); fix the path or remove 'base'")


def _axes(doc: Located, raw: dict) -> list[tuple[str, list]]:
    axes: list[tuple[str, list]] = []
    for section in ("matrix", "zip"):
        block = raw.get(section)
        if block is None:
            continue
        if not block:
            raise doc.error((section,), f"{section!r} is empty; give it at least one"
                            " hyperparameter with a list of values, or remove it")
        lengths = set()
        for name, values in block.items():
            where = (section, name)
            if not isinstance(values, list):
                raise doc.error(where, f"{section} axis {name!r} must be a list of values,"
                                f" e.g. {name}: [0.1, 0.01]; got {type_name(values)}")
            if not values:
                raise doc.error(where, f"{section} axis {name!r} is empty; give it at least"
                                " one value")
            for i, value in enumerate(values):
                if not isinstance(value, _PLAIN) or value is None:
                    raise doc.error((*where, i), f"{section} axis {name!r} holds"
                                    f" {type_name(value)}; axis values must be plain"
                                    " strings, numbers or booleans")
            labels = [_label(v) for v in values]
            for i, label in enumerate(labels):
                if label in labels[:i]:
                    raise doc.error((*where, i), f"{section} axis {name!r} repeats the"
                                    f" value {values[i]!r}; each value must appear once")
            if any(name == other for other, _ in axes):
                raise doc.error(where, f"{name!r} is swept in both 'matrix' and 'zip'; keep"
                                " it in one of them")
            _check_hyperparameters(doc, where[:1], {name: None})
            lengths.add(len(values))
            axes.append((name, values))
        if section == "zip" and len(lengths) > 1:
            detail = ", ".join(f"{n}: {len(v)}" for n, v in axes if n in block)
            raise doc.error(("zip",), f"zip axes must have equally long lists ({detail});"
                            " use 'matrix' for a cartesian product")
    return axes


def _label(value: Any) -> str:
    return str(value)


def _expand(raw: dict, axes: list[tuple[str, list]]) -> list[dict[str, Any]]:
    matrix_axes = [(n, v) for n, v in axes if n in (raw.get("matrix") or {})]
    zip_axes = [(n, v) for n, v in axes if n in (raw.get("zip") or {})]
    factors: list[list[dict[str, Any]]] = [
        [{name: value} for value in values] for name, values in matrix_axes
    ]
    if zip_axes:
        length = len(zip_axes[0][1])
        factors.append([{n: v[i] for n, v in zip_axes} for i in range(length)])
    combos = []
    for parts in itertools.product(*factors):
        combo: dict[str, Any] = {}
        for part in parts:
            combo.update(part)
        combos.append(combo)
    return combos


def _tune(doc: Located, raw: dict, definitions: dict[str, MetricDefinition],
          axes: list[tuple[str, list]], repeat: tolerances.Repeat | None) -> TuneSpec | None:
    """The file's search, checked against the rest of the file. With a matrix or zip, each
    cell is a search of its own over the same ranges."""
    if "tune" not in raw:
        return None
    if repeat is not None:
        raise doc.error(("repeat",), "'repeat' cannot be combined with 'tune': a search runs"
                        " each trial once and judges its best trial; remove one of them")
    tune = parse_tune(doc)
    _check_hyperparameters(doc, ("tune", "ranges"), {spec.name: None for spec in tune.ranges})
    if tune.objective_metric not in definitions:
        known = ", ".join(sorted(definitions)) or "none are defined"
        raise doc.error(("tune", "objective", "metric"), f"no metric definition produces"
                        f" {tune.objective_metric!r}, the objective of the search (defined:"
                        f" {known}); add it to metric_definitions or fix the name")
    swept = {name: section for section in ("matrix", "zip") for name in raw.get(section) or {}}
    for spec in tune.ranges:
        if spec.name in swept:
            raise doc.error(("tune", "ranges", spec.name), f"{spec.name!r} is both searched"
                            f" by 'tune' and swept by {swept[spec.name]!r}; keep it in one of"
                            " them")
    return tune


def load_experiment(path: Path, rootdir: Path) -> list[RunSpec]:
    """Read, validate and expand one experiment file into its runs."""
    doc = yamlsafe.load(path)
    raw = _check_keys(doc, EXPERIMENT_KEYS, "experiment file")
    base_doc, base = _load_base(doc, rootdir)

    for source, values in ((base_doc, base), (doc, raw)):
        if source is not None and "hyperparameters" in values:
            _check_hyperparameters(source, ("hyperparameters",), values["hyperparameters"])
        if source is not None:
            _check_hosts(source, values)

    definitions: dict[str, MetricDefinition] = {}
    inputs: dict[str, str] = {}
    for source, values in ((base_doc, base), (doc, raw)):
        if source is None:
            continue
        definitions.update(_metric_definitions(source, values.get("metric_definitions", [])))
        inputs.update(_inputs(source, values.get("inputs", {}), rootdir))

    expect: list[thresholds.Threshold] = []
    for metric, text in (raw.get("expect") or {}).items():
        try:
            threshold = thresholds.parse(metric, text)
        except thresholds.ThresholdSyntaxError as exc:
            raise doc.error(("expect", metric), str(exc)) from None
        if metric not in definitions:
            known = ", ".join(sorted(definitions)) or "none are defined"
            raise doc.error(("expect", metric), f"no metric definition produces {metric!r}"
                            f" (defined: {known}); add it to metric_definitions or fix the name")
        expect.append(threshold)

    marks = raw.get("marks") or []
    for i, mark in enumerate(marks):
        if not isinstance(mark, str) or not _MARK.match(mark):
            raise doc.error(("marks", i), f"mark {mark!r} is not a valid pytest marker name;"
                            " use a plain identifier such as sweep")

    max_run = raw.get("max_run", base.get("max_run", DEFAULT_MAX_RUN))
    for source, values in ((doc, raw), (base_doc, base)):
        if source is not None and "max_run" in values and values["max_run"] <= 0:
            raise source.error(("max_run",), "max_run must be a positive number of seconds")

    source_dir = (rootdir / raw.get("source_dir", base.get("source_dir", DEFAULT_SOURCE_DIR)))
    entry_point = raw.get("entry_point", base.get("entry_point", DEFAULT_ENTRY_POINT))
    distribution = _distribution(doc, raw, base_doc, base, entry_point)
    if not (source_dir / entry_point).is_file():
        key = "entry_point" if "entry_point" in raw else "source_dir"
        raise doc.error((key,), f"the entry point {source_dir / entry_point} does not exist;"
                        " set 'source_dir' and 'entry_point' to your training script")
    instance_count = raw.get("instance_count", base.get("instance_count", 1))

    gates: dict[str, tolerances.Tolerance] = {}
    repeat = None
    try:
        if base_doc is not None and "tolerances" in base:
            gates = tolerances.parse_tolerances(base["tolerances"])
    except tolerances.ToleranceError as exc:
        raise base_doc.error(exc.key_path, exc.message) from None
    try:
        gates = tolerances.parse_tolerances(raw.get("tolerances"), defaults=gates)
        repeat = tolerances.parse_repeat(raw.get("repeat"))
    except tolerances.ToleranceError as exc:
        raise doc.error(exc.key_path, exc.message) from None
    for metric in gates:
        if metric not in definitions:
            source = doc if metric in (raw.get("tolerances") or {}) else base_doc
            raise source.error(("tolerances", metric), f"no metric definition produces"
                               f" {metric!r}; add it to metric_definitions or fix the name")

    hyperparameters = {**base.get("hyperparameters", {}), **raw.get("hyperparameters", {})}
    sagemaker = {**base.get("sagemaker", {}), **raw.get("sagemaker", {})}
    axes = _axes(doc, raw)
    if repeat is not None and any(name == repeat.seed_key for name, _ in axes):
        raise doc.error(("repeat",), f"'repeat' varies {repeat.seed_key!r}, which the matrix"
                        " already sweeps; remove one of them")
    tune = _tune(doc, raw, definitions, axes, repeat)
    experiment = path.stem
    runs = []
    for swept in _expand(raw, axes):
        run_id = ",".join(f"{name}={_label(value)}" for name, value in swept.items())
        runs.append(
            RunSpec(
                experiment=experiment,
                run_id=run_id,
                path=path,
                # The block that makes the items (line_of would fall back to the file's
                # first line for a key that is not there).
                line=next((doc.line_of((key,)) or 1 for key in ("matrix", "zip", "tune")
                           if key in raw), 1),
                description=raw.get("description", base.get("description", "")),
                source_dir=source_dir.resolve(),
                entry_point=entry_point,
                hyperparameters={**hyperparameters, **swept},
                swept=swept,
                inputs=inputs,
                metric_definitions=tuple(definitions.values()),
                expect=tuple(expect),
                marks=tuple(marks),
                max_run=max_run,
                sagemaker=sagemaker,
                tolerances=gates,
                repeat=repeat,
                instance_count=instance_count,
                distribution=distribution,
                tune=tune,
            )
        )
    return runs
