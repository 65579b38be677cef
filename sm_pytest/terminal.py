"""pytest's terminal, for lines that come while a test runs: live progress and notices.

Glue, kept apart from run/progress.py so that the run layer does not know pytest: the
backends are handed a plain callable (terminal_emitter) and never see the config.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest


def terminal_emitter(config: pytest.Config) -> Callable[[str], None] | None:
    """Where progress lines go: pytest's terminal. None when nobody would see them: -q, or a
    pytest-xdist worker (its terminal goes nowhere; xdist carries test reports to the
    controller, not lines)."""
    if config.get_verbosity() < 0 or hasattr(config, "workerinput"):
        return None
    return lambda line: write_terminal_line(config, line)


def write_terminal_line(config: pytest.Config, line: str) -> None:
    """One line on pytest's terminal, also while a test's output is captured (so that it
    shows without -s), on a line of its own even right after an item's progress letter."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        # After a file's name and letters: pytest ends that line itself, once.
        reporter.ensure_newline()
        writer = getattr(reporter, "_tw", None)
        if getattr(writer, "width_of_current_line", 0):
            writer.line()  # e.g. after `[ 50%]`, which pytest leaves open
        reporter.write_line(line)
