"""A `tune:` item on SageMaker: one hyperparameter tuning job, whose trials the service
chooses, runs and stops early. sm-pytest launches it, prints its progress, and fetches each
trial as it ends exactly as it fetches any training job (a trial is one): its CloudWatch log,
model.tar.gz and output.tar.gz into the trial's own attempt folder (``<run>-trial007``).
While a trial runs, its live metric lines are printed as a job's are (the backend follows its
CloudWatch log through the metric definitions).

A trial the service stopped while nobody asked it to (no Stop from this session) was stopped by
early stopping (``early_stopping: Auto``, or Hyperband's own): the service's summaries have no
member that says so, and a Stopped trial of a tuning job this session did not stop is one.

The search's own attempt folder (``<run>/attempt-NNNN``) keeps what the tuning job was asked
(request.json: the CreateHyperParameterTuningJob request) and what it answered last
(describe.json).

SageMaker Experiments: a tuning job's training job definition carries no ExperimentConfig (the
service files the trials in an experiment of the tuning job's own), so each trial becomes a Run
of the file's experiment once it is fetched (sagemaker/experiments.py, record_trial), with its
job's own trial component associated with the run group. The search itself is no Run: its
trials are.

Imported only with --sm, as backends/sagemaker.py is.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sm_pytest.backends import runner
from sm_pytest.backends.sagemaker import JobHandle, SageMakerBackend, backoff_delays
from sm_pytest.model import (
    INTERRUPTED,
    STOPPED,
    RunInterrupted,
    RunResult,
    best_trial_number,
    interrupted_reason,
    objective_of,
)
from sm_pytest.run import signals
from sm_pytest.run.artifacts import new_attempt_dir, write_json_atomic
from sm_pytest.sagemaker.aws import error_code
from sm_pytest.sagemaker.names import tuning_job_name
from sm_pytest.sagemaker.tuning import (
    TrialOutcome,
    TuningOutcome,
    list_trials,
    tuning_outcome,
    tuning_request,
)
from sm_pytest.spec.experiment_file import RunSpec

TICK_S = 0.5  # how often the waiting thread flushes progress and looks for a signal
GIVE_UP_AFTER = 5  # failed polls in a row (throttling aside) that end the waiting
_ENDED = ("Completed", "Failed", "Stopped")
_RETRYABLE = {"ThrottlingException", "Throttling", "TooManyRequestsException"}
_LEFT_RUNNING = ("this session ended before the tuning job did, and stopped it; train.log"
                 " holds the trial's log up to then")


class SearchRefused(ValueError):
    """A `tune:` item that cannot run as a tuning job with these settings; says why."""


@dataclass
class SageMakerTrial:
    """One trial of a tuning job: a training job the service launched (model.TrialSource)."""

    number: int
    values: dict[str, Any]
    run: RunSpec
    job_name: str
    result: RunResult | None = None
    objective: float | None = None
    stopped_early: bool = False


@dataclass
class TuningSearch:
    """One tuning job of this session: launched on a launching thread, awaited by wait(),
    stopped by stop() (also through the backend's stop_all), and whatever it left fetched by
    leftovers() when nobody waited for it."""

    backend: SageMakerBackend
    run: RunSpec
    artifacts_root: Path
    attempt_dir: Path
    name: str
    # Shared with the session's Pending: the trials fetched so far, in trial-number order.
    trials: list[SageMakerTrial] = field(default_factory=list)
    result: RunResult | None = None  # the item's (best trial's), once nothing runs any more
    error: str = ""  # why the search itself failed, or never launched
    launched: bool = False
    stop_requested: bool = False
    outcome: TuningOutcome | None = None
    _launch_ended: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _shown: tuple = ()
    _failures: int = 0  # polls in a row that failed
    # Trial job name -> the handle its live log is followed with, while it runs; None once
    # following failed (the trials are still fetched whole as they end).
    _live: dict[str, JobHandle] | None = field(default_factory=dict)
    _recorded: set[str] = field(default_factory=set)  # trial jobs recorded in Experiments

    # -- launching --------------------------------------------------------------------------

    def launch(self) -> None:
        try:
            self._launch()
        except Exception as exc:  # never leave wait() hanging on a dead launch
            self.error = self.error or f"could not launch the tuning job: {exc}"
            self._say(self.error)
        finally:
            self._launch_ended.set()

    def _launch(self) -> None:
        backend, run = self.backend, self.run
        settings = backend.settings_for(run)
        try:
            # The trials' definition is the item's own job request, named after the search
            # (its checkpoint path and sagemaker_job_name).
            training, warnings = backend.training_request(run, settings, self.name)
            request = tuning_request(run.tune, training, self.name)
        except Exception as exc:
            self.error = f"could not prepare the tuning job: {exc}"
            self._say(self.error)
            return
        for warning in warnings:
            self._say(f"warning: {run.name}: {warning}")
        write_json_atomic(self.attempt_dir / "request.json", request)
        for delay in [*backoff_delays(), None]:
            if self.stop_requested:
                self.error = "stopped before it was launched"
                return
            try:
                backend.sm.create_hyper_parameter_tuning_job(**request)
                break
            except Exception as exc:
                if error_code(exc) in _RETRYABLE and delay is not None:
                    self._say(f"{self.name}: {error_code(exc)}, retrying in {delay:.1f} s")
                    backend.sleep(delay)
                    continue
                self.error = f"CreateHyperParameterTuningJob failed: {exc}"
                self._say(self.error)
                return
        with self._lock:
            self.launched = True
            stop_now = self.stop_requested
        tune = run.tune
        self._say(f"{self.name}: launched ({run.name}, tuning job, {tune.strategy},"
                  f" {tune.max_jobs} trials, {tune.max_parallel_jobs} at a time,"
                  f" {settings.instance_type})")
        if stop_now:  # a stop arrived while CreateHyperParameterTuningJob was in flight
            self._stop_launched()

    # -- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """StopHyperParameterTuningJob, once; the service stops its running trials."""
        with self._lock:
            if self.stop_requested or self.result is not None:
                return
            self.stop_requested = True
            launched = self.launched
        if launched:
            self._stop_launched()
        # not launched yet: the launch sees stop_requested, and stops it if it got that far

    def _stop_launched(self) -> None:
        if self.outcome is not None and self.outcome.finished:
            return
        try:
            self.backend.sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=self.name)
        except Exception as exc:  # it may have ended meanwhile
            self._say(f"could not stop {self.name}: {exc}")
            return
        self.backend.stopped.append(self.name)

    # -- waiting ----------------------------------------------------------------------------

    def wait(self) -> list[SageMakerTrial]:
        """Every trial, fetched, once the tuning job has ended. A Ctrl-C or SIGTERM stops the
        tuning job and raises RunInterrupted carrying every trial so far (`.trials`), the
        running ones INTERRUPTED with their logs up to then."""
        backend = self.backend
        try:
            with signals.interruptible():
                while not self._launch_ended.wait(timeout=TICK_S):
                    backend.tick()
                next_poll = 0.0
                while self.launched:
                    if time.monotonic() >= next_poll:
                        with signals.deferred():  # a fetch is never cut half-way
                            following = self._follow()
                        if not following:
                            break
                        next_poll = time.monotonic() + backend.poll_interval
                        if self.outcome is not None and self.outcome.finished:
                            break
                    backend.tick()
                    if signals.received():
                        raise signals.interrupt(signals.received())
                    time.sleep(TICK_S)
            backend.tick()
        except KeyboardInterrupt as exc:
            raise self._interrupted(exc) from None
        self._settle()
        return self.trials

    def _interrupted(self, exc: KeyboardInterrupt) -> KeyboardInterrupt:
        backend = self.backend
        with signals.deferred():
            backend.stop_all()  # as a job's wait does: nothing this session runs goes on
            try:
                self._poll(finishing=interrupted_reason(exc))
            except Exception as error:
                self._say(f"{self.name}: could not fetch its trials: {error}")
            backend.tick()
        results = [t.result for t in self.trials if t.result is not None]
        if not results:
            return exc
        self._settle()
        reason = interrupted_reason(exc)
        shown = dataclasses.replace(self.result, status=INTERRUPTED, failure_reason=reason)
        failure = RunInterrupted(shown, results, message=reason)
        failure.trials = self.trials
        return failure

    def leftovers(self) -> list[RunResult]:
        """What a search nobody waited for left (the session ended by -x, Ctrl-C or a
        timeout): each trial fetched, those still running as Stopped with their logs so
        far. For the caller to save; call after stop()."""
        if not self.launched or self.result is not None:
            return []
        fetched = {t.job_name for t in self.trials}
        self._poll(finishing=_LEFT_RUNNING, save=False)
        self._settle()
        return [t.result for t in self.trials if t.job_name not in fetched and t.result]

    def _follow(self) -> bool:
        """One poll; False once the tuning job could not be described too often in a row
        (it is stopped then: nobody would see what it does)."""
        try:
            self._poll()
        except Exception as exc:
            if error_code(exc) in _RETRYABLE:
                return True
            self._failures += 1
            self._say(f"{self.name}: could not follow the tuning job: {exc}")
            if self._failures < GIVE_UP_AFTER:
                return True
            self.error = f"could not follow tuning job {self.name}, so it was stopped: {exc}"
            self.stop()
            return False
        self._failures = 0
        return True

    def _poll(self, finishing: str = "", save: bool = True) -> None:
        """Describe the tuning job and its trials, say how it stands when that changed,
        and fetch each trial that ended since. `finishing`: the session is ending; fetch
        the running trials too, with this reason."""
        sm = self.backend.sm
        describe = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=self.name)
        outcome = tuning_outcome(describe, list_trials(sm, self.name))
        self.outcome = outcome
        shown = (outcome.status, outcome.progress())
        if shown != self._shown:
            self._shown = shown
            self._say(f"{self.name}: {outcome.status}: {outcome.progress()}")
        fetched = {t.job_name for t in self.trials}
        for index, trial in enumerate(outcome.trials, 1):
            if trial.name in fetched:
                continue
            ended = trial.status in _ENDED
            if not finishing and (ended or trial.status == "InProgress"):
                self._follow_log(trial, index, ended)
            if ended or finishing:
                self.trials.append(self._fetch(trial, index, finishing, save))
        self.trials.sort(key=lambda t: t.number)
        if outcome.finished or finishing:
            write_json_atomic(self.attempt_dir / "describe.json", describe)

    def _follow_log(self, outcome: TrialOutcome, index: int, ended: bool) -> None:
        """The trial's new live metric lines, printed as a job's are (its last ones once it
        ended), by the backend's own SageMakerBackend.follow_log."""
        if self._live is None:
            return
        handle = self._live.get(outcome.name)
        if handle is None:
            spec = self.run.trial(outcome.number or index, outcome.values)
            # Only its log is followed with it: the trial's attempt folder is made when the
            # trial is fetched (_fetch), so none is left empty by a trial never fetched.
            handle = JobHandle(spec, self.attempt_dir, self.backend.settings_for(self.run),
                               outcome.name, launched=True, claimed=True,
                               status=outcome.status)
            self._live[outcome.name] = handle
        try:
            self.backend.follow_log(handle, ended=ended)
        except Exception as exc:  # live lines are a courtesy: they never cost a trial's fetch
            self._live = None
            self._say(f"{self.name}: no live lines for its trials: {exc}")
            return
        if ended:
            del self._live[outcome.name]

    def _fetch(self, outcome: TrialOutcome, index: int, finishing: str,
               save: bool) -> SageMakerTrial:
        number = outcome.number or index
        spec = self.run.trial(number, outcome.values)
        attempt = new_attempt_dir(self.artifacts_root, spec.experiment, spec.folder)
        backend = self.backend
        # request=None: collect finishes no Run; the trial's is recorded whole below.
        handle = JobHandle(spec, attempt, backend.settings_for(self.run), outcome.name,
                           launched=True, claimed=True, status=outcome.status)
        try:
            handle.describe = backend.sm.describe_training_job(TrainingJobName=outcome.name)
            handle.status = handle.describe["TrainingJobStatus"]
        except Exception as exc:
            handle.error = f"could not describe the trial's training job: {exc}"
        still_running = handle.status not in _ENDED
        if still_running:
            handle.status = "Stopped"
        result = backend.collect(handle)
        trial = SageMakerTrial(number, dict(outcome.values), spec, outcome.name)
        tune = self.run.tune
        # Running when the session stopped the tuning job: it may have stopped already.
        ended_by_us = still_running or (self.stop_requested and result.status == STOPPED)
        if finishing and ended_by_us:
            status = INTERRUPTED if finishing != _LEFT_RUNNING else STOPPED
            result = dataclasses.replace(result, status=status, failure_reason=finishing)
        elif (result.status == STOPPED and not self.stop_requested
              and (tune.early_stopping == "Auto" or tune.strategy == "Hyperband")):
            trial.stopped_early = True
            result = dataclasses.replace(
                result, failure_reason="the tuning job stopped it early (early stopping)")
        trial.result = result
        trial.objective = objective_of(result, tune.objective_metric)
        if backend.experiments is not None and outcome.name not in self._recorded:
            # Once: a trial fetched again (its save failed) is not a second Run.
            self._recorded.add(outcome.name)
            with signals.deferred():  # a Run is never left half-made
                backend.experiments.record_trial(spec, result)
        if save:
            with signals.deferred():
                runner.save(result)
        return trial

    def failure(self) -> str:
        """Why the search left no trial."""
        if self.error:
            return self.error
        status = self.outcome.status if self.outcome is not None else "unknown"
        reason = self.outcome.failure_reason if self.outcome is not None else None
        return (f"tuning job {self.name} ended {status} without a trial"
                + (f": {reason}" if reason else ""))

    def _settle(self) -> None:
        """The item's result: its best trial's, else its first trial's."""
        if not self.trials:
            return
        best = best_trial_number(self.trials, self.run.tune)
        chosen = next((t for t in self.trials if t.number == best), self.trials[0])
        self.result = chosen.result

    def _say(self, line: str) -> None:
        self.backend.progress(line.rstrip("\n") + "\n")


def submit_search(backend: SageMakerBackend, run: RunSpec, artifacts_root: Path
                  ) -> TuningSearch:
    """Launch `run`'s search as a tuning job now (on a launching thread, as jobs are
    launched); wait() on what it returns."""
    settings = backend.settings_for(run)
    if settings.spot:
        # Every trial gets the same CheckpointConfig (one training job definition for all)
        # and the service does not make its S3 path unique per trial: spot trials would
        # resume from each other's checkpoints.
        where = settings.sources.get("spot", "--spot")
        raise SearchRefused(
            f"{run.path}:{run.line}: a tune: item cannot run on spot capacity (spot from"
            f" {where}): all trials of a tuning job share one checkpoint S3 path, so an"
            " interrupted trial would resume from another trial's checkpoint. Run it"
            " on-demand (without --spot, or spot: false in its sagemaker: block), or"
            f" deselect it with -k 'not {run.experiment}'")
    name = tuning_job_name(run, f"{backend.token}{len(backend.searches):03d}")
    attempt = new_attempt_dir(artifacts_root, run.experiment, run.folder)
    search = TuningSearch(backend, run, artifacts_root, attempt, name)
    backend.searches.append(search)
    backend.launch_soon(search.launch)
    return search
