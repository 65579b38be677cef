"""The pytest glue: options, collection of experiment files, items, reports, summary.

Kept thin on purpose: the work happens in spec, runner, backends, checks, tracking, summary.
Importing this module must stay cheap: no pandas, torch or AWS SDK at import time.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

from . import checks, records, runner
from .backends.base import RunResult
from .spec import RunSpec, load_experiment
from .yamlsafe import YamlError

_SESSION = pytest.StashKey["SmSession"]()
_SUFFIXES = {".yaml", ".yml"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sm-pytest", "training experiments (sm-pytest)")
    group.addoption("--sm-artifacts", metavar="DIR", default=None,
                    help="folder for run artifacts, the tracking store and the summary"
                         " (default: ini sm_artifacts, else sm-artifacts/ in the rootdir)")
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


_SM_VALUE_OPTIONS = [
    ("role", "ARN", "IAM role SageMaker assumes for the jobs"),
    ("region", "REGION", "AWS region (default: the standard AWS configuration)"),
    ("bucket", "BUCKET", "S3 bucket for code, data, checkpoints and outputs"),
    ("prefix", "PREFIX", "S3 key prefix under the bucket"),
    ("instance_type", "TYPE", "training instance type, e.g. ml.m5.xlarge"),
    ("max_parallel", "N", "at most N jobs in flight at once"),
    ("keep_alive", "SECONDS", "warm-pool keep-alive period (0 turns warm pools off)"),
]


class SmSession:
    """Per-pytest-session state: where artifacts go, the backend, the collected records."""

    def __init__(self, config: pytest.Config):
        self.config = config
        option = config.getoption("sm_artifacts")
        base = Path(config.invocation_params.dir) if option else config.rootpath
        self.artifacts_root = (base / (option or config.getini("sm_artifacts"))).resolve()
        self.experiment_dirs = [(config.rootpath / p).resolve()
                                for p in config.getini("sm_experiment_paths")]
        self.session_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.records: list[dict] = []
        self._backend = None
        self._tracker = None
        self.sagemaker = None
        if config.getoption("sm"):
            self.sagemaker = _sagemaker_session(config, self.session_id)
        elif config.getoption("spot") or config.getoption("sm_emulate"):
            raise pytest.UsageError("--spot and --sm-emulate go with --sm")

    @property
    def backend(self):
        if self._backend is None:
            from .backends.local import LocalBackend

            streaming = self.config.getoption("capture", "fd") == "no"
            self._backend = LocalBackend(echo=sys.stdout.write if streaming else None)
        return self._backend

    def launch_all(self, items: list[ExperimentItem]) -> None:
        """--sm: check settings, then submit every selected run before any is awaited, so a
        sweep costs about one job's wall time."""
        runs = [item.run for item in items]
        from .sagemaker.experiments import ExperimentLimitError
        from .sagemaker.settings import SettingsError

        try:
            self.sagemaker.check(runs)
            self._backend = self.sagemaker.start(runs)
        except (SettingsError, ExperimentLimitError) as exc:
            raise pytest.UsageError(f"nothing was launched: {exc}") from None
        for item in items:
            item.handle = runner.submit(item.run, self._backend, self.artifacts_root)

    def record(self, rec: dict) -> None:
        self.records.append(rec)
        if self._tracker is None:
            from .tracking import LocalTracker

            self._tracker = LocalTracker(self.artifacts_root / "tracking.sqlite",
                                         self.session_id)
        self._tracker.record(rec)

    def is_experiment_file(self, path: Path) -> bool:
        path = path.resolve()
        return path.suffix in _SUFFIXES and any(path.is_relative_to(d)
                                                 for d in self.experiment_dirs)


def _sagemaker_session(config: pytest.Config, token: str):
    from .sagemaker.session import SageMakerSession

    def value(name):
        return config.getoption(f"sm_{name}")

    cli = {name: value(name) for name, _, _ in _SM_VALUE_OPTIONS}
    cli.update(spot=config.getoption("spot"), emulate=config.getoption("sm_emulate"))
    ini = {name: config.getini(f"sm_{name}") or None for name, _, _ in _SM_VALUE_OPTIONS}
    ini.update(spot=config.getini("sm_spot"), emulate=config.getini("sm_emulate"))
    config_path = config.rootpath / config.getini("sm_config")
    def emit(line: str) -> None:
        # Progress comes while a test's output is captured: step around the capture.
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    return SageMakerSession(cli=cli, ini=ini, config_path=config_path if config_path.is_file()
                            else None, token=token[-6:], emit=emit)


def pytest_configure(config: pytest.Config) -> None:
    session = config.stash[_SESSION] = SmSession(config)
    if session.sagemaker is not None:
        config.pluginmanager.register(SageMakerHooks(session), "sm-pytest-sagemaker")
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Recorder(session), "sm-pytest-recorder")


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


def _describe(exc: YamlError, rootpath: Path) -> str:
    try:
        shown = exc.path.resolve().relative_to(rootpath)
    except ValueError:
        shown = exc.path
    return f"{shown}:{exc.line}: {exc.message}" if exc.line else f"{shown}: {exc.message}"


class ThresholdsNotMet(Exception):
    pass


class ExperimentItem(pytest.Item):
    """One training run. Training happens in setup, so a crash is reported as an error;
    the test itself is the threshold check."""

    def __init__(self, *, run: RunSpec, order: int, **kwargs):
        super().__init__(**kwargs)
        self.run = run
        self.order = order
        self.result: RunResult | None = None
        self.sm_record: dict | None = None
        self.handle = None  # set when the run was launched ahead of its turn (--sm)

    def setup(self) -> None:
        session = self.config.stash[_SESSION]
        from .backends.local import RunSetupError

        try:
            if self.handle is None and session.sagemaker is not None:
                session.launch_all([self])  # pytest-xdist workers launch item by item
            if self.handle is None:
                self.handle = runner.submit(self.run, session.backend, session.artifacts_root)
            self.result = runner.finish(session.backend, self.handle)
        except (RunSetupError, pytest.UsageError) as exc:
            pytest.fail(str(exc), pytrace=False)
        if not self.result.ok:
            self._finish("error", [])
            pytest.fail(checks.crash_report(self.run.name, self.result), pytrace=False)

    def runtest(self) -> None:
        verdicts = checks.judge(self.run.expect, self.result)
        passed = all(v.passed for v in verdicts)
        self._finish("pass" if passed else "fail", verdicts)
        if not passed:
            raise ThresholdsNotMet(checks.threshold_report(self.run.name, verdicts, self.result))

    def _finish(self, verdict: str, verdicts) -> None:
        self.sm_record = records.build(self.run, self.order, self.result, verdict, verdicts)
        self.user_properties.extend(records.junit_properties(self.sm_record))

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
        if session.config.option.collectonly or hasattr(session.config, "workerinput"):
            return  # under pytest-xdist each worker launches the runs it is given, in setup
        items = [item for item in session.items if isinstance(item, ExperimentItem)]
        if items:
            self.session.launch_all(items)

    def pytest_keyboard_interrupt(self) -> None:
        self._stop("stopped SageMaker jobs on interrupt")

    def pytest_unconfigure(self) -> None:
        self._stop("stopped SageMaker jobs that were still running")

    def _stop(self, what: str) -> None:
        stopped = self.session.sagemaker.close()
        if stopped:
            self.session.sagemaker.emit(f"{what}: {', '.join(stopped)}")


def pytest_cmdline_main(config: pytest.Config):
    name = config.getoption("sm_history")
    if not name:
        return None
    from .sagemaker.experiments import history_frame
    from .sagemaker.session import boto_session

    frame = history_frame(boto_session(config.getoption("sm_region")), name)
    print(frame.to_string(index=False) if not frame.empty else f"no runs recorded for {name!r}")
    return 0


class Recorder:
    """Controller-side: records every run once (xdist workers send theirs here) and prints
    the summary table at the end."""

    def __init__(self, session: SmSession):
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rec = getattr(report, "sm_run", None)
        if rec is not None:
            self.session.record(rec)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        session = self.session
        if not session.records:
            return
        from . import summary

        df = summary.frame(session.records)
        terminalreporter.write_sep("=", "sm-pytest runs")
        terminalreporter.write_line(summary.render_text(df))
        try:
            csv_path, md_path = summary.write(df, session.artifacts_root)
        except OSError as exc:
            terminalreporter.write_line(f"could not write the summary files: {exc}")
            return
        terminalreporter.write_line(f"artifacts: {session.artifacts_root}")
        terminalreporter.write_line(f"summary: {csv_path} and {md_path.name}")
