"""README's quick start must stay true: CI runs exactly its test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    command = "pip install -e '.[mnist,dev]' && pytest tests"
    assert f"    {command}" in readme
    assert ci_lines[-1] == command
    assert "    pip install -e '.[mnist]' && pytest experiments" in readme
