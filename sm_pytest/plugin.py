"""The pytest glue: options, collection of experiment files, items, reports, summary.

Kept thin on purpose: the work happens in spec, runner, backends, checks, tracking, summary.
Importing this module must stay cheap: no pandas, torch or AWS SDK at import time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import checks, records
from .artifacts import experiment_slug, run_dir_of
from .backends.base import RunResult, finals_per_metric, never_ran
from .session import SmSession, aggregate
from .spec import RunSpec, load_experiment
from .yamlsafe import YamlError

_SESSION = pytest.StashKey[SmSession]()


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
    gate = parser.getgroup("sm-pytest-gating", "regression gating (sm-pytest)")
    gate.addoption("--sm-save-baseline", metavar="NAME", default=None,
                   help="record every run's final metrics as baseline NAME")
    gate.addoption("--sm-baseline", metavar="NAME", default=None,
                   help="fail a run whose metrics got worse than baseline NAME beyond"
                        " their tolerance")
    gate.addoption("--sm-baseline-strict", action="store_true", default=False,
                   help="with --sm-baseline: a run without a baseline entry is an error")
    gate.addoption("--sm-baselines-dir", metavar="DIR", default=None,
                   help="folder of baseline files (default: ini sm_baselines_dir, baselines/)")
    parser.addini("sm_baselines_dir", "folder of baseline files, meant to be committed",
                  default="baselines")
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
    if config.getoption("sm_plan") and config.getoption("numprocesses", None):
        raise pytest.UsageError("--sm-plan runs nothing; leave out -n (pytest-xdist)")
    session = config.stash[_SESSION] = SmSession(config, _sagemaker_session)
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
        other = claimed.setdefault(experiment_slug(self.path.stem), mine)
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

    def setup(self) -> None:
        session = self.config.stash[_SESSION]
        from .backends.local import RunSetupError

        try:
            if self.pending is None:
                if session.sagemaker is not None:
                    session.start_sagemaker([self.run])  # pytest-xdist: item by item
                self.pending = session.start(self.run)
            self.results = session.finish(self.pending)
        except (RunSetupError, pytest.UsageError, ValueError) as exc:
            # ValueError: e.g. a value the fingerprint cannot hash; phrased by its raiser
            self.results = []
            self.result = never_ran(
                str(exc), run_dir_of(session.artifacts_root, self.run.experiment, self.run.folder),
                backend="local" if session.sagemaker is None else "sagemaker")
            self._finish("error", [], None)
            pytest.fail(str(exc), pytrace=False)
        self.result = aggregate(self.results)
        if not self.result.ok:
            self._finish("error", [], None)
            pytest.fail(checks.crash_report(self.run.name, self.result), pytrace=False)

    def runtest(self) -> None:
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
        self._finish("fail" if reports else "pass", verdicts, gate)
        if reports:
            raise ThresholdsNotMet("\n\n".join(reports))

    def _finish(self, verdict: str, verdicts, gate) -> None:
        self.sm_record = records.build(self.run, self.order, self.result, verdict, verdicts,
                                       pending=self.pending, results=self.results, gate=gate)
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
        items = [item for item in session.items if isinstance(item, ExperimentItem)
                 and item.get_closest_marker("skip") is None]  # a skipped run costs nothing
        if items:
            # Every selected run is launched before any is awaited: a sweep costs about one
            # job's wall time, not N.
            self.session.start_sagemaker([item.run for item in items])
            for item in items:
                item.pending = self.session.start(item.run)

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
    from .sagemaker.experiments import history_frame, slug
    from .sagemaker.session import boto_session

    name = slug(name)  # `lr_sweep` and `lr-sweep` both name the file's experiment
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

        write = terminalreporter.write_line
        df = summary.frame(session.records)
        terminalreporter.write_sep("=", "sm-pytest runs")
        write(summary.render_text(df))
        # Notices travel on the records, so pytest-xdist workers' reach the summary too.
        notes = [rec["gate_message"] for rec in session.records
                 if rec["verdict"] == "pass" and rec["gate_message"]] + _cache_notes(session)
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

    def _save_baseline(self, write) -> list[str]:
        name = self.session.save_baseline
        if not name:
            return []
        from .baselines import BaselineError
        from .gating import save

        try:
            path = save(self.session.baselines_dir, name, self.session.records)
        except BaselineError as exc:
            write(f"baseline not saved: {exc}")
            return [f"baseline {name!r} not saved: {exc}"]
        note = (f"baseline {name!r} saved to {path}" if path else
                f"baseline {name!r} not saved: no run completed")
        write(note)
        return [note]

    def _draw(self, write) -> list[Path]:
        config = self.session.config
        wanted = config.getoption("sm_plots") or config.getini("sm_plots")
        if not wanted:
            return []
        from . import pictures, plots

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
    from .sagemaker.settings import SettingsError

    try:
        rows = _plan_rows(config, session.items)
    except (SettingsError, YamlError) as exc:
        raise pytest.UsageError(f"cannot make the plan: {exc}") from None
    from . import plan

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    reporter.write_sep("=", "sm-pytest plan")
    reporter.write_line(plan.format_plan(rows))
    config.option.collectonly = True  # the plan is the whole session


def _plan_rows(config: pytest.Config, items) -> list:
    from . import plan

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
