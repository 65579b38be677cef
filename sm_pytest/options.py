"""The command-line options and ini values of sm-pytest, registered by
plugin.pytest_addoption. Each SageMaker value option has an ini value of the same name
(SM_VALUE_OPTIONS), and the SageMaker session is given both (sagemaker_hooks.py)."""

from __future__ import annotations

import pytest

# Standard library and yaml only: the options stay cheap to register.
from sm_pytest.sagemaker.settings import DEFAULT_CONFIG_PATH


def add_options(parser: pytest.Parser) -> None:
    """Every option and ini value of sm-pytest, in the groups that `pytest --help` shows."""
    group = parser.getgroup("sm-pytest", "training experiments (sm-pytest)")
    group.addoption("--sm-artifacts", metavar="DIR", default=None,
                    help="folder for run artifacts, the tracking store and the summary,"
                         " relative to the current directory (default: ini sm_artifacts,"
                         " else sm-artifacts/ in the rootdir)")
    parser.addini("sm_artifacts", "folder for run artifacts (relative to the rootdir)",
                  default="sm-artifacts")
    parser.addini("sm_experiment_paths", "folders whose YAML files are experiments (relative"
                  " to the rootdir); YAML anywhere else is never collected",
                  type="args", default=["experiments"])
    group.addoption("--sm-mlflow", dest="sm_mlflow", metavar="URI", default=None,
                    help="also track every run in MLflow: a server (http://HOST:PORT), an"
                         " embedded store (sqlite:///mlruns.db) or a SageMaker MLflow ARN"
                         " (default: ini sm_mlflow_uri; needs sm-pytest[mlflow])")
    parser.addini("sm_mlflow_uri", "MLflow tracking URI to track every run in, as"
                  " --sm-mlflow")
    parser.addini("sm_mlflow_log_models", "with MLflow tracking: log each run's model folder"
                  " as an artifact", type="bool", default=True)
    sm = parser.getgroup("sm-pytest-sagemaker", "SageMaker training jobs (sm-pytest)")
    sm.addoption("--sm", action="store_true", default=False,
                 help="run every selected experiment as a SageMaker Training Job")
    sm.addoption("--spot", action="store_true", default=None,
                 help="with --sm: use managed spot capacity (checkpoints synced to S3)")
    sm.addoption("--sm-emulate", action="store_true", default=None,
                 help="with --sm: emulate SageMaker and S3 in process (no AWS account needed);"
                      " each job really runs the training script")
    sm.addoption("--sm-keep-pools", dest="sm_keep_pools", action="store_true", default=None,
                 help="with --sm: leave the warm pools of the last jobs Available when the"
                      " session ends, for the next session (they bill while idle); by"
                      " default they are released once no job of the session can use them")
    for name, metavar, text in SM_VALUE_OPTIONS:
        sm.addoption(f"--sm-{name.replace('_', '-')}", dest=f"sm_{name}", metavar=metavar,
                     default=None, help=text)
        parser.addini(f"sm_{name}", text)
    parser.addini("sm_spot", "use managed spot capacity for --sm runs", type="bool",
                  default=None)
    parser.addini("sm_emulate", "emulate SageMaker for --sm runs", type="bool", default=None)
    parser.addini("sm_keep_pools", "leave warm pools Available when an --sm session ends",
                  type="bool", default=None)
    parser.addini("sm_config", "SageMaker defaults file (relative to the rootdir)",
                  default=DEFAULT_CONFIG_PATH.as_posix())
    sm.addoption("--sm-history", metavar="EXPERIMENT", default=None,
                 help="print every recorded run of EXPERIMENT and exit: from MLflow with"
                      " --sm-mlflow (or ini sm_mlflow_uri), else from SageMaker Experiments")
    gate = parser.getgroup("sm-pytest-gating", "regression gating (sm-pytest)")
    gate.addoption("--sm-save-baseline", metavar="NAME", default=None,
                   help="record the final metrics of every run as baseline NAME, except runs"
                        " whose thresholds or baseline gate failed; nothing when the session"
                        " is interrupted, or stopped by -x before its last item")
    gate.addoption("--sm-save-baseline-force", action="store_true", default=False,
                   help="with --sm-save-baseline: record runs whose thresholds or baseline"
                        " gate failed too (a deliberate refresh)")
    gate.addoption("--sm-baseline", metavar="NAME", default=None,
                   help="fail a run whose metrics got worse than baseline NAME beyond"
                        " their tolerance")
    gate.addoption("--sm-baseline-strict", action="store_true", default=False,
                   help="with --sm-baseline: a run without a baseline entry, or with no"
                        " metric gated by a tolerance, fails")
    gate.addoption("--sm-baselines-dir", metavar="DIR", default=None,
                   help="folder of baseline files, relative to the current directory"
                        " (default: ini sm_baselines_dir, else baselines/ in the rootdir)")
    parser.addini("sm_baselines_dir", "folder of baseline files, meant to be committed"
                  " (relative to the rootdir)", default="baselines")
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


SM_VALUE_OPTIONS = [
    ("role", "ARN", "IAM role SageMaker assumes for the jobs"),
    ("region", "REGION", "AWS region (default: the standard AWS configuration)"),
    ("bucket", "BUCKET", "S3 bucket for code, data, checkpoints and outputs"),
    ("prefix", "PREFIX", "S3 key prefix under the bucket"),
    ("instance_type", "TYPE", "training instance type, e.g. ml.m5.xlarge"),
    ("max_parallel", "N", "at most N jobs in flight at once"),
    ("keep_alive", "SECONDS", "warm-pool keep-alive period (0 turns warm pools off)"),
]
