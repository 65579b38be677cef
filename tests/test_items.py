"""The collection nodes' helpers: how paths and YAML errors are shown, what a launched run
left, and which items pytest skips before their setup (they are never launched)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from sm_pytest.items import _describe, _shown, skipped_before_setup
from sm_pytest.session import Pending
from sm_pytest.spec.yamlsafe import YamlError


def test_paths_are_shown_from_the_rootdir(tmp_path: Path):
    inside = tmp_path / "experiments" / "a.yaml"
    assert _shown(inside, tmp_path) == Path("experiments/a.yaml")
    assert _shown(Path("/elsewhere/a.yaml"), tmp_path) == Path("/elsewhere/a.yaml")


def test_yaml_errors_name_the_file_and_line(tmp_path: Path):
    path = tmp_path / "a.yaml"
    assert _describe(YamlError(path, 3, "bad value"), tmp_path) == "a.yaml:3: bad value"
    assert _describe(YamlError(path, None, "empty file"), tmp_path) == "a.yaml: empty file"


def test_results_left_prefer_the_cache_then_the_job():
    cached, collected = object(), object()
    pendings = [Pending(None, cached=cached, handle=None),
                Pending(None, cached=None, handle=SimpleNamespace(result=collected)),
                Pending(None, cached=None, handle=SimpleNamespace())]
    assert [pending.result_left() for pending in pendings] == [cached, collected, None]


@pytest.mark.parametrize(("marks", "skipped"), [
    ("", False),
    ("@pytest.mark.skip", True),
    ("@pytest.mark.skipif(True, reason='r')", True),
    ("@pytest.mark.skipif(False, reason='r')", False),
    ("@pytest.mark.xfail(run=False)", True),
    ("@pytest.mark.xfail", False),
    ("@pytest.mark.skipif('no_such_name', reason='r')", True),  # errors in setup instead
])
def test_skipped_before_setup(pytester: pytest.Pytester, marks: str, skipped: bool):
    pytester.makepyfile(f"import pytest\n\n{marks}\ndef test_it():\n    pass\n")
    items, _ = pytester.inline_genitems()
    assert skipped_before_setup(items[0]) is skipped
