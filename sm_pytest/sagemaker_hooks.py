"""--sm only: the SageMaker session made from the options, and the hooks that launch every
selected run up front and stop the jobs still running when the session ends early or is
interrupted."""

from __future__ import annotations

import contextlib

import pytest

from sm_pytest.items import ExperimentItem, skipped_before_setup
from sm_pytest.options import SM_VALUE_OPTIONS
from sm_pytest.session import SmSession, configured_path
from sm_pytest.terminal import write_terminal_line

PLAN_FILE = "experiments-plan.json"
NOTICES = "sm_pytest_notices"  # key in an xdist worker's workeroutput
POOLS = "sm_pytest_pools"  # key in an xdist worker's workeroutput: warm pools' facts, notes


def make_sagemaker_session(config: pytest.Config, token: str):
    """The SageMaker side of the session (--sm), from the options, the ini values and the
    SageMaker defaults file."""
    from sm_pytest.backends.sagemaker_session import SageMakerSession

    def value(name):
        return config.getoption(f"sm_{name}")

    cli = {name: value(name) for name, _, _ in SM_VALUE_OPTIONS}
    cli.update(spot=config.getoption("spot"), emulate=config.getoption("sm_emulate"),
               keep_pools=config.getoption("sm_keep_pools"))
    ini = {name: config.getini(f"sm_{name}") or None for name, _, _ in SM_VALUE_OPTIONS}
    ini.update(spot=config.getini("sm_spot"), emulate=config.getini("sm_emulate"),
               keep_pools=config.getini("sm_keep_pools"))
    config_path = config.rootpath / config.getini("sm_config")

    def emit(line: str) -> None:
        # Progress comes while a test's output is captured: step around the capture.
        write_terminal_line(config, line)

    notify = None  # notices are printed like progress
    if hasattr(config, "workerinput"):
        # Nobody sees a pytest-xdist worker's terminal: its notices go to the controller
        # with its workeroutput (Recorder.pytest_testnodedown), in their order.
        def notify(line: str) -> None:
            config.workeroutput.setdefault(NOTICES, []).append(line)

    # pytest-xdist: the workers of one test run share one Experiments plan, in a file beside
    # the artifacts keyed by the run's id.
    run_id = getattr(config, "workerinput", {}).get("testrunuid")
    return SageMakerSession(cli=cli, ini=ini, config_path=config_path if config_path.is_file()
                            else None, token=token[-6:], emit=emit, notify=notify,
                            plan_file=configured_path(config, "sm_artifacts") / PLAN_FILE,
                            plan_key=run_id)


class SageMakerHooks:
    """--sm only: launch every selected run up front, and stop what is still running when
    the session ends early or is interrupted."""

    def __init__(self, session: SmSession):
        self.session = session

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.session.plan_only or session.config.option.collectonly:
            return
        items = [item for item in session.items if isinstance(item, ExperimentItem)
                 and not skipped_before_setup(item)]  # a skipped run costs nothing
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
            # Every job this session will run is queued now: a warm pool that none of them
            # can use may be released as soon as its job ends.
            if self.session.sagemaker.backend is not None:
                self.session.sagemaker.backend.no_more_jobs()

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
        from sm_pytest.backends.sagemaker_session import ON_INTERRUPT

        self.session.sagemaker.stop_jobs(ON_INTERRUPT)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Before the terminal summary, so that the jobs this session did not wait for (it
        # was interrupted, or -x ended it) are stopped and have their rows in it.
        from sm_pytest.backends.sagemaker_session import STILL_RUNNING

        sagemaker = self.session.sagemaker
        sagemaker.stop_jobs(STILL_RUNNING)  # and releases the warm pools
        if hasattr(session.config, "workerinput"):
            session.config.workeroutput[POOLS] = {"facts": sagemaker.pool_facts,
                                                  "notes": sagemaker.notes}
        else:
            self.session.take_pool_news(sagemaker.pool_facts, sagemaker.notes)
        for item in getattr(session, "items", []):
            if isinstance(item, ExperimentItem) and item.sm_record is None and item.pending:
                results = [pending.result_left() for pending in item.pending]
                launched = any(p.handle is not None for p in item.pending)
                if launched and all(r is not None for r in results):
                    item.settle(results)

    def pytest_unconfigure(self) -> None:
        from sm_pytest.backends.sagemaker_session import STILL_RUNNING

        self.session.sagemaker.stop_jobs(STILL_RUNNING)
