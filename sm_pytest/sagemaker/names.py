"""Every name sm-pytest gives a thing in AWS, made in one place from the experiment (the
YAML file's name), the run id and the session token.

The rules each name must meet (botocore's SageMaker service model, and sagemaker-core's
``experiments/run.py`` for the names the SDK derives):

* TrainingJobName: ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``, 1-63 characters.
* ExperimentEntityName (experiment, trial, trial component names and DisplayName):
  ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}``, 1-120 characters.
* ``Run`` lower-cases ``experiment_name`` and ``run_name`` and refuses either when longer
  than 59 characters; its trial is ``Default-Run-Group-<experiment>`` and its trial
  component ``<experiment>-<run name>``.
* A job started with an ExperimentConfig gets a trial component of its own from SageMaker,
  ``<job>-aws-training-job``.

Each Run is named after its training job (the run *is* the job, for whoever looks it up),
so job names keep to the SDK's 59 characters rather than the service's 63.

When a name must be shortened, the token and the run part survive and the experiment part
gives way; a short hash of what was cut goes before the token, so that the same run keeps
the same readable name in every session. Standard library only.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..spec import RunSpec

__all__ = [
    "ENTITY_NAME_PATTERN",
    "JOB_NAME_PATTERN",
    "MAX_ENTITY_NAME",
    "MAX_JOB_NAME",
    "MAX_SDK_NAME",
    "display_name",
    "experiment_name",
    "job_component_name",
    "job_name",
    "run_group",
    "trial_component_name",
]

JOB_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
ENTITY_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}")
MAX_JOB_NAME = 63
MAX_ENTITY_NAME = 120
MAX_SDK_NAME = 59  # sagemaker.core.experiments.run: MAX_NAME_LEN_IN_BACKEND / 2 - 1
RUN_GROUP_PREFIX = "Default-Run-Group-"  # run.py TRIAL_NAME_TEMPLATE
JOB_COMPONENT_SUFFIX = "-aws-training-job"
MAX_ROLLOVER = 999
# An experiment name keeps room for its rolled-over form (`-999`) within the SDK's limit.
_EXPERIMENT_ROOM = MAX_SDK_NAME - len(f"-{MAX_ROLLOVER}")
_HASH = 6
_MIN_EXPERIMENT = 8  # what a job name keeps of the experiment when the run id is very long
_TOKEN = re.compile(r"[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*")
_LOWER_UNSAFE = re.compile(r"[^a-z0-9]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
_DECIMAL_POINT = re.compile(r"(?<=[0-9])\.(?=[0-9])")
_LEADING_MINUS = re.compile(r"^-(?=[0-9.])")


def _ascii(text: str) -> str:
    """`é` -> `e`, `ß` -> `ss`; characters with no ASCII form are dropped."""
    decomposed = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def slug(text: str) -> str:
    """Lower-case letters and digits, every other run of characters one '-'."""
    return _LOWER_UNSAFE.sub("-", _ascii(text).lower()).strip("-")


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:_HASH]


def _cut(text: str, length: int) -> str:
    return text[:max(0, length)].strip("-")


def _join(*parts: str, sep: str = "-") -> str:
    return sep.join(part for part in parts if part)


def _check_token(token: str) -> str:
    if not _TOKEN.fullmatch(token or "") or len(token) > 40:
        raise ValueError(f"job name token {token!r} must be 1-40 letters or digits, optionally"
                         " joined by single '-'")
    return token.lower()


# --- experiments ------------------------------------------------------------------------------


def experiment_name(experiment: str, rollover: int = 1) -> str:
    """The SageMaker experiment of the YAML file `experiment` (`lr_sweep` -> `lr-sweep`), or
    its rolled-over form (`lr-sweep-2`, ...) once a run group is full.

    Names whose slugs agree share an experiment (plugin._claim_name refuses two such files in
    one project). A name too long for the SDK keeps its head and gets a hash of the whole; a
    name with no ASCII letter or digit becomes `experiment-<hash>`."""
    if not 1 <= rollover <= MAX_ROLLOVER:
        raise ValueError(f"rollover {rollover} is outside 1..{MAX_ROLLOVER}")
    base = slug(experiment)
    if not base:
        base = f"experiment-{short_hash(experiment)}"
    elif len(base) > _EXPERIMENT_ROOM:
        base = _join(_cut(base, _EXPERIMENT_ROOM - _HASH - 1), short_hash(base))
    return base if rollover == 1 else f"{base}-{rollover}"


def run_group(experiment: str) -> str:
    """The trial the SDK's Run puts every run of `experiment` in (run.py _generate_trial_name)."""
    return RUN_GROUP_PREFIX + experiment.lower()[:MAX_ENTITY_NAME - len(RUN_GROUP_PREFIX)]


def trial_component_name(experiment: str, run_name: str) -> str:
    """The trial component of a Run (run.py _generate_trial_component_name)."""
    return f"{experiment}-{run_name}".lower()


def job_component_name(job: str) -> str:
    """The trial component SageMaker itself makes for a job started with an ExperimentConfig."""
    return job + JOB_COMPONENT_SUFFIX


# --- jobs and runs --------------------------------------------------------------------------


def _run_part(run: RunSpec) -> str:
    """The run id (and repeat), as a slug: `lr=0.1` -> `lr-0-1`, `...-repeat2`."""
    repeat = "" if run.repeat_index is None else f"repeat{run.repeat_index + 1}"
    return _join(slug(run.run_id), repeat)


def job_name(run: RunSpec, token: str) -> str:
    """``<experiment>-<run id>-<token>``, e.g. ``lr-sweep-lr-0-1-3fa2c1004``; also the name of
    the job's Run in SageMaker Experiments.

    ``token`` (the session token and the launch index) makes it unique and is never cut.
    Longer than 59 characters, the experiment part is cut first, then the run part, and a
    hash of the experiment and run id goes before the token:
    ``learning-rate-sweep-for-the-mnist-c-lr-0-5-2b39cb-3fa2c1004``. The same inputs always
    give the same name."""
    token = _check_token(token)
    experiment = slug(run.experiment) or experiment_name(run.experiment)
    run_part = _run_part(run)
    name = _join(experiment, run_part, token)
    if len(name) > MAX_SDK_NAME:
        mark = short_hash(run.experiment, run.run_id, str(run.repeat_index))
        room = MAX_SDK_NAME - len(token) - len(mark) - 2
        run_part = _cut(run_part, room - _MIN_EXPERIMENT - 1)
        experiment = _cut(experiment, room - len(run_part) - (1 if run_part else 0))
        name = _join(experiment, run_part, mark, token)
    assert JOB_NAME_PATTERN.fullmatch(name) and len(name) <= MAX_SDK_NAME, name
    return name


def _display(text: str) -> str:
    """Letters and digits with their case, other runs of characters one '-'; a decimal point
    becomes `p` and a leading minus `minus` (`0.5` -> `0p5`, `-2` -> `minus2`, `1e-3` stays)."""
    text = _LEADING_MINUS.sub("minus", _DECIMAL_POINT.sub("p", _ascii(text)))
    return _UNSAFE.sub("-", text).strip("-")


def display_name(run: RunSpec) -> str:
    """The Run's display name in Studio: the item id in the form DisplayName allows, `--`
    between the experiment and each swept value: `lr_sweep[lr=0.5]` -> `lr-sweep--lr-0p5`,
    `grid[lr=0.1,seed=-2]` -> `grid--lr-0p1--seed-minus2`. Cut to 120 characters with a hash
    when longer (the experiment gives way first)."""
    pairs = ([(str(k), str(v)) for k, v in run.swept.items()] if run.swept else
             [part.partition("=")[::2] for part in run.run_id.split(",") if part])
    axes = [_join(_display(name), _display(value)) for name, value in pairs]
    if run.repeat_index is not None:
        axes.append(f"repeat{run.repeat_index + 1}")
    experiment = _display(run.experiment) or "experiment"
    values = _join(*axes, sep="--")
    name = _join(experiment, values, sep="--")
    if len(name) > MAX_ENTITY_NAME:
        mark = short_hash(run.experiment, run.run_id, str(run.repeat_index))
        room = MAX_ENTITY_NAME - len(mark) - 1
        values = _cut(values, room - _MIN_EXPERIMENT - 2)
        experiment = _cut(experiment, room - len(values) - (2 if values else 0))
        name = _join(_join(experiment, values, sep="--"), mark)
    assert ENTITY_NAME_PATTERN.fullmatch(name) and len(name) <= MAX_ENTITY_NAME, name
    return name
