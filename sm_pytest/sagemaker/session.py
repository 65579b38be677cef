"""What one pytest session needs for --sm: settings per run, the emulator when asked for,
the backend, and SageMaker Experiments. Imported only when --sm is given."""

from __future__ import annotations

import atexit
import dataclasses
import gc
import json
import os
import queue
from collections.abc import Callable
from pathlib import Path

from ..spec import RunSpec
from . import settings as sm_settings

EMULATED_ROLE = "arn:aws:iam::123456789012:role/sm-pytest-emulated"
EMULATED_BUCKET = "sm-pytest-emulated"
EMULATED_REGION = "us-east-1"


def boto_session(region: str | None):
    import boto3

    return boto3.Session(region_name=region)


class SageMakerSession:
    def __init__(self, *, cli: dict, ini: dict, config_path: Path | None, token: str,
                 emit: Callable[[str], None]):
        self.cli, self.ini, self.config_path = cli, ini, config_path
        self.token = token
        self.emit = emit
        self.lines: queue.Queue[str] = queue.Queue()
        self.emulator = None
        self.backend = None
        self.experiments = None
        self._settings: dict[tuple[str, str], sm_settings.SageMakerSettings] = {}

    def settings_for(self, run: RunSpec) -> sm_settings.SageMakerSettings:
        """The run's settings. They depend on nothing but its file and `sagemaker:` block
        (the rest is the session's), and every run is asked for them several times (check,
        fingerprint, launch): resolved once per distinct block."""
        key = (str(run.path), json.dumps(run.sagemaker, sort_keys=True, default=str))
        if key not in self._settings:
            self._settings[key] = self._resolve(run)
        return self._settings[key]

    def _resolve(self, run: RunSpec) -> sm_settings.SageMakerSettings:
        resolved = sm_settings.resolve(cli=self.cli, ini=self.ini, config_path=self.config_path,
                                       experiment_block=run.sagemaker, environ=os.environ,
                                       experiment_path=run.path)
        if resolved.emulate:
            # An emulated account needs no real role or bucket.
            resolved = dataclasses.replace(resolved, role=resolved.role or EMULATED_ROLE,
                                           bucket=resolved.bucket or EMULATED_BUCKET,
                                           region=resolved.region or EMULATED_REGION)
        return resolved

    def prices(self) -> dict[str, float]:
        """USD per instance-hour from the config file's `prices:` (for --sm-plan)."""
        from ..plan import load_prices
        from ..yamlsafe import load

        if self.config_path is None:
            return {}
        return load_prices(load(self.config_path).value, str(self.config_path))

    def check(self, runs: list[RunSpec]) -> None:
        """Every setting problem of every selected run, raised once, before any launch."""
        problems: dict[str, None] = {}
        for run in runs:
            try:
                sm_settings.require_launch_settings(self.settings_for(run))
            except sm_settings.SettingsError as exc:
                problems[str(exc)] = None
        if problems:
            raise sm_settings.SettingsError("\n".join(problems))

    def start(self, runs: list[RunSpec]):
        """Create the backend (and the emulator first, when asked for) and plan the
        Experiments names of `runs`. Called again, it only plans the new runs."""
        if self.backend is not None:
            self.experiments.plan(runs)
            self.flush()
            return self.backend
        from ..backends.sagemaker import SageMakerBackend
        from .experiments import SageMakerExperiments

        _skip_final_collections()
        first = self.settings_for(runs[0])
        if first.emulate and self.emulator is None:
            from .emulator import Emulator

            self.emulator = Emulator(region=first.region or "us-east-1")
            self.emulator.__enter__()
            _arm_from_environment(self.emulator)
        self.backend = SageMakerBackend(
            settings_for=self.settings_for, region=first.region, token=self.token,
            max_parallel=first.max_parallel, progress=self.lines.put,
            poll_interval=0.5 if first.emulate else 15.0, tick=self.flush)
        if first.emulate:
            self.backend.s3.create_bucket(Bucket=first.bucket)  # a setting of the session
        self.experiments = SageMakerExperiments(self.backend.session, notice=self.lines.put)
        self.backend.experiments = self.experiments
        self.experiments.plan(runs)
        self.flush()
        return self.backend

    def flush(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            self.emit(line.rstrip("\n"))

    def close(self) -> list[str]:
        """Stop whatever this session launched and is still running; say which."""
        stopped = []
        try:
            if self.backend is not None:
                self.backend.stop_all()
                stopped = list(self.backend.stopped)
                self.backend.stopped.clear()
                self.backend.close()
                self._save_leftovers()
        finally:
            self.flush()
            if self.emulator is not None:
                self.emulator.wait_idle(timeout=30)
                self.emulator.__exit__(None, None, None)
                self.emulator = None
        return stopped

    def _save_leftovers(self) -> None:
        from .. import runner

        saved = []
        for result in self.backend.leftovers():
            try:
                runner.save(result)
                saved.append(str(result.artifact_dir))
            except OSError as exc:
                self.lines.put(f"could not save {result.artifact_dir}: {exc}")
        if saved:
            self.lines.put(f"saved the results and logs of {len(saved)} job(s) this session did"
                           f" not wait for: {', '.join(saved)}")


_FREEZE_AT_EXIT = []


def _skip_final_collections() -> None:
    """The SDK, botocore's service models and moto leave millions of objects behind; the
    interpreter's last garbage collections walked them for about 1 s after the summary was
    printed. Frozen at exit, they are skipped (memory is the OS's to take back). Done at
    exit, not now, so that an in-process pytest run (pytester) never freezes its host."""
    if not _FREEZE_AT_EXIT:
        _FREEZE_AT_EXIT.append(atexit.register(gc.freeze))


def _arm_from_environment(emulator) -> None:
    """Testing knobs for --sm-emulate runs started as a whole pytest session:
    SM_PYTEST_EMULATE_SPOT_INTERRUPTIONS=<job-name prefix>[,...] interrupts those spot jobs
    once; SM_PYTEST_EMULATE_THROTTLE=N makes the first N CreateTrainingJob calls throttled."""
    for prefix in filter(None, os.environ.get("SM_PYTEST_EMULATE_SPOT_INTERRUPTIONS",
                                              "").split(",")):
        emulator.interrupt_spot(prefix.strip(), after_checkpoint=True)
    throttled = os.environ.get("SM_PYTEST_EMULATE_THROTTLE", "")
    if throttled.isdigit() and int(throttled) > 0:
        emulator.throttle("CreateTrainingJob", times=int(throttled),
                          code="ThrottlingException")
