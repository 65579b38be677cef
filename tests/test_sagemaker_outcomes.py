"""What a --sm run reports when the service answers as it may in real life: logs served in
small and empty pages, a quota of 0, a spot job that never got capacity, an archive these
credentials may not read. Driven through pytester against the emulator (--sm-emulate)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytest.importorskip("moto")
pytest.importorskip("sagemaker.core")

from sm_pytest.backends.sagemaker import SageMakerBackend  # noqa: E402
from sm_pytest.sagemaker.emulator.service import Emulator  # noqa: E402
from sm_pytest.sagemaker.outcomes import QUOTAS_PAGE  # noqa: E402

SM = ("--sm", "--sm-emulate", "--sm-region", "us-east-1")
PASSING = """
    base: config/base.yaml
    hyperparameters: {epochs: 6}
    expect:
      accuracy: ">= 0.9"
"""
ZERO_SPOT_QUOTA = (
    "The account-level service limit 'ml.m5.xlarge for spot training job usage' is 0 Instances,"
    " with current utilization of 0 Instances and a request delta of 1 Instances. Please use"
    " AWS Service Quotas to request an increase for this quota. If AWS Service Quotas is not"
    " available, contact AWS support to request an increase for this quota.")


def attempt_dir(project, experiment, run="default"):
    return project.artifacts / experiment / run / "attempt-0001"


def test_a_log_served_with_empty_pages_mid_stream_is_read_whole(project, monkeypatch):
    paged = []
    paginate = Emulator.paginate_logs
    monkeypatch.setattr(Emulator, "paginate_logs",
                        lambda self, **kw: paged.append(paginate(self, **kw)) or paged[-1])
    monkeypatch.setenv("SM_PYTEST_EMULATE_LOG_PAGES", "2,3")
    project.experiment("baseline", PASSING)
    result = project.run(*SM)
    result.assert_outcomes(passed=1)
    (paging,) = paged
    # Empty pages came before the end of the stream: a reader that stopped at the first one
    # would have kept two lines, none of them a metric.
    assert paging.empty_served >= 3
    log = (attempt_dir(project, "baseline") / "train.log").read_text().splitlines()
    epochs = [line for line in log if line.startswith("epoch=")]
    assert epochs == [f"epoch={e} loss={0.1 * (7 - e):.4f} accuracy={0.97 - 0.01 * (6 - e):.4f}"
                      for e in range(1, 7)]
    assert log[-1] == "Reporting training SUCCESS"
    metrics = pd.read_csv(attempt_dir(project, "baseline") / "metrics.csv")
    assert list(metrics[metrics.metric == "accuracy"].value) == pytest.approx(
        [0.92, 0.93, 0.94, 0.95, 0.96, 0.97])
    summary = pd.read_csv(project.artifacts / "summary.csv")
    assert summary.loc[0, "accuracy"] == 0.97 and summary.loc[0, "loss"] == pytest.approx(0.1)


def test_a_quota_of_zero_fails_at_once_naming_the_quota(project, monkeypatch):
    monkeypatch.setenv("SM_PYTEST_EMULATE_THROTTLE", "1")
    monkeypatch.setenv("SM_PYTEST_EMULATE_THROTTLE_CODE", "ResourceLimitExceeded")
    monkeypatch.setenv("SM_PYTEST_EMULATE_THROTTLE_MESSAGE", ZERO_SPOT_QUOTA)
    project.experiment("baseline", PASSING)
    result = project.run_subprocess(*SM, "--spot")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "retrying" not in out
    result.stdout.fnmatch_lines([
        "reason: CreateTrainingJob failed and was not retried: the account's SageMaker quota"
        " 'ml.m5.xlarge for spot training job usage' is 0 instances*"])
    assert QUOTAS_PAGE in out and "without --spot" in out


def test_a_quota_of_zero_names_where_spot_was_turned_on(project, monkeypatch):
    monkeypatch.setenv("SM_PYTEST_EMULATE_THROTTLE", "1")
    monkeypatch.setenv("SM_PYTEST_EMULATE_THROTTLE_CODE", "ResourceLimitExceeded")
    monkeypatch.setenv("SM_PYTEST_EMULATE_THROTTLE_MESSAGE", ZERO_SPOT_QUOTA)
    project.experiment("baseline", """
        base: config/base.yaml
        sagemaker: {spot: true}
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run_subprocess(*SM)  # no --spot: the file asked for it
    result.assert_outcomes(errors=1)
    out = " ".join(result.stdout.str().split())
    assert "--spot" not in out
    where = project.root / "experiments" / "baseline.yaml"
    assert f"or turn spot off where it is set ({where}:3; on-demand has its own quota)" in out


def test_a_quota_in_use_is_retried(project, monkeypatch):
    monkeypatch.setenv("SM_PYTEST_EMULATE_THROTTLE", "1")
    monkeypatch.setenv("SM_PYTEST_EMULATE_THROTTLE_CODE", "ResourceLimitExceeded")
    project.experiment("baseline", PASSING)
    result = project.run_subprocess(*SM)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ResourceLimitExceeded, retrying in*"])


def test_a_spot_job_that_never_got_capacity_says_so_with_the_figures(project, monkeypatch):
    monkeypatch.setenv("SM_PYTEST_EMULATE_NO_SPOT_CAPACITY", "starved")
    project.experiment("starved", """
        base: config/base.yaml
        sagemaker: {max_run: 1, max_wait: 2}
        expect: {accuracy: ">= 0.9"}
    """)
    result = project.run_subprocess(*SM, "--spot")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*starved: the run timed out and produced no verdict",
        "reason: no ml.m5.xlarge spot capacity came within max_wait, so the job never started"
        " training; SageMaker stopped it (MaxWaitTimeInSeconds 2 s, MaxRuntimeInSeconds 1 s,"
        " * s since the job was created, 0 s of training). Give a larger max_wait, another"
        " instance_type, or run on-demand (without --spot)."])
    describe = json.loads((attempt_dir(project, "starved") / "describe.json").read_text())
    assert (describe["TrainingJobStatus"], describe["SecondaryStatus"]) == (
        "Stopped", "MaxWaitTimeExceeded")


def test_an_archive_these_credentials_may_not_read_is_reported(project, monkeypatch):
    from botocore.awsrequest import AWSResponse

    def deny_model(params, **_):
        if params["url_path"].endswith("/model.tar.gz"):  # the request, as serialized
            return (AWSResponse("", 403, {}, None),
                    {"Error": {"Code": "403", "Message": "Forbidden"}})
        return None

    init = SageMakerBackend.__init__

    def init_denying(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.s3.meta.events.register("before-call.s3.HeadObject", deny_model)

    monkeypatch.setattr(SageMakerBackend, "__init__", init_denying)
    project.experiment("baseline", PASSING)
    result = project.run(*SM)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*baseline-*: could not download the job's model.tar.gz (s3://*/model.tar.gz):*403*",
        "reason: could not download the job's model.tar.gz*s3:GetObject*"])
    attempt = attempt_dir(project, "baseline")
    assert not (attempt / "model").exists()
    saved = json.loads((attempt / "result.json").read_text())
    assert saved["final_metrics"]["accuracy"] == 0.97  # the job's own result is kept
    assert "model.tar.gz" in saved["failure_reason"]


def test_only_a_quota_of_zero_counts_as_one_no_retry_can_mend():
    from sm_pytest.sagemaker.emulator.service import DEFAULT_ERROR_MESSAGES
    from sm_pytest.sagemaker.outcomes import zero_quota

    assert zero_quota(ZERO_SPOT_QUOTA) == "ml.m5.xlarge for spot training job usage"
    assert zero_quota(DEFAULT_ERROR_MESSAGES["ResourceLimitExceeded"]) is None  # 1, in use
    assert zero_quota("The account-level service limit 'x' is 10 Instances, with ...") is None


def test_a_spot_job_that_trained_but_ran_out_of_max_wait_says_so():
    from datetime import datetime, timedelta, timezone

    from sm_pytest.sagemaker.outcomes import max_wait_reason

    created = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    reason = max_wait_reason({
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge"},
        "CreationTime": created, "TrainingStartTime": created + timedelta(seconds=900),
        "TrainingEndTime": created + timedelta(seconds=7200), "TrainingTimeInSeconds": 3100,
    })
    assert reason == (
        "the spot job did not finish within max_wait (waiting for capacity and spot"
        " interruptions count against it); SageMaker stopped it (MaxWaitTimeInSeconds 7200 s,"
        " MaxRuntimeInSeconds 3600 s, 7200 s since the job was created, 3100 s of training)."
        " Give a larger max_wait, another instance_type, or run on-demand (without --spot).")


def test_a_config_file_with_instance_count_1_still_runs_and_says_to_remove_it(project):
    # config/sagemaker.yaml as shipped before multi-host runs held `instance_count: 1`.
    (project.root / "config" / "sagemaker.yaml").write_text(
        "instance_type: ml.m5.xlarge\ninstance_count: 1\n")
    project.pytester.makeini("[pytest]\nsm_config = config/sagemaker.yaml\n")
    project.experiment("passing", PASSING)
    result = project.run(*SM)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*config/sagemaker.yaml:2: 'instance_count: 1' in the"
                                 " SageMaker config file is deprecated and ignored (the number"
                                 " of hosts is the experiment's top-level instance_count,"
                                 " default 1); remove it"])
    assert result.stdout.str().count("is deprecated and ignored") == 1
