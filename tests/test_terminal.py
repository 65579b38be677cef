"""sm_pytest/terminal.py: where live lines go on pytest's terminal, and how one is written
while a test's output is captured."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

from sm_pytest.terminal import terminal_emitter, write_terminal_line


class FakeWriter:
    def __init__(self, open_width: int):
        self.width_of_current_line = open_width
        self.lines = 0

    def line(self):
        self.lines += 1
        self.width_of_current_line = 0


class FakeReporter:
    def __init__(self, open_width: int = 0):
        self._tw = FakeWriter(open_width)
        self.written: list[str] = []
        self.newlines = 0

    def ensure_newline(self):
        self.newlines += 1

    def write_line(self, line):
        self.written.append(line)


class FakeCapture:
    def __init__(self):
        self.disabled = 0

    @contextlib.contextmanager
    def global_and_fixture_disabled(self):
        self.disabled += 1
        yield


def fake_config(verbosity: int = 0, plugins: dict | None = None, **extra):
    plugins = plugins or {}
    manager = SimpleNamespace(get_plugin=plugins.get)
    return SimpleNamespace(get_verbosity=lambda: verbosity, pluginmanager=manager, **extra)


def test_nobody_sees_progress_with_q_or_in_an_xdist_worker():
    assert terminal_emitter(fake_config(verbosity=-1)) is None
    assert terminal_emitter(fake_config(workerinput={})) is None


def test_progress_goes_to_the_terminal_reporter_around_the_capture():
    reporter, capture = FakeReporter(), FakeCapture()
    emit = terminal_emitter(fake_config(plugins={"terminalreporter": reporter,
                                                 "capturemanager": capture}))
    emit("baseline: epoch 1  accuracy=0.9  (1 s)")
    assert reporter.written == ["baseline: epoch 1  accuracy=0.9  (1 s)"]
    assert capture.disabled == 1


def test_a_line_left_open_by_pytest_is_ended_first():
    reporter = FakeReporter(open_width=7)  # e.g. `[ 50%]`
    write_terminal_line(fake_config(plugins={"terminalreporter": reporter}), "notice")
    assert reporter._tw.lines == 1 and reporter.written == ["notice"]
    write_terminal_line(fake_config(plugins={"terminalreporter": reporter}), "again")
    assert reporter._tw.lines == 1  # nothing open the second time


def test_without_a_terminal_reporter_nothing_is_written():
    write_terminal_line(fake_config(), "lost quietly")  # no error
