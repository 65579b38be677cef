"""The pytest glue, and the pytest11 entry point: every hook pytest calls is here or in a
hook class registered from pytest_configure (SageMakerHooks, Recorder).

Kept thin on purpose: the options are in options.py, the collection nodes in items.py, the
--sm hooks in sagemaker_hooks.py, the lines written while a test runs in terminal.py; the
work happens in session, spec, backends, gating, store and report. Importing this module must
stay cheap: no pandas, torch or AWS SDK at import time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sm_pytest import options
from sm_pytest.items import LATE_RECORDS, ExperimentFile, ExperimentItem
from sm_pytest.model import RunRecord
from sm_pytest.run import signals
from sm_pytest.sagemaker.names import experiment_name
from sm_pytest.sagemaker_hooks import NOTICES, POOLS, SageMakerHooks, make_sagemaker_session
from sm_pytest.session import SESSION, SmSession, mlflow_uri
from sm_pytest.spec.yamlsafe import YamlError
from sm_pytest.terminal import terminal_emitter, write_terminal_line


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("sm_plan") and config.getoption("numprocesses", None):
        raise pytest.UsageError("--sm-plan runs nothing; leave out -n (pytest-xdist)")
    session = config.stash[SESSION] = SmSession(config, make_sagemaker_session,
                                                progress=terminal_emitter(config))
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
    if parent.config.stash[SESSION].is_experiment_file(file_path):
        return ExperimentFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    if call.when == "teardown" and getattr(item, "sm_record", None) is not None:
        # A plain attribute of JSON values survives pytest-xdist's report serialisation,
        # so the controller sees every worker's runs.
        outcome.get_result().sm_run = item.sm_record.to_json()


def pytest_cmdline_main(config: pytest.Config):
    name = config.getoption("sm_history")
    if not name:
        return None
    uri = mlflow_uri(config)
    if uri:
        from sm_pytest.store.mlflow_runs import history_frame as mlflow_history
        from sm_pytest.store.mlflow_tracking import describe

        try:
            frame = mlflow_history(uri, name)
        except LookupError as exc:
            raise pytest.UsageError(f"--sm-history {name}: {exc}") from None
        except Exception as exc:  # unreachable, refused: said plainly, not as a traceback
            raise pytest.UsageError(f"--sm-history {name}: MLflow at {uri}:"
                                    f" {describe(exc)}") from None
        print(frame.to_string(index=False) if not frame.empty else
              f"no runs recorded in MLflow experiment {name!r} at {uri}")
        return 0
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
                self.session.record(RunRecord.from_json(rec))

    @pytest.hookimpl(optionalhook=True)  # an xdist hook; xdist may be absent
    def pytest_testnodedown(self, node, error) -> None:
        """pytest-xdist: runs a worker recorded without a test report (ExperimentItem.settle)
        and the notices of its SageMaker session (refusals, rollovers, stopped jobs) come
        with its workeroutput. Popped: xdist may call this twice for one worker."""
        output = getattr(node, "workeroutput", None) or {}
        with signals.deferred():
            for rec in output.pop(LATE_RECORDS, []):
                self.session.record(RunRecord.from_json(rec))
        pools = output.pop(POOLS, None)
        if pools:
            self.session.take_pool_news(pools.get("facts", {}), pools.get("notes", []))
        notices = output.pop(NOTICES, [])
        if notices:
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
        with signals.deferred():
            self.session.close_trackers(
                interrupted=session.exitstatus == pytest.ExitCode.INTERRUPTED)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        session = self.session
        if not session.records:
            return
        from sm_pytest.gating import gate
        from sm_pytest.report import plots, pools, summary
        from sm_pytest.store.run_cache import cache_notes

        # What became of each warm pool is known only once the session released them.
        records = pools.apply(session.records, session.pool_facts)
        write = terminalreporter.write_line
        df = summary.frame(records)
        terminalreporter.write_sep("=", "sm-pytest runs")
        write(summary.render_text(df))
        notes = gate.passed_notices(records) + (cache_notes(records) if session.reuse else [])
        notes += gate.ungated_notes(session.gate, records)
        notes += pools.notes(records)  # what reuse saved and what idle time billed
        notes += session.notices  # e.g. a tracker that failed: the run itself is kept
        for note in notes:
            write(note)
        if session.save_baseline:
            notes += gate.save_session_baseline(
                session.baselines_dir, session.save_baseline, records,
                force=session.save_baseline_force, cut_short=self.cut_short, write=write)
        config = session.config
        pictures = []
        if config.getoption("sm_plots") or config.getini("sm_plots"):
            pictures = plots.draw_session(records, session.artifacts_root, write)
        summary.publish(df, session.artifacts_root, write, notes=notes, pictures=pictures,
                        idle_seconds=pools.idle_seconds(records))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """--sm-plan: print one row per selected run before anything runs, then stop."""
    sm = session.config.stash[SESSION]
    if not sm.plan_only:
        return
    from sm_pytest.report import plan
    from sm_pytest.sagemaker.settings import SettingsError

    def reused(repeat) -> bool:
        return bool(sm.cache.lookup(sm.fingerprint(repeat)[0]))

    repeats = (repeat for item in session.items if isinstance(item, ExperimentItem)
               for repeat in item.run.repeats())
    sagemaker = sm.sagemaker
    try:
        rows = plan.plan_rows(repeats, reused=reused if sm.reuse else None,
                              prices=None if sagemaker is None else sagemaker.prices(),
                              settings_for=None if sagemaker is None else sagemaker.settings_for)
    except (SettingsError, YamlError) as exc:
        raise pytest.UsageError(f"cannot make the plan: {exc}") from None
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    reporter.write_sep("=", "sm-pytest plan")
    reporter.write_line(plan.format_plan(rows))
    # pytest's own collect-only ending is the plan's: the items listed, "N tests collected",
    # nothing run. Only once the plan is made: a plan that fails ends as a usage error.
    # Launches do not look at this flag but at SmSession.plan_only.
    session.config.option.collectonly = True
