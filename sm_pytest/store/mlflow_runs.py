"""How finished items become MLflow runs, the way MLflow shows a sweep.

    experiment  lr_sweep                   one per experiment file, named as everywhere else
      run       lr_sweep 20261201-...      the file in one session (sm_pytest.kind = file)
        run     lr_sweep[lr=0.5]           one item: params, metric steps, tags, artifacts
          run   lr_sweep[lr=0.5] repeat 1  with `repeat`: one per repeat, under its item
          run   lr_search trial 3          with `tune:`: one per trial, under its item

Nesting is MLflow's own: the `mlflow.parentRunId` tag. A run's status mirrors how its
training ended (FINISHED, FAILED, or KILLED when stopped or interrupted); the verdict of its
thresholds and baseline is the `sm_pytest.verdict` tag. Only the controller calls this, with
an MlflowClient made by mlflow_setup.make_client.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sm_pytest.model import (
    COMPLETED,
    INTERRUPTED,
    STOPPED,
    RepeatRecord,
    RunRecord,
    TrialRecord,
)

FILE, ITEM, REPEAT, TRIAL = "file", "item", "repeat", "trial"
_STATUS = {COMPLETED: "FINISHED", INTERRUPTED: "KILLED", STOPPED: "KILLED"}
PARENT = "mlflow.parentRunId"
ARTIFACT_FILES = ("train.log", "result.json", "metrics.csv")
# Params that say where the run ran, beside its hyperparameters.
_PLACEMENT = ("backend", "instance_type", "instance_count")


def mlflow_status(status: str) -> str:
    """MLflow's RunStatus for one of model's statuses."""
    return _STATUS.get(status, "FAILED")


def record_key(session: str, item: str) -> str:
    """The `sm_pytest.record` tag of an item's runs in one session: a replay finds what an
    earlier attempt left of them by it. Hashed: item names may hold quotes that MLflow's
    filter syntax cannot carry."""
    return hashlib.sha256(f"{session}\0{item}".encode()).hexdigest()[:20]


def _ms(seconds: float) -> int:
    return int((seconds or time.time()) * 1000)


class RunLogger:
    """Writes items and parent runs through one MlflowClient; the ids of experiments and
    parent runs are looked up once and kept."""

    def __init__(self, client):
        from mlflow.utils import validation

        self.client = client
        self._limits = validation
        self._experiments: dict[str, str] = {}
        self._parents: dict[tuple[str, str], str] = {}
        self._created: list[str] = []  # the runs of the item being logged, to take back

    # -- experiments and parents -----------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        if name not in self._experiments:
            from mlflow.exceptions import MlflowException

            found = self.client.get_experiment_by_name(name)
            if found is None:
                try:
                    self._experiments[name] = self.client.create_experiment(name)
                    return self._experiments[name]
                except MlflowException:  # another session made it just now
                    found = self.client.get_experiment_by_name(name)
                    if found is None:
                        raise
            if found.lifecycle_stage == "deleted":
                raise RuntimeError(
                    f"the MLflow experiment {name!r} is deleted; restore it (mlflow"
                    f" experiments restore --experiment-id {found.experiment_id}) or delete"
                    " it for good (mlflow gc) so that sm-pytest can create it again")
            self._experiments[name] = found.experiment_id
        return self._experiments[name]

    def parent(self, experiment: str, session: str, *, start: float = 0.0,
               tags: dict[str, str] | None = None) -> str:
        """The id of the file's parent run in `session`: found (made by an earlier attempt,
        or the live session before a replay) or made now."""
        key = (experiment, session)
        if key not in self._parents:
            experiment_id = self.experiment_id(experiment)
            found = self.client.search_runs(
                [experiment_id], max_results=1,
                filter_string=f"tags.`sm_pytest.session` = '{session}'"
                              f" and tags.`sm_pytest.kind` = '{FILE}'")
            if found:
                self._parents[key] = found[0].info.run_id
            else:
                run = self.client.create_run(
                    experiment_id, start_time=_ms(start), run_name=f"{experiment} {session}",
                    tags={"sm_pytest.kind": FILE, "sm_pytest.session": session,
                          **(tags or {})})
                self._parents[key] = run.info.run_id
        return self._parents[key]

    def has_parent(self, experiment: str, session: str) -> bool:
        """Whether this logger made or found the file's parent run in `session`."""
        return (experiment, session) in self._parents

    def end_parent(self, experiment: str, session: str, status: str, tags: dict[str, str],
                   end: float) -> str:
        parent = self.parent(experiment, session, start=end)
        self._send(parent, tags=tags)
        self.client.set_terminated(parent, status=status, end_time=_ms(end))
        return parent

    # -- one item --------------------------------------------------------------------------

    def log(self, rec: RunRecord, session: str, *, git_commit: str = "",
            log_models: bool = True, replace: bool = False) -> str:
        """The item's runs under its file's parent; `replace`: first delete what an earlier,
        unfinished attempt left of them. Returns the item run's id. A reused item (from the
        run cache) is not logged again if MLflow has its training already."""
        common = {"sm_pytest.session": session, "sm_pytest.record": record_key(session,
                                                                                rec.name)}
        if git_commit:
            common["mlflow.source.git.commit"] = git_commit
        # A reused item's times are its training's, in an earlier session.
        parent = self.parent(rec.experiment, session,
                             start=time.time() if rec.cached else rec.started_at,
                             tags=_file_tags(rec, common))
        experiment_id = self.experiment_id(rec.experiment)
        if rec.cached:
            earlier = self._trained_before(experiment_id, rec.fingerprint)
            if earlier is not None:
                return earlier
            common["sm_pytest.reused"] = "true"  # trained in a session MLflow did not see
        if replace:
            self._delete_earlier(experiment_id, common["sm_pytest.record"])
        self._created = []
        try:
            return self._log_item(experiment_id, parent, rec, common, log_models)
        except BaseException:
            # Half an item would show as a RUNNING run with a verdict: take it back, and
            # leave the whole item to the outbox's next attempt.
            for run_id in reversed(self._created):
                with contextlib.suppress(Exception):
                    self.client.delete_run(run_id)
            raise

    def _create(self, experiment_id: str, **kwargs) -> str:
        run_id = self.client.create_run(experiment_id, **kwargs).info.run_id
        self._created.append(run_id)
        return run_id

    def _trained_before(self, experiment_id: str, fingerprint: str) -> str | None:
        """The item run of an earlier session that trained this fingerprint, if any."""
        if not fingerprint:
            return None
        found = self.client.search_runs(
            [experiment_id], max_results=1,
            filter_string=f"tags.`sm_pytest.fingerprint` = '{fingerprint}'"
                          f" and tags.`sm_pytest.kind` = '{ITEM}'")
        return found[0].info.run_id if found else None

    def _log_item(self, experiment_id: str, parent: str, rec: RunRecord,
                  common: dict[str, str], log_models: bool) -> str:
        repeats = rec.repeats if len(rec.repeats) > 1 and not rec.trials else []
        item_id = self._create(
            experiment_id, start_time=_ms(rec.started_at), run_name=rec.name,
            tags={**common, PARENT: parent, **_outcome_tags(rec, ITEM), **_item_tags(rec)})
        if rec.trials:
            # The item holds the verdict and its best trial's finals; each trial is a run.
            self._send(item_id, params=_params(rec, rec.hyperparameters),
                       metrics=_finals(rec.final_metrics, rec.ended_at))
            for trial in rec.trials:
                self._log_trial(experiment_id, item_id, rec, trial, common, log_models)
        elif repeats:
            # The item holds the verdict and the mean finals; each repeat its own series.
            self._send(item_id, params=_params(rec, rec.hyperparameters),
                       metrics=_finals(rec.final_metrics, rec.ended_at))
            for number, repeat in enumerate(repeats, 1):
                if not repeat.cached:
                    self._log_repeat(experiment_id, item_id, rec, repeat, number, common,
                                     log_models)
        else:
            self._log_training(item_id, rec, rec.repeats[0] if rec.repeats else rec,
                               log_models)
        self.client.set_terminated(item_id, status=mlflow_status(rec.status),
                                   end_time=_ms(rec.ended_at))
        return item_id

    def _log_repeat(self, experiment_id: str, item_id: str, rec: RunRecord,
                    repeat: RepeatRecord, number: int, common: dict[str, str],
                    log_models: bool) -> None:
        self._log_child(experiment_id, rec, repeat, f"{rec.name} repeat {number}",
                        {**common, PARENT: item_id, "sm_pytest.repeat": str(number),
                         **_outcome_tags(repeat, REPEAT)}, log_models)

    def _log_trial(self, experiment_id: str, item_id: str, rec: RunRecord,
                   trial: TrialRecord, common: dict[str, str], log_models: bool) -> None:
        self._log_child(experiment_id, rec, trial, f"{rec.name} trial {trial.number}",
                        {**common, PARENT: item_id, **_outcome_tags(trial, TRIAL),
                         "sm_pytest.trial": str(trial.number),
                         "sm_pytest.best": str(trial.best).lower(),
                         "sm_pytest.stopped_early": str(trial.stopped_early).lower()},
                        log_models)

    def _log_child(self, experiment_id: str, rec: RunRecord, run: RepeatRecord | TrialRecord,
                   name: str, tags: dict[str, str], log_models: bool) -> None:
        run_id = self._create(experiment_id, start_time=_ms(run.started_at), run_name=name,
                              tags=tags)
        self._log_training(run_id, rec, run, log_models)
        self.client.set_terminated(run_id, status=mlflow_status(run.status),
                                   end_time=_ms(run.ended_at))

    def _log_training(self, run_id: str, rec: RunRecord,
                      run: RunRecord | RepeatRecord | TrialRecord, log_models: bool) -> None:
        """Params, every metric step and the attempt folder's files of one training."""
        metrics = [(name, step, value, run.ended_at)
                   for name, values in run.metric_series.items()
                   for step, value in enumerate(values)]
        metrics += _finals({k: v for k, v in run.final_metrics.items()
                            if k not in run.metric_series}, run.ended_at)
        self._send(run_id, params=_params(rec, run.hyperparameters), metrics=metrics)
        folder = Path(run.artifact_dir) if run.artifact_dir else None
        if folder is None or not folder.is_dir():
            return
        for name in ARTIFACT_FILES:
            if (folder / name).is_file():
                self.client.log_artifact(run_id, str(folder / name))
        model = Path(run.model_dir) if run.model_dir else None
        if log_models and model is not None and model.is_dir() and any(model.iterdir()):
            self.client.log_artifacts(run_id, str(model), artifact_path="model")

    def _delete_earlier(self, experiment_id: str, key: str) -> None:
        for run in self.client.search_runs(
                [experiment_id], filter_string=f"tags.`sm_pytest.record` = '{key}'"):
            self.client.delete_run(run.info.run_id)

    # -- batches within MLflow's limits ----------------------------------------------------

    def _send(self, run_id: str, *, params: dict[str, str] | None = None,
              metrics: Iterable[tuple[str, int, float, float]] = (),
              tags: dict[str, str] | None = None) -> None:
        """log_batch calls that each stay within MLflow's per-call limits (100 params or
        tags, 1000 metrics, 1000 entities), with values cut to the longest MLflow keeps."""
        from mlflow.entities import Metric, Param, RunTag

        limits = self._limits
        keyed = [Param(_key(k), _cut(v, limits.MAX_PARAM_VAL_LENGTH))
                 for k, v in (params or {}).items()]
        labels = [RunTag(_key(k), _cut(v, limits.MAX_TAG_VAL_LENGTH))
                  for k, v in (tags or {}).items()]
        for chunk in _chunks(keyed, limits.MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=chunk)
        for chunk in _chunks(labels, limits.MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=chunk)
        points = [Metric(_key(name), float(value), _ms(at), step)
                  for name, step, value, at in metrics]
        per_call = min(limits.MAX_METRICS_PER_BATCH, limits.MAX_ENTITIES_PER_BATCH)
        for chunk in _chunks(points, per_call):
            self.client.log_batch(run_id, metrics=chunk)


def _chunks(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _key(name: str) -> str:
    """MLflow keys allow letters, digits, `_ - . / :` and spaces, 250 characters at most."""
    return "".join(c if c.isalnum() or c in "_-./: " else "_" for c in str(name))[:250]


def _text(value: Any) -> str:
    """A param or tag value as MLflow keeps it: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _cut(value: Any, limit: int) -> str:
    text = _text(value)
    return text if len(text) <= limit else text[:limit - 12] + " [cut short]"


def _params(rec: RunRecord, hyperparameters: dict[str, Any]) -> dict[str, str]:
    """The resolved hyperparameters, then where the run ran (under the names of
    _PLACEMENT, or `sm_pytest.<name>` if a hyperparameter has that name already)."""
    params = {key: _text(value) for key, value in hyperparameters.items()}
    placement = {"backend": rec.backend, "instance_type": rec.instance_type,
                 "instance_count": str(rec.instance_count)}
    for name in _PLACEMENT:
        params[name if name not in params else f"sm_pytest.{name}"] = placement[name]
    return params


def _finals(finals: dict[str, float], at: float) -> list[tuple[str, int, float, float]]:
    return [(name, 0, value, at) for name, value in finals.items()]


def _outcome_tags(run: RunRecord | RepeatRecord | TrialRecord, kind: str) -> dict[str, str]:
    tags = {"sm_pytest.kind": kind, "sm_pytest.status": run.status}
    if run.failure_reason:
        tags["sm_pytest.failure_reason"] = run.failure_reason
    if run.job_name:
        tags["sm_pytest.job_name"] = run.job_name
    if getattr(run, "fingerprint", ""):  # a trial has its search's, on the item
        tags["sm_pytest.fingerprint"] = run.fingerprint
    return tags


def _item_tags(rec: RunRecord) -> dict[str, str]:
    tags = {"sm_pytest.verdict": rec.verdict, "sm_pytest.experiment_file": rec.path}
    if rec.run_id:
        tags["sm_pytest.run_id"] = rec.run_id
    if rec.swept:
        tags["sm_pytest.swept"] = json.dumps(rec.swept)
    if rec.checks:
        tags["sm_pytest.checks"] = "; ".join(
            f"{c.metric} {c.threshold}: {'n/a' if c.actual is None else f'{c.actual:.6g}'}"
            f" ({'pass' if c.passed else 'fail'})" for c in rec.checks)
    if rec.gate_message:
        tags["sm_pytest.baseline"] = rec.gate_message
    cached = [str(n) for n, r in enumerate(rec.repeats, 1) if r.cached]
    if cached and len(rec.repeats) > 1:
        tags["sm_pytest.cached_repeats"] = ", ".join(cached)
    # MLflow's own note, shown on the run's page.
    reason = rec.failure_reason or next((f"{c.metric} {c.threshold} failed: it was"
                                         f" {c.actual}" for c in rec.checks if not c.passed), "")
    if reason:
        tags["mlflow.note.content"] = reason
    return tags


def _file_tags(rec: RunRecord, common: dict[str, str]) -> dict[str, str]:
    tags = {"sm_pytest.experiment_file": rec.path}
    if rec.description:
        tags["mlflow.note.content"] = rec.description
    if "mlflow.source.git.commit" in common:
        tags["mlflow.source.git.commit"] = common["mlflow.source.git.commit"]
    return tags


def history_frame(uri: str, experiment: str):
    """Every run of MLflow experiment `experiment`, one row each (pandas, from
    mlflow.search_runs), oldest first, with the names a person reads first."""
    from sm_pytest.store.mlflow_setup import make_client

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):].split("?")[0]).is_file():
        raise LookupError(f"{uri} does not exist: there is no history in it")
    client = make_client(uri)  # with sm-pytest's bounded retries
    names = [experiment, experiment.replace("-", "_")]  # `lr-sweep` names lr_sweep's too
    found = next((e for e in map(client.get_experiment_by_name, dict.fromkeys(names)) if e),
                 None)
    if found is None:
        known = sorted(e.name for e in client.search_experiments(max_results=20))
        raise LookupError(f"MLflow at {uri} has no experiment {experiment!r}; it has"
                          f" {', '.join(known) or 'none'}")
    import mlflow

    from sm_pytest.store.mlflow_setup import use_process_tracking_uri

    use_process_tracking_uri(uri)  # search_runs reads the process's tracking URI
    frame = mlflow.search_runs(experiment_ids=[found.experiment_id], output_format="pandas")
    if frame.empty:
        return frame
    named = {"tags.mlflow.runName": "run", "tags.sm_pytest.kind": "kind",
             "tags.sm_pytest.verdict": "verdict", "tags.sm_pytest.session": "session"}
    frame = frame.rename(columns=named).sort_values("start_time")
    first = [c for c in ("run", "kind", "status", "verdict", "session", "start_time")
             if c in frame.columns]
    rest = [c for c in frame.columns if c.startswith(("metrics.", "params."))]
    return frame[first + rest + ["run_id"]]
