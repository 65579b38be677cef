"""The collection nodes: an experiment file, and one item per run it declares.

Training happens in an item's setup, so a crash is reported as an error; the test itself
is the threshold and baseline check. The hooks that reach these nodes are in plugin.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sm_pytest import model
from sm_pytest.gating import checks
from sm_pytest.model import (
    ERROR,
    FAIL,
    PASS,
    RunInterrupted,
    RunResult,
    finals_per_metric,
    never_ran,
)
from sm_pytest.report.junit import junit_properties
from sm_pytest.run import contract, signals
from sm_pytest.run.artifacts import run_dir_of
from sm_pytest.run.contract import cpu_cores
from sm_pytest.sagemaker.names import experiment_name
from sm_pytest.session import SESSION, SmSession, aggregate
from sm_pytest.spec import yamlsafe
from sm_pytest.spec.experiment_file import RunSpec, load_experiment
from sm_pytest.spec.yamlsafe import YamlError

LATE_RECORDS = "sm_pytest_records"  # key in an xdist worker's workeroutput


class ExperimentFile(pytest.File):
    def collect(self):
        try:
            runs = load_experiment(self.path, self.config.rootpath)
        except YamlError as exc:
            raise self.CollectError(_describe(exc, self.config.rootpath)) from None
        self._claim_name()
        known = {line.split(":")[0].split("(")[0].strip()
                 for line in self.config.getini("markers")}
        for order, run in enumerate(runs):
            item = ExperimentItem.from_parent(self, name=run.name, run=run, order=order)
            for mark in run.marks:
                if mark not in known:
                    # Marks declared in experiment files are registered for the user, so
                    # --strict-markers and -m work without a separate ini entry.
                    self.config.addinivalue_line("markers", f"{mark}: declared in {self.path.name}")
                    known.add(mark)
                item.add_marker(mark)
            yield item

    def _claim_name(self) -> None:
        """Artifacts, baselines, the run cache and SageMaker Experiments are keyed by the
        file's name, so two files named alike would mix their results: refuse the second."""
        claimed = self.config.stash[SESSION].experiment_files
        mine = self.path.resolve()
        other = claimed.setdefault(experiment_name(self.path.stem), mine)
        if other != mine:
            root = self.config.rootpath
            alike = "" if other.stem == self.path.stem else (
                f" as {other.stem!r}: names are compared as SageMaker Experiments writes them,"
                " lower-case with '-' for other characters")
            raise self.CollectError(
                f"{_shown(self.path, root)}: the experiment name {self.path.stem!r} is taken by"
                f" {_shown(other, root)}{alike}. Runs are keyed by the file's name (artifact"
                " folders, baselines, SageMaker Experiments), so the two would mix their"
                " results; rename one of the files.")


def _shown(path: Path, rootpath: Path) -> Path:
    try:
        return path.resolve().relative_to(rootpath)
    except ValueError:
        return path


def _describe(exc: YamlError, rootpath: Path) -> str:
    shown = _shown(exc.path, rootpath)
    return f"{shown}:{exc.line}: {exc.message}" if exc.line else f"{shown}: {exc.message}"


def local_hosts_problem(run: RunSpec, rootpath: Path, *, emulated: bool = False,
                        cores: int | None = None, gpus: int | None = None) -> str | None:
    """Why `run` cannot have its hosts on this machine, or None. Each host is a training
    process that needs a core of its own (the CPU threads are divided among the hosts), so
    a run may have at most as many hosts as there are cores: 2 hosts on 2 cores is fine, 3
    are refused. Where there are GPUs, the local hosts divide them too (each its own
    CUDA_VISIBLE_DEVICES: contract.local_host_devices), so at most one host per GPU; with
    none visible (or CUDA_VISIBLE_DEVICES set to "") every host trains on the CPU. Only
    where the hosts run here: locally and with --sm-emulate."""
    if run.instance_count <= 1:
        return None
    cores = cpu_cores() if cores is None else cores
    gpus = contract.detect_num_gpus() if gpus is None else gpus
    few_cores = run.instance_count > cores
    if not few_cores and not 0 < gpus < run.instance_count:
        return None
    try:
        line = yamlsafe.load(run.path).lines.get(("instance_count",))
    except (OSError, YamlError):
        line = None
    where = f"{_shown(run.path, rootpath)}:{line}" if line else (
        f"{_shown(run.path, rootpath)} (instance_count from its base config)")
    runs_here = " (the emulator runs every host here too)" if emulated else ""
    on_sagemaker = f"Run it on SageMaker with --sm{' (without --sm-emulate)' if emulated else ''}"
    if few_cores:
        return (f"{where}: instance_count {run.instance_count} is more hosts than this machine"
                f" has CPU cores ({cores}): each local host{runs_here} is a training process"
                f" that needs at least one core of its own. {on_sagemaker}, or use at most"
                f" {cores} host{'s' if cores != 1 else ''}")
    return (f"{where}: instance_count {run.instance_count} is more hosts than this machine"
            f" has GPUs ({gpus}): each local host{runs_here} gets GPUs of its own (the"
            f" visible ones are divided among the hosts). {on_sagemaker}, use at most {gpus}"
            f" host{'s' if gpus != 1 else ''}, or set CUDA_VISIBLE_DEVICES= (empty) to train"
            " every host on the CPU")


class ThresholdsNotMet(Exception):
    pass


class ExperimentItem(pytest.Item):
    """One training run (or, with `repeat`, one per seed). Training happens in setup, so a
    crash is reported as an error; the test itself is the threshold and baseline check."""

    def __init__(self, *, run: RunSpec, order: int, **kwargs):
        super().__init__(**kwargs)
        self.run = run
        self.order = order
        self.pending = None  # set when launched ahead of its turn (--sm)
        self.results: list[RunResult] = []
        self.result: RunResult | None = None
        self.sm_record: model.RunRecord | None = None
        self.interrupted: RunInterrupted | None = None  # raised once its record is logged

    def setup(self) -> None:
        session = self.config.stash[SESSION]
        worker = hasattr(self.config, "workerinput")
        try:
            # Nothing is lost before a run starts: a signal while its runs are prepared
            # (hashed, looked up, launched) stops the session at once.
            with signals.interruptible():
                self._check_hosts(session)
                if self.pending is None:
                    if session.sagemaker is not None:
                        # pytest-xdist: planned for every item at collection; this launches
                        session.start_sagemaker([self.run])
                    self.pending = session.start(self.run)
        except (pytest.UsageError, ValueError) as exc:
            # Nothing was launched. ValueError: e.g. a value the fingerprint cannot hash,
            # phrased by its raiser.
            self.results = []
            self.result = never_ran(
                str(exc), run_dir_of(session.artifacts_root, self.run.experiment, self.run.folder),
                backend="local" if session.sagemaker is None else "sagemaker")
            self._finish(ERROR, [], None)
            pytest.fail(str(exc), pytrace=False)
        except KeyboardInterrupt:
            if not worker:
                raise
            self._not_started()
        try:
            self.results = session.finish(self.pending)
        except RunInterrupted as exc:
            # A run stopped midway, or a signal after a repeat that kept the others from
            # starting: an error with its rows, never judged on part of its runs. pytest
            # is interrupted once its record is logged (pytest_runtest_protocol).
            # (SageMaker jobs: SageMakerHooks, once stopped.)
            self.interrupted = exc
            self.results, self.result = exc.results, exc.result
            self._finish(ERROR, [], None)
        except KeyboardInterrupt:
            if not worker:
                raise
            if session.sagemaker is None:
                self._not_started()  # a local run that starts is a RunInterrupted above
            if not self._stop_in_worker(session):
                raise
            if not self.result.ok:
                pytest.fail(self.result.failure_reason, pytrace=False)
        if self.interrupted is not None:
            # Failed outside the except block, so the report is the reason alone, not the
            # reason twice with "During handling of the above exception".
            pytest.fail(self.result.failure_reason, pytrace=False)
        self.result = aggregate(self.results, self.run)
        if not self.result.ok:
            self._finish(ERROR, [], None)
            report = checks.crash_report(self.run.name, self.result)
            if self.run.tune is not None:
                report += "\n\n" + self._trials_report()
            pytest.fail(report, pytrace=False)

    def _check_hosts(self, session: SmSession) -> None:
        """More hosts than this machine can run: the item errors before anything starts."""
        if self.run.instance_count == 1:
            return
        emulated = session.sagemaker is not None and session.sagemaker.settings_for(
            self.run).emulate
        if session.sagemaker is None or emulated:
            problem = local_hosts_problem(self.run, self.config.rootpath, emulated=emulated)
            if problem:
                raise ValueError(problem)

    def _not_started(self) -> None:
        # An xdist worker signalled before its run started: skipped, and the worker stops
        # after it (pytest_runtest_protocol).
        pytest.skip(f"the session was interrupted ({signals.cause()}) before this run"
                    " started")

    def runtest(self) -> None:
        verdicts, gate, reports = self._judge()
        self._finish(FAIL if reports else PASS, verdicts, gate)
        if reports:
            raise ThresholdsNotMet("\n\n".join(reports))

    def _judge(self):
        session = self.config.stash[SESSION]
        verdicts = checks.judge(self.run.expect, self.result)
        reports = []
        if not all(v.passed for v in verdicts):
            reports.append(checks.threshold_report(self.run.name, verdicts, self.result))
            if self.run.tune is not None:  # judged on the best trial: here are the others
                reports.append(self._trials_report())
        gate = None
        if session.gate is not None:
            judged = [self.result] if self.run.tune is not None else self.results
            gate = session.gate.judge(self.run, finals_per_metric(judged))
            if gate.failed:
                reports.append(gate.message)
        return verdicts, gate, reports

    def _trials_report(self) -> str:
        from sm_pytest.report.trials import trials_report

        return trials_report(self.run, self.pending[0].trials if self.pending else [])

    def _stop_in_worker(self, session: SmSession) -> bool:
        """An xdist worker interrupted while awaiting its job: stop the jobs now and settle
        the item with what its job left. False if it left nothing to report."""
        from sm_pytest.backends.sagemaker_session import ON_INTERRUPT

        session.sagemaker.stop_jobs(ON_INTERRUPT)
        results = [pending.result_left() for pending in self.pending or []]
        if not results or any(r is None for r in results):
            return False
        self.settle(results, hand_over=False)
        return True

    def settle(self, results: list[RunResult], hand_over: bool = True) -> None:
        """Record a run that pytest will not report (the session was interrupted, or ended
        before it waited for this job): judged if it completed, an error otherwise.
        hand_over=False: a test report will carry the record after all."""
        self.results = results
        self.result = aggregate(results, self.run)
        if self.result.ok:
            verdicts, gate, reports = self._judge()
            self._finish(FAIL if reports else PASS, verdicts, gate)
        else:
            self._finish(ERROR, [], None)
        if not hand_over:
            return
        if hasattr(self.config, "workerinput"):
            # No test report will carry it: xdist hands workeroutput to the controller when
            # the worker finishes (Recorder.pytest_testnodedown).
            self.config.workeroutput.setdefault(LATE_RECORDS, []).append(
                self.sm_record.to_json())
        else:
            self.config.stash[SESSION].record(self.sm_record)

    def _finish(self, verdict: str, verdicts, gate) -> None:
        trials = self.pending[0].trials if self.pending else []
        self.sm_record = model.RunRecord.of(self.run, self.order, self.result, verdict,
                                            verdicts, pending=self.pending,
                                            results=self.results, gate=gate, trials=trials)
        self.user_properties.extend(junit_properties(self.sm_record))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ThresholdsNotMet):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, self.run.line - 1, self.run.name


def skipped_before_setup(item: pytest.Item) -> bool:
    """What pytest's skipping plugin will skip before setup: skip, skipif with a true
    condition, xfail(run=False); evaluated with pytest's own functions. A condition that
    cannot be evaluated errors in setup, so its run is not launched either."""
    try:
        # pytest's private module: should it move, every run is launched, as before.
        from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks
    except ImportError:
        return False
    try:
        if evaluate_skip_marks(item) is not None:
            return True
        xfailed = evaluate_xfail_marks(item)
    except (Exception, pytest.fail.Exception):  # a broken condition: reported in setup
        return True
    return xfailed is not None and not xfailed.run and not item.config.option.runxfail
