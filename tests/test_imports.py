"""Collecting and running local experiments must not import the AWS stack or torch, and
pandas only for the summary table."""

from __future__ import annotations

import json
import subprocess
import sys

AWS = {"sagemaker", "boto3", "botocore", "moto", "s3transfer"}
# Imported only with --sm-mlflow and a `tune:` block.
OPTIONAL = {"mlflow", "optuna"}

RECORD_MODULES = """
import json, sys

def pytest_collection_finish(session):
    _dump("collected.json")

def pytest_unconfigure(config):
    _dump("finished.json")

def _dump(name):
    with open(name, "w") as out:
        json.dump(sorted({m.split(".")[0] for m in sys.modules}), out)
"""


def test_plugin_import_is_light():
    code = ("import sys, json, sm_pytest.plugin; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))
    assert not loaded & (AWS | OPTIONAL | {"torch", "pandas", "numpy"})


def test_local_run_imports_no_aws_module(project):
    project.experiment("baseline", "base: config/base.yaml\nexpect: {accuracy: '>= 0.9'}\n")
    (project.root / "conftest.py").write_text(RECORD_MODULES)
    project.run_subprocess().assert_outcomes(passed=1)
    collected = set(json.loads((project.root / "collected.json").read_text()))
    finished = set(json.loads((project.root / "finished.json").read_text()))
    assert not collected & (AWS | OPTIONAL | {"torch", "pandas"})
    assert not finished & (AWS | OPTIONAL | {"torch"})
    assert "pandas" in finished  # the summary table was built
