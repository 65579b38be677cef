"""Per-pytest-session state and the life of one item's runs: repeats, the run cache,
submission and waiting. The pytest hooks in plugin.py stay thin on top of this."""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sm_pytest.backends import runner
from sm_pytest.model import (
    COMPLETED,
    FAILED,
    INTERRUPTED,
    PASS,
    RunInterrupted,
    RunRecord,
    RunResult,
    RunSetupError,
    best_result,
    finals_per_metric,
    never_ran,
)
from sm_pytest.run import signals
from sm_pytest.run.artifacts import run_dir_of
from sm_pytest.spec.experiment_file import RunSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from sm_pytest.store.tracker import Tracker

_SUFFIXES = {".yaml", ".yml"}


def configured_path(config: pytest.Config, name: str) -> Path:
    """A folder given by option `name` or, failing that, by the ini value of the same name.
    An option is relative to the directory pytest was invoked from, as any command-line path
    is (pytest's own --junitxml, --basetemp); an ini value is relative to the rootdir, so that
    the ini file means the same wherever pytest is started."""
    option = config.getoption(name)
    if option:
        return (Path(config.invocation_params.dir) / option).resolve()
    return (config.rootpath / config.getini(name)).resolve()


def mlflow_uri(config: pytest.Config) -> str:
    """The MLflow tracking URI of --sm-mlflow, else of ini sm_mlflow_uri, checked; "" when
    neither is given."""
    option = config.getoption("sm_mlflow")
    raw = option or config.getini("sm_mlflow_uri")
    if not raw:
        return ""
    from sm_pytest.store.mlflow_setup import MlflowSetupError, check_uri

    try:
        if option:
            return check_uri(option, base=Path(config.invocation_params.dir))
        return check_uri(raw, origin=f"ini sm_mlflow_uri in {config.inipath}",
                         base=config.rootpath)
    except MlflowSetupError as exc:
        raise pytest.UsageError(f"nothing was run: {exc}") from None


def _shown(path: Path) -> str:
    """`path` relative to the current folder when it is inside it, as a user types it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclasses.dataclass
class Pending:
    """One repeat of an item: launched (handle) or taken from the run cache (cached)."""

    run: RunSpec
    fingerprint: str = ""
    parts: dict[str, str] = dataclasses.field(default_factory=dict)
    handle: Any = None
    cached: RunResult | None = None
    miss: str = ""
    trials: list = dataclasses.field(default_factory=list)  # a search's (local_tuning.Trial)

    @property
    def cache_name(self) -> str:
        """The run cache's name for this repeat: one per artifacts folder. The tracking
        store knows the run by its item's name (run.name) instead."""
        return f"{self.run.experiment}/{self.run.folder}"

    def result_left(self) -> RunResult | None:
        """What this launched repeat left: its cached result, or its job's once collected."""
        return self.cached if self.cached is not None else getattr(self.handle, "result", None)


class SmSession:
    """Where artifacts go, the backend, the gate, the cache, and the collected records."""

    def __init__(self, config: pytest.Config, sagemaker_factory, *,
                 progress: Callable[[str], None] | None = None):
        self.config = config
        # Where live metric lines go (the glue's terminal), None when nobody would see them.
        self.progress = progress
        self.artifacts_root = configured_path(config, "sm_artifacts")
        self.experiment_dirs = [(config.rootpath / p).resolve()
                                for p in config.getini("sm_experiment_paths")]
        self.session_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.records: list[RunRecord] = []
        self.notices: list[str] = []  # printed after the summary table (Recorder)
        self.pool_facts: dict[str, dict] = {}  # job -> its warm pool's end (take_pool_news)
        self.experiment_files: dict[str, Path] = {}  # name -> the file that claimed it
        # The tracking store and the run cache share one SQLite file (store/sqlite.py).
        self.tracking_db = self.artifacts_root / "tracking.sqlite"
        self._backend = None
        self._trackers: list[Tracker] | None = None
        self._cache = None
        self.reuse = bool(config.getoption("sm_reuse")) and not config.getoption("sm_rerun")
        # --sm-plan: the plan is printed at collection and nothing is launched (an xdist
        # worker never plans: the controller refuses --sm-plan with -n).
        self.plan_only = bool(config.getoption("sm_plan")) and not hasattr(config, "workerinput")
        # Checked here, so that a wrong URI or a missing extra stops the session before
        # anything runs; only the controller tracks (xdist workers send it their records).
        self.mlflow_uri = "" if hasattr(config, "workerinput") else mlflow_uri(config)
        self.sagemaker = None
        if config.getoption("sm"):
            self.sagemaker = sagemaker_factory(config, self.session_id)
        elif config.getoption("spot") or config.getoption("sm_emulate"):
            raise pytest.UsageError("--spot and --sm-emulate go with --sm")
        self.baselines_dir = configured_path(config, "sm_baselines_dir")
        self.save_baseline = config.getoption("sm_save_baseline")
        self.save_baseline_force = config.getoption("sm_save_baseline_force")
        if self.save_baseline_force and not self.save_baseline:
            raise pytest.UsageError("--sm-save-baseline-force goes with --sm-save-baseline NAME")
        self.gate = None
        compare_with = config.getoption("sm_baseline")
        if config.getoption("sm_baseline_strict") and not compare_with:
            raise pytest.UsageError("--sm-baseline-strict goes with --sm-baseline NAME")
        if compare_with or self.save_baseline:
            from sm_pytest.gating import baselines
            from sm_pytest.gating.gate import Gate

            # Both files are read before anything runs: a bad name or a broken file is one
            # clear error now, not a lost save after an hour of training.
            try:
                if compare_with:
                    self.gate = Gate(self.baselines_dir, compare_with,
                                     strict=config.getoption("sm_baseline_strict"))
                if self.save_baseline:
                    baselines.load(self.baselines_dir, self.save_baseline)
            except baselines.BaselineError as exc:
                raise pytest.UsageError(str(exc)) from None

    # -- backends --------------------------------------------------------------------------

    @property
    def backend(self):
        """Where this session's runs go. With --sm, start_sagemaker() makes it once the runs'
        settings are checked: asked for before that, it is an error, never a local backend."""
        if self._backend is None:
            if self.sagemaker is not None:
                raise RuntimeError("the SageMaker backend was asked for before"
                                   " start_sagemaker() started it")
            self._backend = self._choose_backend([])
        return self._backend

    def _choose_backend(self, repeats: list[RunSpec]):
        from sm_pytest.backends.choose import choose_backend

        streaming = self.config.getoption("capture", "fd") == "no"
        return choose_backend(self.sagemaker, repeats,
                              echo=sys.stdout.write if streaming else None,
                              progress=self.progress)

    def start_sagemaker(self, runs: list[RunSpec]) -> None:
        """--sm: check every setting and the Experiments limit before anything launches."""
        from sm_pytest.sagemaker.experiments import ExperimentLimitError
        from sm_pytest.sagemaker.settings import SettingsError

        repeats = [repeat for run in runs for repeat in run.repeats()]
        try:
            self.sagemaker.check(repeats)
            self._backend = self._choose_backend(repeats)
        except (SettingsError, ExperimentLimitError) as exc:
            raise pytest.UsageError(f"nothing was launched: {exc}") from None
        except ImportError as exc:
            raise pytest.UsageError(f"nothing was launched: --sm needs the SageMaker extra"
                                    f" (pip install 'sm-pytest[sagemaker]'): {exc}") from None
        except Exception as exc:  # credentials, network, permissions: say it plainly
            raise pytest.UsageError(f"nothing was launched: {type(exc).__name__}: {exc}"
                                    ) from None

    def backend_settings(self, run: RunSpec) -> tuple[str, dict]:
        from sm_pytest.backends.choose import backend_settings

        return backend_settings(self.sagemaker, run)

    # -- one item's runs -------------------------------------------------------------------

    @property
    def cache(self):
        if self._cache is None:
            from sm_pytest.store.run_cache import RunCache

            self._cache = RunCache(self.tracking_db)
        return self._cache

    def fingerprint(self, run: RunSpec) -> tuple[str, dict[str, str]]:
        """The run cache key of one repeat, and its parts (to say why a lookup missed)."""
        from sm_pytest.run.fingerprint import digest_parts, fingerprint_parts

        backend_name, settings = self.backend_settings(run)
        parts = fingerprint_parts(run, backend=backend_name, backend_settings=settings)
        return digest_parts(parts), parts

    def start(self, run: RunSpec) -> list[Pending]:
        """Prepare every repeat of `run`: take it from the cache with --sm-reuse, else launch
        it now on SageMaker (jobs run side by side); local repeats start in finish(), one
        after another, so they neither compete for the machine nor outlive a Ctrl-C."""
        if run.tune is not None:
            return [self._start_search(run)]
        pendings = []
        for repeat in run.repeats():
            pending = Pending(repeat, *self.fingerprint(repeat))
            if self.reuse:
                hit = self.cache.lookup(pending.fingerprint)
                if hit is not None:
                    pending.cached = hit.run_result()
                else:
                    pending.miss = self.cache.explain_miss(pending.parts, pending.cache_name,
                                                           item_name=repeat.name)
            if pending.cached is None and self.sagemaker is not None:
                pending.handle = runner.submit(repeat, self.backend, self.artifacts_root)
            pendings.append(pending)
        return pendings

    def _start_search(self, run: RunSpec) -> Pending:
        """A `tune:` item. With --sm-reuse an unchanged search is taken back whole. With
        --sm its tuning job is launched now, like any job; on this machine its trials are
        chosen as they run, so they start in finish()."""
        pending = Pending(run, *self.fingerprint(run))
        if self.reuse and self._reuse_search(pending):
            return pending
        if self.sagemaker is not None:
            from sm_pytest.backends.sagemaker_tuning import submit_search

            pending.handle = submit_search(self.backend, run, self.artifacts_root)
            # The same list: a search that nobody waits for still leaves its trials
            # (SageMakerHooks settles the item with them at the end).
            pending.trials = pending.handle.trials
        return pending

    def _reuse_search(self, pending: Pending) -> bool:
        """Whether the run cache has this search (its best trial, whose search.json lists
        the others): then `pending` holds it, else why not."""
        from sm_pytest.run.search_file import read_search

        hit = self.cache.lookup(pending.fingerprint)
        trials = read_search(hit.result_path, pending.run) if hit is not None else None
        if trials is None:
            pending.miss = ("its search.json is gone or unreadable" if hit is not None else
                            self.cache.explain_miss(pending.parts, pending.cache_name,
                                                    item_name=pending.run.name))
            return False
        pending.cached, pending.trials = hit.run_result(), trials
        return True

    def _search(self, pending: Pending) -> list[RunResult]:
        """Every trial's result, in the order they started (pending.trials has the rest).
        A search that found a best trial leaves search.json beside it, for --sm-reuse."""
        if pending.cached is not None:
            return [trial.result for trial in pending.trials]
        results = self._run_search(pending)
        best = aggregate(results, pending.run)
        if pending.trials and best.ok:
            from sm_pytest.run.search_file import write_search

            write_search(best, pending.trials)
        return results

    def _run_search(self, pending: Pending) -> list[RunResult]:
        if pending.handle is not None:  # a SageMaker tuning job, launched at start
            search = pending.handle
            trials = search.wait()  # RunInterrupted carries pending.trials, the same list
            if not trials:
                return [never_ran(search.failure(), search.attempt_dir, backend="sagemaker")]
            return [trial.result for trial in trials]
        from sm_pytest.backends.local_tuning import run_search
        from sm_pytest.backends.searchers import SearchSetupError

        try:
            pending.trials = run_search(pending.run, self.backend, self.artifacts_root)
        except SearchSetupError as exc:
            return [never_ran(str(exc), run_dir_of(self.artifacts_root, pending.run.experiment,
                                                   pending.run.folder),
                              backend=self.backend.name)]
        except RunInterrupted as exc:
            pending.trials = getattr(exc, "trials", [])
            raise
        return [trial.result for trial in pending.trials]

    def finish(self, pendings: list[Pending]) -> list[RunResult]:
        """Every repeat's result. A repeat that cannot start is a result too (never_ran),
        so the repeats before it keep theirs; an interrupt carries them all (RunInterrupted).
        A signal noted as one repeat ended starts no other (signals.py)."""
        if pendings and pendings[0].run.tune is not None:
            return self._search(pendings[0])
        results = []
        for number, pending in enumerate(pendings, 1):
            if pending.cached is not None:
                results.append(pending.cached)
                continue
            if signals.received():
                self._stop_before(number, len(pendings), results)
            try:
                if pending.handle is None:
                    pending.handle = runner.submit(pending.run, self.backend,
                                                   self.artifacts_root)
                results.append(runner.finish(self.backend, pending.handle))
            except RunSetupError as exc:
                results.append(never_ran(str(exc), run_dir_of(
                    self.artifacts_root, pending.run.experiment, pending.run.folder),
                    backend=self.backend.name))
            except RunInterrupted as exc:
                exc.results = [*results, exc.result]
                raise
            except KeyboardInterrupt:
                if results:  # a later repeat was being prepared: the earlier ones count
                    self._stop_before(number, len(pendings), results)
                raise
        return results

    @staticmethod
    def _stop_before(number: int, total: int, results: list[RunResult]) -> None:
        """Repeat `number` of `total` will not run: the item ends with those before it."""
        exc = signals.interrupt(signals.received())
        if not results:
            raise exc  # nothing ran: nothing to keep
        cause = str(exc) or "Ctrl-C"
        reason = (f"the session was interrupted ({cause}) after {number - 1} of {total}"
                  " repeats; their results are kept, the others never started")
        item = dataclasses.replace(results[-1], status=INTERRUPTED, failure_reason=reason)
        raise RunInterrupted(item, results, message=reason)

    # -- recording (controller only) -------------------------------------------------------

    @property
    def trackers(self) -> list[Tracker]:
        """Where finished items are recorded: the embedded store, always, and first, then
        MLflow with --sm-mlflow."""
        if self._trackers is None:
            from sm_pytest.store.tracking import LocalTracker

            self._trackers = [LocalTracker(self.tracking_db, self.session_id)]
            if self.mlflow_uri:
                from sm_pytest.store.mlflow_tracking import SYNC_COMMAND, MlflowTracker

                self._trackers.append(MlflowTracker(
                    self.mlflow_uri, self.session_id, self.tracking_db,
                    log_models=self.config.getini("sm_mlflow_log_models"),
                    rootdir=self.config.rootpath,
                    sync_hint=f"{SYNC_COMMAND} --artifacts {_shown(self.artifacts_root)}"))
        return self._trackers

    def close_trackers(self, *, interrupted: bool) -> None:
        """The end of the session, for every tracker that was used; what they say goes to
        the notices after the summary table."""
        if self._trackers is None:
            return
        for tracker in self._trackers:
            try:
                self.notices += tracker.close(interrupted=interrupted)
            except Exception as exc:
                self.notices.append(f"{type(tracker).__name__} could not finish:"
                                    f" {type(exc).__name__}: {exc}")

    def take_pool_news(self, facts: dict[str, dict], notes: list[str]) -> None:
        """What the SageMaker session (or an xdist worker's) learnt of its warm pools at the
        end: per job, what became of its pool (applied to the records for the summary), and
        the lines for the notes."""
        self.pool_facts.update(facts)
        self.notices += [note for note in notes if note not in self.notices]

    def record(self, rec: RunRecord) -> None:
        self.records.append(rec)
        self._remember(rec)  # before the trackers: a second Ctrl-C in one must not cost it
        for tracker in self.trackers:
            try:
                tracker.record(rec)
            except Exception as exc:
                # The run happened and its row is kept: a tracker's failure is said once at
                # the end, and neither the other trackers nor the run cache lose the run.
                self.notices.append(f"run {rec.name} was not tracked by"
                                    f" {type(tracker).__name__}: {type(exc).__name__}: {exc}")

    def _remember(self, rec: RunRecord) -> None:
        if rec.verdict == PASS:
            # Only runs that passed may be reused later (--sm-reuse). A search is kept by
            # its best trial (the only repeat of its record), whose search.json lists the
            # others; its fingerprint holds its tune: block.
            for repeat in rec.repeats:
                if not repeat.cached and repeat.status == COMPLETED:
                    self.cache.remember(repeat.fingerprint, repeat.parts, repeat.cache_name,
                                        Path(repeat.result_path))

    def is_experiment_file(self, path: Path) -> bool:
        """YAML under an experiment folder; `_name.yaml` files are left for shared `base:`
        configs kept beside the experiments."""
        path = path.resolve()
        return (path.suffix in _SUFFIXES and not path.name.startswith("_")
                and any(path.is_relative_to(d) for d in self.experiment_dirs))


def aggregate(results: list[RunResult], run: RunSpec | None = None) -> RunResult:
    """One result for an item: itself, or with `repeat` the first failure if any run
    failed, else the first run with every final metric averaged over the repeats. A search
    (`run.tune`): its best trial, else its first if none completed."""
    if run is not None and run.tune is not None and results:
        metric = run.tune.objective_metric
        best = best_result(results, run.tune)
        if best is not None:
            return best
        if results[0].ok:  # trials that completed, none with a value of the objective
            return dataclasses.replace(
                results[0], status=FAILED,
                failure_reason=f"no trial of the search reported its objective {metric!r}:"
                               f" check that the log prints it as the metric definition of"
                               f" {metric!r} expects")
        return results[0]
    if len(results) == 1:
        return results[0]
    for result in results:
        if not result.ok:
            return result
    mean = {metric: sum(values) / len(values)
            for metric, values in finals_per_metric(results).items()}
    first = results[0]
    return dataclasses.replace(first, final_metrics=mean,
                               started_at=min(r.started_at for r in results),
                               ended_at=max(r.ended_at for r in results))


# Set by plugin.pytest_configure; the nodes and every hook class reach their session by it.
SESSION = pytest.StashKey[SmSession]()
