"""README's quick start must stay true: CI runs exactly its test command."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    command = "pip install -e '.[mnist,dev]' && pytest tests"
    assert f"    {command}" in readme
    assert ci_lines[-1] == command
    assert "    pip install -e '.[mnist]' && pytest experiments" in readme


def test_every_sm_pytest_path_the_readme_names_exists():
    readme = (ROOT / "README.md").read_text() + (ROOT / "benchmarks" / "README.md").read_text()
    named = set(re.findall(r"sm_pytest/[\w/]*\w(?:\.py|/)?", readme))
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"README names paths that are gone: {missing}"


def test_the_readme_layout_lists_every_room_of_the_package():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Inside `sm_pytest/`", 1)[1].split("\n### ", 1)[0]
    listed = {line.split()[0] for line in block.splitlines() if line.startswith("    ")
              and not line.startswith("     ")}
    package = ROOT / "sm_pytest"
    rooms = {p.name for p in package.glob("*.py") if p.name != "__init__.py"}
    rooms |= {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()}
    assert listed == rooms


def test_the_readme_python_imports_work():
    readme = (ROOT / "README.md").read_text()
    imports = [line.strip() for block in re.findall(r"```python\n(.*?)```", readme, re.S)
               for line in block.splitlines() if line.startswith(("from sm_pytest", "import sm_"))]
    assert "from sm_pytest.store.tracking import runs_frame, metrics_frame" in imports
    assert "from sm_pytest.sagemaker.emulator import Emulator" in imports
    # A fresh interpreter, so that what the emulator imports (moto) stays out of this one.
    subprocess.run([sys.executable, "-c", "\n".join(imports)], check=True, cwd=ROOT)
