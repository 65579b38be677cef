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
the same readable name in every session. A rolled-over experiment is `<name>--<n>`: slug()
never makes `--`, so no file's own experiment is another file's rolled-over one. Standard
library only.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sm_pytest.spec.experiment_file import RunSpec

__all__ = [
    "ENTITY_NAME_PATTERN",
    "JOB_NAME_PATTERN",
    "MAX_ENTITY_NAME",
    "MAX_JOB_NAME",
    "MAX_SDK_NAME",
    "MAX_TUNING_JOB_NAME",
    "MAX_TUNING_TOKEN",
    "TUNING_JOB_NAME_PATTERN",
    "display_name",
    "experiment_name",
    "job_component_name",
    "job_name",
    "run_group",
    "trial_component_name",
    "tuning_job_name",
]

JOB_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
ENTITY_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}")
MAX_JOB_NAME = 63
MAX_ENTITY_NAME = 120
MAX_SDK_NAME = 59  # sagemaker.core.experiments.run: MAX_NAME_LEN_IN_BACKEND / 2 - 1
TUNING_JOB_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}")
MAX_TUNING_JOB_NAME = 32
# A longer token would leave too little of a tuning job's 32 characters to the experiment
# and the run for a reader to tell searches apart.
MAX_TUNING_TOKEN = 16
RUN_GROUP_PREFIX = "Default-Run-Group-"  # run.py TRIAL_NAME_TEMPLATE
JOB_COMPONENT_SUFFIX = "-aws-training-job"
MAX_ROLLOVER = 999
ROLLOVER_SEPARATOR = "--"  # never in a slug: see experiment_name
# An experiment name keeps room for its rolled-over form (`--999`) within the SDK's limit.
_EXPERIMENT_ROOM = MAX_SDK_NAME - len(f"{ROLLOVER_SEPARATOR}{MAX_ROLLOVER}")
_HASH = 6
_MIN_EXPERIMENT = 8  # what a cut name keeps of the experiment when the run id is very long
_TOKEN = re.compile(r"[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*")
_LOWER_UNSAFE = re.compile(r"[^a-z0-9]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
_DECIMAL_POINT = re.compile(r"(?<=[0-9])\.(?=[0-9])")
_LEADING_MINUS = re.compile(r"^-(?=[0-9.])")
_EXPONENT_PLUS = re.compile(r"(?<=[0-9][eE])\+(?=[0-9])")  # `1e+20`: not to read `1e-20`
# Values _display keeps apart from every other value: numbers (`0p5`, `minus2`, `1e-05`) and
# plain words that could not be mistaken for a number's form. Any other value loses
# something (`[1, -1]` and `[1, 1]` both read `1-1`), and its name gets the run's hash.
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?(e-[0-9]+)?")
_WORD = re.compile(r"[A-Za-z0-9]+")
_NUMBER_FORM = re.compile(r"(minus)?[0-9]+(p[0-9]+)?(e[0-9]+)?")


def _ascii(text: str) -> str:
    """`é` -> `e`, `ß` -> `ss`; characters with no ASCII form are dropped."""
    decomposed = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def slug(text: str) -> str:
    """Lower-case letters and digits, every other run of characters one '-'.

    Lower case because the SDK's Run lower-cases experiment names anyway; `_display` keeps
    case for Studio's DisplayName. Not run.artifacts.folder_name, which keeps the '=' and
    '.' of a run id that no AWS name may hold."""
    return _LOWER_UNSAFE.sub("-", _ascii(text).lower()).strip("-")


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:_HASH]


def _cut(text: str, length: int) -> str:
    return text[:max(0, length)].strip("-")


def _join(*parts: str, sep: str = "-") -> str:
    return sep.join(part for part in parts if part)


def _checked(name: str, pattern: re.Pattern, limit: int) -> str:
    if not pattern.fullmatch(name) or len(name) > limit:  # a bug here, not the user's input
        raise RuntimeError(f"sm-pytest made the name {name!r}, which breaks"
                           f" {pattern.pattern} or its {limit} characters; please report it")
    return name


def _fit(head: str, tail: str, sep: str, suffix: str, limit: int) -> str:
    """`<head><sep><tail>-<suffix>` in `limit` characters: `suffix` is never cut, `tail` keeps
    all it can while `head` keeps up to _MIN_EXPERIMENT characters, then `head` takes what is
    left."""
    room = limit - len(suffix) - 1
    tail = _cut(tail, room - min(len(head), _MIN_EXPERIMENT) - len(sep))
    head = _cut(head, room - len(tail) - (len(sep) if tail else 0))
    return _join(_join(head, tail, sep=sep), suffix)


def _check_token(token: str) -> str:
    if not _TOKEN.fullmatch(token or "") or len(token) > 40:
        raise ValueError(f"job name token {token!r} must be 1-40 letters or digits, optionally"
                         " joined by single '-'")
    return token.lower()


# --- experiments ------------------------------------------------------------------------------


def experiment_name(experiment: str, rollover: int = 1) -> str:
    """The SageMaker experiment of the YAML file `experiment` (`lr_sweep` -> `lr-sweep`), or
    its rolled-over form (`lr-sweep--2`, ...) once a run group is full.

    Names whose slugs agree share an experiment (items.ExperimentFile._claim_name refuses two
    such files in one project). A name too long for the SDK keeps its head and gets a hash of
    the whole; a name with no ASCII letter or digit becomes `experiment-<hash>`."""
    if not 1 <= rollover <= MAX_ROLLOVER:
        raise ValueError(f"rollover {rollover} is outside 1..{MAX_ROLLOVER}")
    base = slug(experiment)
    if not base:
        base = f"experiment-{short_hash(experiment)}"
    elif len(base) > _EXPERIMENT_ROOM:
        base = _join(_cut(base, _EXPERIMENT_ROOM - _HASH - 1), short_hash(base))
    return base if rollover == 1 else f"{base}{ROLLOVER_SEPARATOR}{rollover}"


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


def _pairs(run: RunSpec, *, swept: bool = True) -> list[tuple[str, str]]:
    """The run's swept (name, value) pairs as text; from its run id when it has no sweep,
    or when not `swept` (a job is named after the run id, as its folder is)."""
    if swept and run.swept:
        return [(str(k), str(v)) for k, v in run.swept.items()]
    return [part.partition("=")[::2] for part in run.run_id.split(",") if part]


def _repeat(run: RunSpec) -> str:
    return "" if run.repeat_index is None else f"repeat{run.repeat_index + 1}"


def _axes(run: RunSpec, pairs: list[tuple[str, str]]) -> list[str]:
    """`name-value` of each pair as _display reads them, then the repeat if any."""
    return [*(_join(_display(name), _display(value)) for name, value in pairs), _repeat(run)]


def _run_part(run: RunSpec) -> str:
    """The run id (and repeat) as _display reads it, lower-cased, so that a sign or a decimal
    point still shows: `lr=0.1` -> `lr-0p1`, `seed=-2` -> `seed-minus2`, `...-repeat2`."""
    return _join(*_axes(run, _pairs(run, swept=False))).lower()


def job_name(run: RunSpec, token: str) -> str:
    """``<experiment>-<run id>-<token>``, e.g. ``lr-sweep-lr-0p1-3fa2c1004``; also the name of
    the job's Run in SageMaker Experiments.

    ``token`` (the session token and the launch index) makes it unique and is never cut.
    Longer than 59 characters, the experiment part is cut first, then the run part, and a
    hash of the experiment and run id goes before the token:
    ``learning-rate-sweep-for-the-mnist-c-lr-0p5-2b39cb-3fa2c1004``. The hash is there too
    when the run part could read like another run's (a value such as `[1, -1]`, or upper
    case that the name lowers). The same inputs always give the same name."""
    return _job_like_name(run, _check_token(token), JOB_NAME_PATTERN, MAX_SDK_NAME)


def _job_like_name(run: RunSpec, token: str, pattern, limit: int) -> str:
    """`<experiment>-<run part>-<token>` within `limit` characters, the token never cut:
    a training job's name and a tuning job's."""
    experiment = slug(run.experiment) or experiment_name(run.experiment)
    run_part = _run_part(run)
    name = _join(experiment, run_part, token)
    if len(name) > limit or not _readable_in_full(run, run_part):
        name = _fit(experiment, run_part, "-", f"{_run_hash(run)}-{token}", limit)
    return _checked(name, pattern, limit)


def _readable_in_full(run: RunSpec, run_part: str) -> bool:
    """Whether no other run of the experiment can read as `run_part` (lower-casing and
    lossy values can make two read alike; the hash then tells them apart)."""
    pairs = _pairs(run, swept=False)
    return all(_kept_whole(value) for _, value in pairs) and run_part == _join(
        *_axes(run, pairs))


def _run_hash(run: RunSpec) -> str:
    return short_hash(run.experiment, run.run_id, str(run.repeat_index))


def _display(text: str) -> str:
    """Letters and digits with their case, other runs of characters one '-'; a decimal point
    becomes `p`, a leading minus `minus`, an exponent's plus goes (`0.5` -> `0p5`, `-2` ->
    `minus2`, `1e+20` -> `1e20`, `1e-3` stays)."""
    text = _EXPONENT_PLUS.sub("", _ascii(text))
    text = _LEADING_MINUS.sub("minus", _DECIMAL_POINT.sub("p", text))
    return _UNSAFE.sub("-", text).strip("-")


def _kept_whole(value: str) -> bool:
    """Whether _display(value) tells `value` apart from every other value."""
    if _NUMBER.fullmatch(value):
        return True
    return bool(_WORD.fullmatch(value)) and (value.isdigit()
                                              or not _NUMBER_FORM.fullmatch(value))


def display_name(run: RunSpec) -> str:
    """The Run's display name in Studio: the item id in the form DisplayName allows, `--`
    between the experiment and each swept value: `lr_sweep[lr=0.5]` -> `lr-sweep--lr-0p5`,
    `grid[lr=0.1,seed=-2]` -> `grid--lr-0p1--seed-minus2`; a search's trial 7 ends with
    `--trial-007`. A value that form cannot keep
    apart from another (`[1, -1]`, `a.b`) adds the run's hash: `g--b-1-1-<hash>`; so does a
    name cut to 120 characters (the experiment gives way first)."""
    pairs = _pairs(run)
    experiment = _display(run.experiment) or "experiment"
    values = _join(*_axes(run, pairs), sep="--")
    if run.trial_index is not None:  # a search's trials, told apart: `lr-search--trial-007`
        values = _join(values, f"trial-{run.trial_index:03d}", sep="--")
    name = _join(experiment, values, sep="--")
    if len(name) > MAX_ENTITY_NAME or not all(_kept_whole(v) for _, v in pairs):
        name = _fit(experiment, values, "--", _run_hash(run), MAX_ENTITY_NAME)
    return _checked(name, ENTITY_NAME_PATTERN, MAX_ENTITY_NAME)


def tuning_job_name(run: RunSpec, token: str) -> str:
    """``<experiment>-<run id>-<token>`` in the 32 characters a tuning job name may have
    (HyperParameterTuningJobName: ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}``), e.g.
    ``lr-search-3fa2c1004``; cut as :func:`job_name` cuts, with the hash of the experiment and
    run id before the token. SageMaker names each trial ``<tuning job>-<NNN>-<8 hex>``, at
    most 45 characters, within a training job's 63.

    ``token`` (the session token and the launch index) is never cut; at most 16 characters."""
    token = _check_token(token)
    if len(token) > MAX_TUNING_TOKEN:
        raise ValueError(f"tuning job name token {token!r} is longer than {MAX_TUNING_TOKEN}"
                         " characters")
    return _job_like_name(run, token, TUNING_JOB_NAME_PATTERN, MAX_TUNING_JOB_NAME)
