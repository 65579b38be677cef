"""Warm pools on the --sm path, against the emulator: a finishing job's pool handed to the
next queued job that matches, the reuse seen in the summary with its idle time, the pools
released once no job can use them (or left with --sm-keep-pools), and the quota checked
before anyone waits."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

# At import, not in a test: a first import inside a pytester test is undone after it, and
# the next one no longer finds botocore's package metadata.
pytest.importorskip("moto")
pytest.importorskip("sagemaker.core")

from sm_pytest.backends.sagemaker_pools import PoolKeeper  # noqa: E402
from sm_pytest.model import RunRecord  # noqa: E402
from sm_pytest.report import pools as report_pools  # noqa: E402
from sm_pytest.sagemaker import warm_pools  # noqa: E402

SM = ("--sm", "--sm-emulate", "--sm-region", "us-east-1")
QUOTA = "SM_PYTEST_EMULATE_WARM_POOL_QUOTA"
START = "SM_PYTEST_EMULATE_START_SECONDS"
SWEEP = """
    base: config/base.yaml
    hyperparameters: {sleep: 0.3}
    matrix: {accuracy: [0.91, 0.92, 0.93, 0.94, 0.95, 0.96]}
    expect: {accuracy: ">= 0.9"}
"""


def _summary(project) -> pd.DataFrame:
    return pd.read_csv(project.artifacts / "summary.csv", keep_default_na=False)


@pytest.fixture
def emulated(monkeypatch):
    # A cold start takes 2 s, a start on a warm pool 0.1 s (the emulator's model of minutes
    # against seconds, see emulator/service.py): a margin a loaded machine cannot close.
    monkeypatch.setenv(START, "2.0,0.1")
    return monkeypatch


def test_six_job_sweep_reuses_four_pools_and_releases_the_last_two(project, emulated):
    emulated.setenv(QUOTA, "ml.m5.xlarge=4")
    project.experiment("sweep", SWEEP)
    result = project.run_subprocess(*SM, "--sm-max-parallel", "2", "--sm-keep-alive", "60")
    result.assert_outcomes(passed=6)
    output = result.stdout.str()
    assert output.count("started on the warm pool of sweep-") == 4, output
    assert "released the warm pools of 2 job(s)" in output
    summary = _summary(project)
    assert sorted(summary["pool"].str.split(":").str[0]) == ["cold"] * 2 + ["warm"] * 4
    after = summary["pool_after"].tolist()
    assert sum(a.startswith("reused by sweep-") for a in after) == 4
    assert after.count("released") == 2 and "available" not in after  # nothing left billing
    assert (summary["idle_s"] >= 1).all()  # every pool idled, and each second is billed
    warm = summary[summary["pool"].str.startswith("warm")]["start_s"]
    cold = summary[summary["pool"] == "cold"]["start_s"]
    assert warm.max() < cold.min()
    # Whose pool each job took is the job that names it as its reuser.
    for _, row in summary[summary["pool"].str.startswith("warm")].iterrows():
        owner = row["pool"].split(": ", 1)[1]
        assert summary.set_index("job").loc[owner, "pool_after"] == f"reused by {row['job']}"
    markdown = (project.artifacts / "summary.md").read_text()
    assert "4 of 6 SageMaker job(s) started on a reused pool" in markdown
    assert "s saved" in markdown and "of warm-pool idle time" in markdown


def test_keep_pools_leaves_the_last_pools_available(project, emulated):
    emulated.setenv(QUOTA, "ml.m5.xlarge=2")
    project.experiment("pair", """
        base: config/base.yaml
        matrix: {accuracy: [0.91, 0.92]}
    """)
    result = project.run_subprocess(*SM, "--sm-keep-alive", "60", "--sm-keep-pools")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*left 2 warm pool(s) Available for the next session"
                                 " (--sm-keep-pools): pair-*"])
    assert "released the warm pools" not in result.stdout.str()
    assert _summary(project)["pool_after"].tolist() == ["available", "available"]
    assert "still counting for 2 pool(s) left Available" in result.stdout.str()


def test_reused_runs_show_no_pool_of_an_earlier_session(project, emulated):
    emulated.setenv(QUOTA, "ml.m5.xlarge=2")
    project.experiment("pair", """
        base: config/base.yaml
        matrix: {accuracy: [0.91, 0.92]}
    """)
    project.run_subprocess(*SM, "--sm-keep-alive", "60").assert_outcomes(passed=2)
    assert _summary(project)["pool_after"].tolist() == ["released", "released"]
    again = project.run_subprocess(*SM, "--sm-keep-alive", "60", "--sm-reuse")
    again.assert_outcomes(passed=2)
    summary = _summary(project)
    assert summary["status"].tolist() == ["cached", "cached"]
    assert "pool_after" not in summary or set(summary["pool_after"]) == {""}
    assert "idle time" not in (project.artifacts / "summary.md").read_text()


def test_a_warm_pool_quota_of_zero_is_said_before_anyone_waits(project, emulated):
    project.experiment("alone", "base: config/base.yaml\n")
    result = project.run_subprocess(*SM, "--sm-keep-alive", "60")
    result.assert_outcomes(passed=1)
    output = result.stdout.str()
    notice = ("warm pools: the quota 'ml.m5.xlarge for training warm pool usage' is 0 in"
              " us-east-1, so keep_alive will have no effect")
    assert output.count(notice) >= 1
    assert output.index(notice) < output.index("alone-")  # before the job was launched
    # Emulated, the way to grant the quota is the emulator's; on AWS it is the CLI command.
    assert "Emulated: SM_PYTEST_EMULATE_WARM_POOL_QUOTA=ml.m5.xlarge=1 grants it" in output
    assert _summary(project)["pool_after"].tolist() == ["not kept"]


def test_a_caller_without_service_quotas_permissions_gets_a_note(project, emulated):
    emulated.setenv("SM_PYTEST_EMULATE_DENY_SERVICE_QUOTAS", "1")
    emulated.setenv(QUOTA, "ml.m5.xlarge=1")
    project.experiment("alone", "base: config/base.yaml\n")
    result = project.run_subprocess(*SM, "--sm-keep-alive", "60")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["warm pools: could not read the quota 'ml.m5.xlarge for"
                                 " training warm pool usage' (this caller may not read Service"
                                 " Quotas*"])
    assert "## Notes" in (project.artifacts / "summary.md").read_text()


def test_spot_jobs_keep_no_pool_and_say_why(project, emulated):
    emulated.setenv(QUOTA, "ml.m5.xlarge=2")
    project.experiment("cheap", "base: config/base.yaml\n")
    result = project.run_subprocess(*SM, "--spot", "--sm-keep-alive", "60")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*keep_alive (60 s) is ignored for spot jobs*"])
    request = json.loads((project.artifacts / "cheap" / "default" / "attempt-0001"
                          / "request.json").read_text())
    assert "KeepAlivePeriodInSeconds" not in request["ResourceConfig"]
    assert "pool_after" not in _summary(project).columns
    assert "warm pools:" not in result.stdout.str()  # no quota check, no pool notes


def test_ctrl_c_mid_sweep_releases_the_pools_of_the_stopped_jobs(project, emulated):
    emulated.setenv(QUOTA, "ml.m5.xlarge=4")
    project.experiment("sweep", """
        base: config/base.yaml
        max_run: 300
        matrix: {sleep: [0, 0.01, 120, 121]}
    """)
    log = project.root / "pytest.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider", *SM,
             "--sm-max-parallel", "2", "--sm-keep-alive", "60"],
            cwd=project.root, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while log.read_text().count("started on the warm pool of") < 2:
                assert time.monotonic() < deadline and process.poll() is None, log.read_text()
                time.sleep(0.2)
            time.sleep(1)  # both are training now
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    output = log.read_text()
    assert "stopped SageMaker jobs on interrupt" in output
    assert "released the warm pools of 2 job(s)" in output, output
    assert "could not release" not in output
    after = _summary(project).set_index("run")["pool_after"]
    assert after["sleep=120"] == after["sleep=121"] == "released"
    assert after["sleep=0"].startswith("reused by") and after["sleep=0.01"].startswith("reused")


def test_xdist_workers_send_what_became_of_their_pools(project, emulated):
    pytest.importorskip("xdist")
    emulated.setenv(QUOTA, "ml.m5.xlarge=4")
    project.experiment("pair", """
        base: config/base.yaml
        matrix: {accuracy: [0.91, 0.92]}
    """)
    result = project.run_subprocess(*SM, "--sm-keep-alive", "60", "-n", "2")
    result.assert_outcomes(passed=2)
    after = _summary(project)["pool_after"].tolist()
    assert after == ["released", "released"], result.stdout.str()


def test_pip_cache_goes_to_the_warm_pool_cache_for_jobs_with_requirements(project, emulated):
    emulated.setenv(QUOTA, "ml.m5.xlarge=1")
    (project.root / "src" / "requirements.txt").write_text("# nothing to install\n")
    (project.root / "config" / "sagemaker.yaml").write_text("warm_pool_pip_cache: true\n")
    project.experiment("cached", "base: config/base.yaml\n")
    project.run_subprocess(*SM, "--sm-keep-alive", "60").assert_outcomes(passed=1)
    request = json.loads((project.artifacts / "cached" / "default" / "attempt-0001"
                          / "request.json").read_text())
    assert request["Environment"]["PIP_CACHE_DIR"] == "/opt/ml/sagemaker/warmpoolcache/pip"
    # Without a warm pool there is no persistent cache: said, and left alone.
    result = project.run_subprocess(*SM, "--sm-keep-alive", "0")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*warm_pool_pip_cache needs a warm pool*"])


# --- the parts, without a session -----------------------------------------------------------

REQUEST = {"RoleArn": "arn:aws:iam::123456789012:role/r",
           "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                              "VolumeSizeInGB": 30, "KeepAlivePeriodInSeconds": 60}}


def test_match_key_follows_the_guides_list():
    other = json.loads(json.dumps(REQUEST))
    other["ResourceConfig"]["VolumeSizeInGB"] = 50
    assert warm_pools.match_key(REQUEST) != warm_pools.match_key(other)
    assert warm_pools.differences(other, REQUEST) == ["VolumeSizeInGB 50 (the pool's: 30)"]
    # keep-alive and flags left out mean the same as False; subnets in any order match
    same = {**REQUEST, "EnableNetworkIsolation": False,
            "ResourceConfig": {**REQUEST["ResourceConfig"], "KeepAlivePeriodInSeconds": 900}}
    assert warm_pools.match_key(same) == warm_pools.match_key(REQUEST)
    a = {**REQUEST, "VpcConfig": {"Subnets": ["s-1", "s-2"], "SecurityGroupIds": ["g"]}}
    b = {**REQUEST, "VpcConfig": {"Subnets": ["s-2", "s-1"], "SecurityGroupIds": ["g"]}}
    assert warm_pools.match_key(a) == warm_pools.match_key(b) != warm_pools.match_key(REQUEST)
    assert warm_pools.keeps_pool(REQUEST)
    assert not warm_pools.keeps_pool({**REQUEST, "EnableManagedSpotTraining": True})


class _Handle:
    def __init__(self, name, volume=30, keep_alive=60):
        self.job_name = name
        self.request = {**REQUEST, "ResourceConfig": {
            **REQUEST["ResourceConfig"], "VolumeSizeInGB": volume,
            "KeepAlivePeriodInSeconds": keep_alive}}


def test_a_free_pool_goes_to_the_first_queued_job_that_matches_it():
    keeper = PoolKeeper(None, print, keep=False, region="us-east-1", poll_interval=0.1)
    keeper.ended(_Handle("done"))
    queue = [_Handle("big", volume=50), _Handle("same-1"), _Handle("same-2")]
    assert [h.job_name for h in keeper.choose(queue, 1)] == ["same-1"]
    assert [h.job_name for h in keeper.choose(queue, 2)] == ["same-2", "big"]
    assert queue == []


def test_notes_count_reuse_time_saved_and_idle_time():
    def job(name, start, pool_from="", after="", idle=None):
        return {"status": "completed", "backend": "sagemaker", "job_name": name,
                "start_seconds": start, "pool_from": pool_from, "pool_after": after,
                "pool_idle_seconds": idle}

    record = RunRecord.from_json({
        "experiment": "s", "name": "s[a]", "run_id": "a", "verdict": "pass", **job("a", 100.0),
        "repeats": [job("a", 100.0, after="reused by b"), job("b", 10.0, pool_from="a",
                                                              after="released", idle=3)]})
    record = report_pools.apply([record], {"a": {"pool_idle_seconds": 5}})[0]
    assert record.repeats[0].pool_idle_seconds == 5
    lines = report_pools.notes([record])
    assert lines[0] == ("warm pools: 1 of 2 SageMaker job(s) started on a reused pool; from"
                        " creation to training they took 10.0 s on average, against 100.0 s"
                        " for the 1 cold start(s): about 90 s saved")
    assert lines[1].startswith("warm pools: 8 instance-second(s) of idle time billed")


class _FakeSageMaker:
    """DescribeTrainingJob and UpdateTrainingJob of a few jobs, for the pool keeper."""

    def __init__(self, statuses: dict[str, dict]):
        self.statuses = statuses
        self.updated: list[str] = []

    def describe_training_job(self, TrainingJobName):  # noqa: N803 (boto3's names)
        return {"WarmPoolStatus": self.statuses[TrainingJobName],
                "ResourceConfig": {"InstanceCount": 2}}

    def update_training_job(self, TrainingJobName, ResourceConfig):  # noqa: N803
        assert ResourceConfig == {"KeepAlivePeriodInSeconds": 0}
        self.updated.append(TrainingJobName)
        self.statuses[TrainingJobName] = {"Status": "Terminated",
                                          "ResourceRetainedBillableTimeInSeconds": 4}


def test_a_pool_is_not_released_while_a_job_of_its_shape_is_launching():
    sm = _FakeSageMaker({"done": {"Status": "Available"}, "next": {"Status": "InUse"}})
    keeper = PoolKeeper(sm, lambda line: None, keep=False, region="us-east-1",
                        poll_interval=0.1)
    keeper.all_submitted = True
    queue = [_Handle("next")]
    keeper.choose(queue, 1)  # launching, and no pool was free when it was chosen
    keeper.ended(_Handle("done"))  # a pool of its shape comes free meanwhile
    keeper.release_unneeded(queue)
    assert sm.updated == []
    sm.statuses["done"] = {"Status": "Reused", "ReusedByJob": "next"}
    next_job = keeper.starting[0]
    next_job.pool_from = ""
    keeper.confirm(next_job)
    assert next_job.pool_from == "done"
    facts = keeper.facts(["done", "next"])
    assert facts["done"]["pool_after"] == "reused by next"
    assert facts["next"]["pool_from"] == "done"


def test_a_pool_still_in_use_is_asked_again_and_released_once_available():
    sm = _FakeSageMaker({"done": {"Status": "InUse"}})
    keeper = PoolKeeper(sm, lambda line: None, keep=False, region="us-east-1",
                        poll_interval=0.1)
    keeper.all_submitted = True
    keeper.ended(_Handle("done"))
    keeper.release_unneeded([])
    assert sm.updated == [] and len(keeper.free) == 1
    sm.statuses["done"] = {"Status": "Available"}
    keeper.release_unneeded([])
    assert sm.updated == ["done"] and keeper.free == []
    notices = keeper.finish([("done", 60)])
    assert notices == ["released the warm pools of 1 job(s) that no job of this session could"
                       " use (UpdateTrainingJob KeepAlivePeriodInSeconds=0): done"]
    assert keeper.facts(["done"])["done"] == {"pool_after": "released",
                                              "pool_idle_seconds": 8}  # 4 s x 2 instances


def test_an_interrupted_end_lists_the_command_for_each_pool_left():
    sm = _FakeSageMaker({"a": {"Status": "InUse"}, "b": {"Status": "Available"}})
    keeper = PoolKeeper(sm, lambda line: None, keep=False, region="eu-west-1",
                        poll_interval=0.1)

    def ctrl_c(_seconds):
        raise KeyboardInterrupt

    notices = keeper.finish([("a", 60), ("b", 60)], wait_s=30, sleep=ctrl_c)
    # b, Available, is released before the wait for a; a, still ending, is left with its
    # command.
    assert sm.updated == ["b"]
    assert notices == [
        "released the warm pools of 1 job(s) that no job of this session could use"
        " (UpdateTrainingJob KeepAlivePeriodInSeconds=0): b",
        "could not release the warm pools of a (interrupted); they bill until their keep_alive"
        " ends, or end them with: aws sagemaker update-training-job --training-job-name a"
        " --resource-config KeepAlivePeriodInSeconds=0 --region eu-west-1"]


def test_a_refused_release_is_said_once_and_listed_at_the_end():
    class Refusing(_FakeSageMaker):
        def update_training_job(self, TrainingJobName, ResourceConfig):  # noqa: N803
            self.updated.append(TrainingJobName)
            raise RuntimeError("AccessDeniedException: not authorized: UpdateTrainingJob")

    sm = Refusing({"done": {"Status": "Available"}})
    lines = []
    keeper = PoolKeeper(sm, lines.append, keep=False, region="us-east-1", poll_interval=0.1)
    keeper.all_submitted = True
    keeper.ended(_Handle("done"))
    for _ in range(3):  # three polls: one try
        keeper.release_unneeded([])
    assert sm.updated == ["done"] and len(lines) == 1
    notices = keeper.finish([("done", 60)])
    assert sm.updated == ["done"]
    assert notices[0].startswith("could not release the warm pools of done (AccessDenied")
    assert "--training-job-name done" in notices[0]
    # Asked to end but still shown Available a moment: reported as released, not billing.
    released = warm_pools.PoolState(status="Available")
    assert warm_pools.fate(released, released=True) == "released"


def test_the_quota_request_command_names_the_quota_code_and_region():
    answer = warm_pools.QuotaAnswer("ml.m5.xlarge", 0.0, code="L-0BEF44E8")
    assert warm_pools.request_command(answer, "us-east-1", 2) == (
        "aws service-quotas request-service-quota-increase --service-code sagemaker"
        " --quota-code L-0BEF44E8 --desired-value 2 --region us-east-1")
