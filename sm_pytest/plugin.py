"""The pytest glue: options, collection of experiment files, items, reports, summary.

Kept thin on purpose: the work happens in spec, runner, backends, checks, tracking, summary.
Importing this module must stay cheap: no pandas, torch or AWS SDK at import time.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from sm_pytest import model
from sm_pytest.gating import checks
from sm_pytest.model import RunInterrupted, RunResult, finals_per_metric, never_ran
from sm_pytest.run import signals
from sm_pytest.run.artifacts import run_dir_of
from sm_pytest.sagemaker.names import experiment_name
from sm_pytest.session import SmSession, aggregate, configured_path
from sm_pytest.spec.experiment import RunSpec, load_experiment
from sm_pytest.spec.yamlsafe import YamlError

_SESSION = pytest.StashKey[SmSession]()
PLAN_FILE = "experiments-plan.json"
_LATE_RECORDS = "sm_pytest_records"  # key in an xdist worker's workeroutput
_NOTICES = "sm_pytest_notices"  # key in an xdist worker's workeroutput


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sm-pytest", "training experiments (sm-pytest)")
    group.addoption("--sm-artifacts", metavar="DIR", default=None,
                    help="folder for run artifacts, the tracking store and the summary,"
                         " relative to the current directory (default: ini sm_artifacts,"
                         " else sm-artifacts/ in the rootdir)")
    parser.addini("sm_artifacts", "folder for run artifacts (relative to the rootdir)",
                  default="sm-artifacts")
    parser.addini("sm_experiment_paths", "folders whose YAML files are experiments (relative"
                  " to the rootdir); YAML anywhere else is never collected",
                  type="args", default=["experiments"])
    sm = parser.getgroup("sm-pytest-sagemaker", "SageMaker training jobs (sm-pytest)")
    sm.addoption("--sm", action="store_true", default=False,
                 help="run every selected experiment as a SageMaker Training Job")
    sm.addoption("--spot", action="store_true", default=None,
                 help="with --sm: use managed spot capacity (checkpoints synced to S3)")
    sm.addoption("--sm-emulate", action="store_true", default=None,
                 help="with --sm: emulate SageMaker and S3 in process (no AWS account needed);"
                      " each job really runs the training script")
    for name, metavar, text in _SM_VALUE_OPTIONS:
        sm.addoption(f"--sm-{name.replace('_', '-')}", dest=f"sm_{name}", metavar=metavar,
                     default=None, help=text)
        parser.addini(f"sm_{name}", text)
    parser.addini("sm_spot", "use managed spot capacity for --sm runs", type="bool",
                  default=None)
    parser.addini("sm_emulate", "emulate SageMaker for --sm runs", type="bool", default=None)
    parser.addini("sm_config", "SageMaker defaults file (relative to the rootdir)",
                  default="config/sagemaker.yaml")
    sm.addoption("--sm-history", metavar="EXPERIMENT", default=None,
                 help="print the whole SageMaker Experiments history of EXPERIMENT and exit")
    gate = parser.getgroup("sm-pytest-gating", "regression gating (sm-pytest)")
    gate.addoption("--sm-save-baseline", metavar="NAME", default=None,
                   help="record the final metrics of every run as baseline NAME, except runs"
                        " whose thresholds or baseline gate failed; nothing when the session"
                        " is interrupted, or stopped by -x before its last item")
    gate.addoption("--sm-save-baseline-force", action="store_true", default=False,
                   help="with --sm-save-baseline: record runs whose thresholds or baseline"
                        " gate failed too (a deliberate refresh)")
    gate.addoption("--sm-baseline", metavar="NAME", default=None,
                   help="fail a run whose metrics got worse than baseline NAME beyond"
                        " their tolerance")
    gate.addoption("--sm-baseline-strict", action="store_true", default=False,
                   help="with --sm-baseline: a run without a baseline entry, or with no"
                        " metric gated by a tolerance, fails")
    gate.addoption("--sm-baselines-dir", metavar="DIR", default=None,
                   help="folder of baseline files, relative to the current directory"
                        " (default: ini sm_baselines_dir, else baselines/ in the rootdir)")
    parser.addini("sm_baselines_dir", "folder of baseline files, meant to be committed"
                  " (relative to the rootdir)", default="baselines")
    gate.addoption("--sm-reuse", action="store_true", default=False,
                   help="reuse the stored result of a passing run whose fingerprint"
                        " (hyperparameters, code, data, backend) is unchanged")
    gate.addoption("--sm-rerun", action="store_true", default=False,
                   help="retrain every run, even with --sm-reuse")
    gate.addoption("--sm-plan", action="store_true", default=False,
                   help="print the plan (backend, instance, spot, reuse, cost bound) and run"
                        " nothing")
    gate.addoption("--sm-plots", action="store_true", default=None,
                   help="draw learning curves and sweep plots (needs matplotlib)")
    parser.addini("sm_plots", "draw learning curves and sweep plots", type="bool",
                  default=False)


_SM_VALUE_OPTIONS = [
    ("role", "ARN", "IAM role SageMaker assumes for the jobs"),
    ("region", "REGION", "AWS region (default: the standard AWS configuration)"),
    ("bucket", "BUCKET", "S3 bucket for code, data, checkpoints and outputs"),
    ("prefix", "PREFIX", "S3 key prefix under the bucket"),
    ("instance_type", "TYPE", "training instance type, e.g. ml.m5.xlarge"),
    ("max_parallel", "N", "at most N jobs in flight at once"),
    ("keep_alive", "SECONDS", "warm-pool keep-alive period (0 turns warm pools off)"),
]


def _sagemaker_session(config: pytest.Config, token: str):
    from sm_pytest.backends.sagemaker_session import SageMakerSession

    def value(name):
        return config.getoption(f"sm_{name}")

    cli = {name: value(name) for name, _, _ in _SM_VALUE_OPTIONS}
    cli.update(spot=config.getoption("spot"), emulate=config.getoption("sm_emulate"))
    ini = {name: config.getini(f"sm_{name}") or None for name, _, _ in _SM_VALUE_OPTIONS}
    ini.update(spot=config.getini("sm_spot"), emulate=config.getini("sm_emulate"))
    config_path = config.rootpath / config.getini("sm_config")

    def emit(line: str) -> None:
        # Progress comes while a test's output is captured: step around the capture.
        from sm_pytest.run.progress import write_terminal_line

        write_terminal_line(config, line)

    notify = None  # notices are printed like progress
    if hasattr(config, "workerinput"):
        # Nobody sees a pytest-xdist worker's terminal: its notices go to the controller
        # with its workeroutput (Recorder.pytest_testnodedown), in their order.
        def notify(line: str) -> None:
            config.workeroutput.setdefault(_NOTICES, []).append(line)

    # pytest-xdist: the workers of one test run share one Experiments plan, in a file beside
    # the artifacts keyed by the run's id.
    run_id = getattr(config, "workerinput", {}).get("testrunuid")
    return SageMakerSession(cli=cli, ini=ini, config_path=config_path if config_path.is_file()
                            else None, token=token[-6:], emit=emit, notify=notify,
                            plan_file=configured_path(config, "sm_artifacts") / PLAN_FILE,
                            plan_key=run_id)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("sm_plan") and config.getoption("numprocesses", None):
        raise pytest.UsageError("--sm-plan runs nothing; leave out -n (pytest-xdist)")
    session = config.stash[_SESSION] = SmSession(config, _sagemaker_session)
    if session.sagemaker is not None:
        config.pluginmanager.register(SageMakerHooks(session), "sm-pytest-sagemaker")
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Recorder(session), "sm-pytest-recorder")
    # Ctrl-C, SIGTERM and SIGHUP stop the session where that loses nothing (signals.py).
    signals.install(forward=signals.xdist_workers(config), worker=hasattr(config, "workerinput"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    if isinstance(item, ExperimentItem):
        # A run's ending, its judging and its recording (the teardown report carries its
        # record) are never cut short by a first signal: it is acted on after them.
        with signals.deferred():
            outcome = yield
    else:
        outcome = yield
    if signals.received() is not None or getattr(item, "interrupted", None) is not None:
        if hasattr(item.config, "workerinput"):
            # A KeyboardInterrupt would end the worker as crashed, and xdist would start a
            # replacement: the worker stops instead, and xdist ends the session (exit 2).
            item.session.shouldstop = f"interrupted ({signals.cause()})"
        else:
            raise getattr(item, "interrupted", None) or KeyboardInterrupt(
                f"the session was interrupted ({signals.cause()}); every run that finished"
                " is kept")
    return outcome


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt() -> None:
    signals.ending()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session):
    if signals.received() is not None:
        # A signal noted where it could not act at once (while a run was saved, or one the
        # controller passed on to xdist workers): the session was interrupted all the same.
        if hasattr(session.config, "workerinput"):
            session.shouldstop = session.shouldstop or f"interrupted ({signals.cause()})"
        else:
            session.exitstatus = pytest.ExitCode.INTERRUPTED
    signals.ending()
    return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    signals.uninstall()


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if parent.config.stash[_SESSION].is_experiment_file(file_path):
        return ExperimentFile.from_parent(parent, path=file_path)
    return None


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
        claimed = self.config.stash[_SESSION].experiment_files
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
        self.sm_record: dict | None = None
        self.interrupted: RunInterrupted | None = None  # raised once its record is logged

    def setup(self) -> None:
        session = self.config.stash[_SESSION]
        worker = hasattr(self.config, "workerinput")
        try:
            # Nothing is lost before a run starts: a signal while its runs are prepared
            # (hashed, looked up, launched) stops the session at once.
            with signals.interruptible():
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
            self._finish("error", [], None)
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
            self._finish("error", [], None)
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
        self.result = aggregate(self.results)
        if not self.result.ok:
            self._finish("error", [], None)
            pytest.fail(checks.crash_report(self.run.name, self.result), pytrace=False)

    def _not_started(self) -> None:
        # An xdist worker signalled before its run started: skipped, and the worker stops
        # after it (pytest_runtest_protocol).
        pytest.skip(f"the session was interrupted ({signals.cause()}) before this run"
                    " started")

    def runtest(self) -> None:
        verdicts, gate, reports = self._judge()
        self._finish("fail" if reports else "pass", verdicts, gate)
        if reports:
            raise ThresholdsNotMet("\n\n".join(reports))

    def _judge(self):
        session = self.config.stash[_SESSION]
        verdicts = checks.judge(self.run.expect, self.result)
        reports = []
        if not all(v.passed for v in verdicts):
            reports.append(checks.threshold_report(self.run.name, verdicts, self.result))
        gate = None
        if session.gate is not None:
            gate = session.gate.judge(self.run, finals_per_metric(self.results))
            if gate.failed:
                reports.append(gate.message)
        return verdicts, gate, reports

    def _stop_in_worker(self, session: SmSession) -> bool:
        """An xdist worker interrupted while awaiting its job: stop the jobs now and settle
        the item with what its job left. False if it left nothing to report."""
        _stop_jobs(session.sagemaker, _ON_INTERRUPT)
        results = _results_left(self.pending or [])
        if not results or any(r is None for r in results):
            return False
        self.settle(results, hand_over=False)
        return True

    def settle(self, results: list[RunResult], hand_over: bool = True) -> None:
        """Record a run that pytest will not report (the session was interrupted, or ended
        before it waited for this job): judged if it completed, an error otherwise.
        hand_over=False: a test report will carry the record after all."""
        self.results = results
        self.result = aggregate(results)
        if self.result.ok:
            verdicts, gate, reports = self._judge()
            self._finish("fail" if reports else "pass", verdicts, gate)
        else:
            self._finish("error", [], None)
        if not hand_over:
            return
        if hasattr(self.config, "workerinput"):
            # No test report will carry it: xdist hands workeroutput to the controller when
            # the worker finishes (Recorder.pytest_testnodedown).
            self.config.workeroutput.setdefault(_LATE_RECORDS, []).append(self.sm_record)
        else:
            self.config.stash[_SESSION].record(self.sm_record)

    def _finish(self, verdict: str, verdicts, gate) -> None:
        self.sm_record = model.build(self.run, self.order, self.result, verdict, verdicts,
                                       pending=self.pending, results=self.results, gate=gate)
        self.user_properties.extend(model.junit_properties(self.sm_record))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ThresholdsNotMet):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, self.run.line - 1, self.run.name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    if call.when == "teardown" and getattr(item, "sm_record", None) is not None:
        # A plain attribute survives pytest-xdist's report serialisation, so the
        # controller sees every worker's runs.
        outcome.get_result().sm_run = item.sm_record


class SageMakerHooks:
    """--sm only: launch every selected run up front, and stop what is still running when
    the session ends early or is interrupted."""

    def __init__(self, session: SmSession):
        self.session = session

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.config.option.collectonly:
            return
        items = [item for item in session.items if isinstance(item, ExperimentItem)
                 and not _skipped_before_setup(item)]  # a skipped run costs nothing
        if hasattr(session.config, "workerinput"):
            # pytest-xdist: every worker collected every item. The Experiments names are
            # planned now for all of them, once per test run (SageMakerSession._plan); each
            # worker launches the runs it is given, in setup, where a problem met here is
            # reported again.
            if items:
                with contextlib.suppress(pytest.UsageError):
                    self.session.start_sagemaker([item.run for item in items])
            return
        if items:
            # Every selected run is launched before any is awaited: a sweep costs about one
            # job's wall time, not N.
            self.session.start_sagemaker([item.run for item in items])
            for item in items:
                try:
                    item.pending = self.session.start(item.run)
                except ValueError:
                    continue  # its setup says why it never ran

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> None:
        """A run skipped by a hook only its setup could run (a conftest's
        pytest_runtest_setup) was launched: stop its jobs now rather than at the end."""
        if (call.when != "setup" or not isinstance(item, ExperimentItem) or not item.pending
                or call.excinfo is None or not call.excinfo.errisinstance(pytest.skip.Exception)):
            return
        backend = self.session.sagemaker.backend
        for pending in item.pending:
            if pending.handle is not None and backend is not None:
                backend.stop(pending.handle)
        item.pending = None  # skipped: no row for it
        self.session.sagemaker.flush()

    def pytest_keyboard_interrupt(self) -> None:
        _stop_jobs(self.session.sagemaker, _ON_INTERRUPT)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Before the terminal summary, so that the jobs this session did not wait for (it
        # was interrupted, or -x ended it) are stopped and have their rows in it.
        _stop_jobs(self.session.sagemaker, _STILL_RUNNING)
        for item in getattr(session, "items", []):
            if isinstance(item, ExperimentItem) and item.sm_record is None and item.pending:
                results = _results_left(item.pending)
                launched = any(p.handle is not None for p in item.pending)
                if launched and all(r is not None for r in results):
                    item.settle(results)

    def pytest_unconfigure(self) -> None:
        _stop_jobs(self.session.sagemaker, _STILL_RUNNING)


_ON_INTERRUPT = "stopped SageMaker jobs on interrupt"
_STILL_RUNNING = "stopped SageMaker jobs that were still running"


def _stop_jobs(sagemaker, what: str) -> None:
    """Stop what the SageMaker session still runs, and say which jobs, as a notice (under
    pytest-xdist it reaches the controller's terminal)."""
    stopped = sagemaker.close()
    if stopped:
        sagemaker.notify(f"{what}: {', '.join(stopped)}")


def _results_left(pendings) -> list[RunResult | None]:
    """What each launched run left: its cached result, or its job's once collected."""
    return [p.cached if p.cached is not None else getattr(p.handle, "result", None)
            for p in pendings]


def _skipped_before_setup(item: pytest.Item) -> bool:
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


def pytest_cmdline_main(config: pytest.Config):
    name = config.getoption("sm_history")
    if not name:
        return None
    from sm_pytest.backends.sagemaker_session import boto_session
    from sm_pytest.sagemaker.experiments import HistoryError, history_frame

    try:
        # `lr_sweep` and `lr-sweep` both name the file's experiment (names.experiment_name)
        frame = history_frame(boto_session(config.getoption("sm_region")), name)
    except HistoryError as exc:
        raise pytest.UsageError(str(exc)) from None
    print(frame.to_string(index=False) if not frame.empty else
          f"no runs recorded for {experiment_name(name)!r}")
    return 0


class Recorder:
    """Controller-side: records every run once (xdist workers send theirs here) and prints
    the summary table at the end."""

    def __init__(self, session: SmSession):
        self.session = session
        self.cut_short: str | None = None  # why the session ended before its last item
        self.ran: set[str] = set()  # the items whose protocol ran to its end

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            self.ran.add(report.nodeid)
        rec = getattr(report, "sm_run", None)
        if rec is not None:
            # Under xdist this runs in the controller's loop, outside any item's protocol:
            # a first signal must not cost the row (it stops the workers meanwhile).
            with signals.deferred():
                self.session.record(rec)

    @pytest.hookimpl(optionalhook=True)  # an xdist hook; xdist may be absent
    def pytest_testnodedown(self, node, error) -> None:
        """pytest-xdist: runs a worker recorded without a test report (ExperimentItem.settle)
        and the notices of its SageMaker session (refusals, rollovers, stopped jobs) come
        with its workeroutput. Popped: xdist may call this twice for one worker."""
        output = getattr(node, "workeroutput", None) or {}
        with signals.deferred():
            for rec in output.pop(_LATE_RECORDS, []):
                self.session.record(rec)
        notices = output.pop(_NOTICES, [])
        if notices:
            from sm_pytest.run.progress import write_terminal_line

            worker = getattr(getattr(node, "gateway", None), "id", "worker")
            for line in notices:
                write_terminal_line(self.session.config, f"[{worker}] {line}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Ctrl-C, SIGTERM, SIGHUP (noted ones too: the tryfirst pytest_sessionfinish),
        # pytest.exit() and pytest-xdist's stop (-x included) end a session as interrupted;
        # -x, --maxfail and --stepwise without xdist set shouldfail or shouldstop, which
        # cut it short only if an item was left: reached on the last one, every run ran.
        why = session.shouldfail or session.shouldstop
        if session.exitstatus == pytest.ExitCode.INTERRUPTED:
            self.cut_short = "the session was interrupted"
        elif why and any(item.nodeid not in self.ran for item in session.items):
            self.cut_short = f"the session stopped early ({why})"

    def pytest_terminal_summary(self, terminalreporter) -> None:
        session = self.session
        if not session.records:
            return
        from sm_pytest.report import summary

        write = terminalreporter.write_line
        df = summary.frame(session.records)
        terminalreporter.write_sep("=", "sm-pytest runs")
        write(summary.render_text(df))
        # Notices travel on the records, so pytest-xdist workers' reach the summary too.
        notes = [rec["gate_message"] for rec in session.records
                 if rec["verdict"] == "pass" and rec["gate_message"]] + _cache_notes(session)
        notes += self._gate_notes()
        for note in notes:
            write(note)
        notes += self._save_baseline(write)
        pictures = self._draw(write)
        try:
            csv_path, md_path = summary.write(df, session.artifacts_root, notes=notes,
                                              pictures=pictures)
        except OSError as exc:
            write(f"could not write the summary files: {exc}")
            return
        write(f"artifacts: {session.artifacts_root}")
        write(f"summary: {csv_path} and {md_path.name}")

    def _gate_notes(self) -> list[str]:
        gate = self.session.gate
        if gate is None:
            return []
        from sm_pytest.gating.gate import ungated_notice

        notice = ungated_notice(gate.name, self.session.records, gate.strict)
        return [notice] if notice else []

    def _save_baseline(self, write) -> list[str]:
        name = self.session.save_baseline
        if not name:
            return []
        if self.cut_short:
            # A refresh is all or nothing: a cancelled one must not rewrite part of the
            # baseline with whichever runs happened to finish first.
            note = (f"baseline {name!r} not saved: {self.cut_short}; run the whole session"
                    " again to refresh it")
            write(note)
            return [note]
        from sm_pytest.gating.baselines import BaselineError
        from sm_pytest.gating.gate import save

        try:
            saved = save(self.session.baselines_dir, name, self.session.records,
                         force=self.session.save_baseline_force)
        except BaselineError as exc:
            write(f"baseline not saved: {exc}")
            return [f"baseline {name!r} not saved: {exc}"]
        notes = saved.notes(name)
        for note in notes:
            write(note)
        return notes

    def _draw(self, write) -> list[Path]:
        config = self.session.config
        wanted = config.getoption("sm_plots") or config.getini("sm_plots")
        if not wanted:
            return []
        from sm_pytest.report import pictures, plots

        if not plots.available():
            write("plots skipped: matplotlib is not installed (pip install 'sm-pytest[plots]')")
            return []
        try:
            return pictures.draw(self.session.records, self.session.artifacts_root)
        except Exception as exc:  # a picture must never cost the summary
            write(f"plots skipped: {type(exc).__name__}: {exc}")
            return []


def _cache_notes(session: SmSession) -> list[str]:
    if not session.reuse:
        return []
    reused = [r["name"] for r in session.records if r["cached"]]
    retrained = [(r["name"], rep["miss"]) for r in session.records for rep in r["repeats"]
                 if not rep["cached"]]
    notes = [f"run cache: {len(reused)} reused, {len(retrained)} trained"]
    notes += [f"retrained {name}: {why}" for name, why in retrained if why]
    return notes


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """--sm-plan: print one row per selected run before anything runs, then stop."""
    config = session.config
    if not config.getoption("sm_plan") or hasattr(config, "workerinput"):
        return
    from sm_pytest.sagemaker.settings import SettingsError

    try:
        rows = _plan_rows(config, session.items)
    except (SettingsError, YamlError) as exc:
        raise pytest.UsageError(f"cannot make the plan: {exc}") from None
    from sm_pytest.report import plan

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    reporter.write_sep("=", "sm-pytest plan")
    reporter.write_line(plan.format_plan(rows))
    config.option.collectonly = True  # the plan is the whole session


def _plan_rows(config: pytest.Config, items) -> list:
    from sm_pytest.report import plan

    sm = config.stash[_SESSION]
    prices = sm.sagemaker.prices() if sm.sagemaker is not None else {}
    rows = []
    for item in items:
        if not isinstance(item, ExperimentItem):
            continue
        for repeat in item.run.repeats():
            reuse = "-"
            if sm.reuse:
                reuse = "yes" if sm.cache.lookup(sm.fingerprint(repeat)[0]) else "no"
            if sm.sagemaker is None:
                rows.append(plan.plan_row(repeat.name, backend="local",
                                          max_run_s=repeat.max_run, reuse=reuse))
                continue
            s = sm.sagemaker.settings_for(repeat)
            rows.append(plan.plan_row(repeat.name, backend="sagemaker", max_run_s=s.max_run,
                                      instance_type=s.instance_type, spot=s.spot, reuse=reuse,
                                      prices=prices, instance_count=s.instance_count,
                                      keep_alive_s=0 if s.spot else s.keep_alive_s,
                                      emulated=s.emulate))
    return rows
