"""Warm pools, start latency and Service Quotas in the strict emulator: which ended job keeps
its cluster, which new job takes it and how much sooner it trains, what the idle time bills,
UpdateTrainingJob, the persistent cache, and the warm-pool quota as Service Quotas lists it."""

from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

from botocore.exceptions import ClientError  # noqa: E402
from test_emulator import BUCKET, request, wait_for  # noqa: E402

from sm_pytest.sagemaker.emulator import knobs, service_quotas  # noqa: E402
from sm_pytest.sagemaker.emulator.service import Emulator  # noqa: E402
from sm_pytest.sagemaker.emulator.warm_pools import (  # noqa: E402
    AVAILABLE,
    IN_USE,
    REUSED,
    TERMINATED,
    WarmPoolError,
    WarmPoolRegistry,
    keeps_pool,
    match_key,
)
from sm_pytest.sagemaker.settings import SettingsError  # noqa: E402

TYPE = "ml.m5.xlarge"

# A tiny program: lists the warm-pool cache, leaves a note there, then sleeps or fails.
PROGRAM = '''
import argparse, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--note", default="")
p.add_argument("--crash", default="")
args, _ = p.parse_known_args()
cache = os.environ.get("SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY")
print(f"cache={cache}", flush=True)
if cache:
    print(f"seen={sorted(os.listdir(cache))}", flush=True)
    if args.note:
        with open(os.path.join(cache, args.note), "w") as f:
            f.write(os.environ["TRAINING_JOB_NAME"])
time.sleep(args.sleep)
if args.crash:
    with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
        f.write(args.crash)
    sys.exit(3)
'''


@pytest.fixture
def emu(tmp_path):
    with Emulator(stop_grace_seconds=0.5, log_flush_seconds=0.1) as emu:
        s3 = emu.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        source = tmp_path / "src"
        source.mkdir()
        (source / "train.py").write_text(PROGRAM)
        emu.upload_source(source, f"s3://{BUCKET}/code/sourcedir.tar.gz")
        s3.put_object(Bucket=BUCKET, Key="data/training/sample.txt", Body=b"x")
        yield emu


def job(name: str, keep_alive: int | None = 60, **hyperparameters) -> dict:
    """A CreateTrainingJob request for PROGRAM, with that keep-alive."""
    req = request(name, **hyperparameters)
    req["HyperParameters"].pop("epochs")
    req["AlgorithmSpecification"].pop("MetricDefinitions")
    if keep_alive is not None:
        req["ResourceConfig"]["KeepAlivePeriodInSeconds"] = keep_alive
    return req


def run(sm, req: dict) -> dict:
    sm.create_training_job(**req)
    desc = wait_for(sm, req["TrainingJobName"])
    assert desc["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"), desc
    return desc


def pool_status(sm, name: str) -> dict | None:
    return sm.describe_training_job(TrainingJobName=name).get("WarmPoolStatus")


def pools(emu) -> dict:
    return {p.job_name: p for p in emu.warm_pools}


def wait_until(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def error_of(call, **params) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


# --- the emulated service ----------------------------------------------------------------


def test_with_the_default_quota_of_0_no_pool_is_kept(emu):
    sm = emu.client("sagemaker")
    sm.create_training_job(**job("quota-0", sleep=0.3))
    assert pool_status(sm, "quota-0") == {"Status": IN_USE}
    assert run(sm, job("plain", keep_alive=None))["TrainingJobStatus"] == "Completed"
    desc = wait_for(sm, "quota-0")
    assert desc["TrainingJobStatus"] == "Completed"
    assert desc["WarmPoolStatus"] == {"Status": TERMINATED,
                                      "ResourceRetainedBillableTimeInSeconds": 0}
    assert "WarmPoolStatus" not in sm.describe_training_job(TrainingJobName="plain")
    [pool] = emu.warm_pools  # only keep-alive jobs have one
    assert (pool.job_name, pool.status, pool.cache_dir) == ("quota-0", TERMINATED, None)


def test_a_matching_job_reuses_the_pool_and_starts_sooner(emu):
    emu.quota(TYPE, 2)
    emu.start_latency(cold=1.0, warm=0.1)
    sm = emu.client("sagemaker")
    cold = run(sm, job("pool-a"))
    assert cold["TrainingJobStatus"] == "Completed"
    available = pool_status(sm, "pool-a")
    assert available["Status"] == AVAILABLE
    assert available["ResourceRetainedBillableTimeInSeconds"] >= 1
    assert "ReusedByJob" not in available

    sm.create_training_job(**job("pool-b", sleep=0.2))
    assert pool_status(sm, "pool-b") == {"Status": IN_USE}
    reused = pool_status(sm, "pool-a")
    assert reused["Status"] == REUSED and reused["ReusedByJob"] == "pool-b"
    frozen = reused["ResourceRetainedBillableTimeInSeconds"]
    warm = wait_for(sm, "pool-b")
    assert warm["TrainingJobStatus"] == "Completed"
    assert warm["WarmPoolStatus"]["Status"] == AVAILABLE
    assert pool_status(sm, "pool-a")["ResourceRetainedBillableTimeInSeconds"] == frozen

    def start_latency(desc: dict) -> float:
        return (desc["TrainingStartTime"] - desc["CreationTime"]).total_seconds()
    assert start_latency(cold) >= 1.0
    assert start_latency(warm) < start_latency(cold) - 0.5
    [starting] = [t for t in warm["SecondaryStatusTransitions"] if t["Status"] == "Starting"]
    assert (starting["EndTime"] - starting["StartTime"]).total_seconds() >= 0.1

    # ListTrainingJobs shows the pools and filters by them.
    summaries = {s["TrainingJobName"]: s for s in sm.list_training_jobs()["TrainingJobSummaries"]}
    assert summaries["pool-a"]["WarmPoolStatus"]["ReusedByJob"] == "pool-b"
    assert summaries["pool-b"]["WarmPoolStatus"]["Status"] == AVAILABLE
    for status, names in ((AVAILABLE, ["pool-b"]), (REUSED, ["pool-a"]), (IN_USE, [])):
        listed = sm.list_training_jobs(WarmPoolStatusEquals=status)["TrainingJobSummaries"]
        assert [s["TrainingJobName"] for s in listed] == names
    page = sm.list_training_jobs(WarmPoolStatusEquals=REUSED, MaxResults=1)
    assert "NextToken" not in page
    assert emu.refused == []


def test_a_job_that_differs_in_any_matched_member_starts_cold(emu):
    emu.quota(TYPE, 10)
    sm = emu.client("sagemaker")
    base = job("vpc-base")
    base["VpcConfig"] = {"SecurityGroupIds": ["sg-1", "sg-2"], "Subnets": ["subnet-1"]}
    run(sm, base)
    others = {
        "other-role": {"RoleArn": "arn:aws:iam::123456789012:role/another"},
        "other-count": {"ResourceConfig": {**base["ResourceConfig"], "InstanceCount": 2}},
        "other-volume": {"ResourceConfig": {**base["ResourceConfig"], "VolumeSizeInGB": 20}},
        "other-vpc": {"VpcConfig": {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]}},
        "no-vpc": {"VpcConfig": None},
        "isolated": {"EnableNetworkIsolation": True},
    }

    def variant(name: str, changes: dict) -> dict:
        changed = {**copy.deepcopy(base), "TrainingJobName": name, **changes}
        return {key: value for key, value in changed.items() if value is not None}

    with ThreadPoolExecutor(len(others)) as pool:  # at once: none can take another's pool
        list(pool.map(lambda item: run(sm, variant(*item)), others.items()))
    assert pool_status(sm, "vpc-base")["Status"] == AVAILABLE
    assert all(pool_status(sm, name)["Status"] == AVAILABLE for name in others)
    # The same groups in another order, and EnableNetworkIsolation False as absent: a match.
    run(sm, variant("same-vpc", {"EnableNetworkIsolation": False, "VpcConfig": {
        "SecurityGroupIds": ["sg-2", "sg-1"], "Subnets": ["subnet-1"]}}))
    assert pool_status(sm, "vpc-base")["ReusedByJob"] == "same-vpc"
    assert emu.refused == []


def test_spot_jobs_get_no_pool(emu):
    emu.quota(TYPE, 2)
    sm = emu.client("sagemaker")
    spot = job("spot-1")
    spot["EnableManagedSpotTraining"] = True
    spot["StoppingCondition"]["MaxWaitTimeInSeconds"] = 120
    desc = run(sm, spot)
    assert desc["TrainingJobStatus"] == "Completed"
    assert "WarmPoolStatus" not in desc
    assert emu.warm_pools == []
    # ... and a spot job never takes one either.
    run(sm, job("on-demand"))
    spot["TrainingJobName"] = "spot-2"
    run(sm, spot)
    assert pool_status(sm, "on-demand")["Status"] == AVAILABLE


def test_update_training_job_ends_a_pool_and_refuses_what_it_cannot_change(emu):
    emu.quota(TYPE, 2)
    sm = emu.client("sagemaker")
    run(sm, job("upd-a", note="a.txt"))
    run(sm, job("upd-b"))  # takes upd-a's pool
    cache = pools(emu)["upd-b"].cache_dir
    assert cache is not None and (cache / "algo-1" / "a.txt").is_file()
    time.sleep(0.2)
    answer = sm.update_training_job(TrainingJobName="upd-b",
                                    ResourceConfig={"KeepAlivePeriodInSeconds": 0})
    assert answer["TrainingJobArn"].endswith(":training-job/upd-b")
    ended = sm.describe_training_job(TrainingJobName="upd-b")
    assert ended["WarmPoolStatus"]["Status"] == TERMINATED
    assert ended["WarmPoolStatus"]["ResourceRetainedBillableTimeInSeconds"] >= 1
    assert ended["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 0
    assert not cache.exists()  # the persistent cache goes with the pool
    assert pools(emu)["upd-b"].billable_seconds == (
        ended["WarmPoolStatus"]["ResourceRetainedBillableTimeInSeconds"])

    code, message = error_of(sm.update_training_job, TrainingJobName="upd-a",
                             ResourceConfig={"KeepAlivePeriodInSeconds": 0})
    assert code == "ValidationException"
    assert "'upd-a'" in message and "Reused" in message
    code, message = error_of(sm.update_training_job, TrainingJobName="upd-b",
                             ResourceConfig={"KeepAlivePeriodInSeconds": 60})
    assert code == "ValidationException" and "Terminated" in message
    code, message = error_of(sm.update_training_job, TrainingJobName="nobody",
                             ResourceConfig={"KeepAlivePeriodInSeconds": 0})
    assert code == "ValidationException"
    assert message == ("Could not find training job "
                       "'arn:aws:sagemaker:us-east-1:123456789012:training-job/nobody'.")
    run(sm, job("no-keep", keep_alive=None))
    code, message = error_of(sm.update_training_job, TrainingJobName="no-keep",
                             ResourceConfig={"KeepAlivePeriodInSeconds": 60})
    assert code == "ValidationException" and "'no-keep' has no warm pool" in message
    # The strict check: the model's range (0..21600 in botocore 1.44.8) and required members.
    code, message = error_of(sm.update_training_job, TrainingJobName="upd-b",
                             ResourceConfig={"KeepAlivePeriodInSeconds": 21601})
    assert code == "ValidationException"
    assert message == ("1 validation error detected: Value '21601' at "
                       "'resourceConfig.keepAlivePeriodInSeconds' failed to satisfy constraint:"
                       " Member must have value less than or equal to 21600")
    assert [op for op, _ in emu.refused] == ["UpdateTrainingJob"]


def test_update_while_running_applies_when_the_job_ends(emu):
    emu.quota(TYPE, 2)
    sm = emu.client("sagemaker")
    # Jobs long enough, and a keep-alive wide enough, that a loaded machine's slow polls
    # still see each state.
    sm.create_training_job(**job("run-0", sleep=3))
    sm.create_training_job(**job("run-1", keep_alive=600, sleep=3))
    sm.update_training_job(TrainingJobName="run-0", ResourceConfig={"KeepAlivePeriodInSeconds": 0})
    sm.update_training_job(TrainingJobName="run-1", ResourceConfig={"KeepAlivePeriodInSeconds": 3})
    assert pool_status(sm, "run-0") == {"Status": IN_USE}
    assert wait_for(sm, "run-0")["WarmPoolStatus"] == {
        "Status": TERMINATED, "ResourceRetainedBillableTimeInSeconds": 0}
    assert wait_for(sm, "run-1")["WarmPoolStatus"]["Status"] == AVAILABLE
    ended = wait_until(lambda: (s := pool_status(sm, "run-1"))["Status"] == TERMINATED and s,
                       timeout=15)
    assert ended["ResourceRetainedBillableTimeInSeconds"] == 3


def test_a_pool_expires_after_its_keep_alive_billing_the_whole_period(emu):
    emu.quota(TYPE, 1)
    sm = emu.client("sagemaker")
    run(sm, job("expires", keep_alive=4))
    cache = pools(emu)["expires"].cache_dir
    assert pool_status(sm, "expires")["Status"] == AVAILABLE and cache.is_dir()
    ended = wait_until(lambda: (s := pool_status(sm, "expires"))["Status"] == TERMINATED and s,
                       timeout=15)
    assert ended == {"Status": TERMINATED, "ResourceRetainedBillableTimeInSeconds": 4}
    assert not cache.exists()
    # The quota is free again.
    run(sm, job("next", keep_alive=60))
    assert pool_status(sm, "next")["Status"] == AVAILABLE


def test_a_full_quota_keeps_no_further_pool(emu):
    emu.quota(TYPE, 2)
    sm = emu.client("sagemaker")
    names = ["full-1", "full-2", "full-3"]
    for name in names:  # all running at once: none can take another's pool
        sm.create_training_job(**job(name, sleep=0.3))
    statuses = sorted(wait_for(sm, n)["WarmPoolStatus"]["Status"] for n in names)
    assert statuses == [AVAILABLE, AVAILABLE, TERMINATED]
    assert sum(p.instance_count for p in emu.warm_pools if p.status == AVAILABLE) == 2
    first = sm.list_training_jobs(WarmPoolStatusEquals=AVAILABLE, MaxResults=1)
    second = sm.list_training_jobs(WarmPoolStatusEquals=AVAILABLE, MaxResults=1,
                                   NextToken=first["NextToken"])
    assert "NextToken" not in second
    listed = [s["TrainingJobName"] for s in first["TrainingJobSummaries"]
              + second["TrainingJobSummaries"]]
    assert sorted(listed) == sorted(p.job_name for p in emu.warm_pools if p.status == AVAILABLE)


def test_which_endings_keep_a_pool(emu):
    emu.quota(TYPE, 5)
    sm = emu.client("sagemaker")
    emu.start_latency(cold=10.0, warm=10.0)
    sm.create_training_job(**job("stopped-starting"))
    emu.start_latency(cold=0.0, warm=0.0)
    sm.stop_training_job(TrainingJobName="stopped-starting")
    early = wait_for(sm, "stopped-starting")
    assert early["TrainingJobStatus"] == "Stopped" and "TrainingStartTime" not in early
    assert early["WarmPoolStatus"]["Status"] == TERMINATED

    sm.create_training_job(**job("stopped-training", sleep=30))
    wait_until(lambda: sm.describe_training_job(
        TrainingJobName="stopped-training")["SecondaryStatus"] == "Training")
    sm.stop_training_job(TrainingJobName="stopped-training")
    late = wait_for(sm, "stopped-training")
    assert late["TrainingJobStatus"] == "Stopped"
    assert late["WarmPoolStatus"]["Status"] == AVAILABLE

    sm.update_training_job(TrainingJobName="stopped-training",
                           ResourceConfig={"KeepAlivePeriodInSeconds": 0})
    failed = run(sm, job("failed", crash="bad data"))
    assert failed["FailureReason"].startswith("AlgorithmError")
    assert failed["WarmPoolStatus"]["Status"] == AVAILABLE


def test_the_persistent_cache_moves_with_the_pool(emu):
    emu.quota(TYPE, 2)
    sm = emu.client("sagemaker")
    run(sm, job("cache-a", note="pip-wheel"))
    first = pools(emu)["cache-a"].cache_dir
    assert (first / "algo-1" / "pip-wheel").read_text() == "cache-a"
    run(sm, job("cache-b"))
    assert pools(emu)["cache-b"].cache_dir == first
    assert pools(emu)["cache-a"].cache_dir is None
    assert "seen=['pip-wheel']" in emu.log_events("cache-b")[emu.jobs["cache-b"].log_streams[0]]
    # A keep-alive job on a fresh cluster (another volume size) gets a new, empty folder.
    fresh = job("cache-c")
    fresh["ResourceConfig"]["VolumeSizeInGB"] = 20
    run(sm, fresh)
    assert pools(emu)["cache-c"].cache_dir not in (None, first)
    assert "seen=[]" in emu.log_events("cache-c")[emu.jobs["cache-c"].log_streams[0]]
    # No keep-alive, no cache.
    run(sm, job("no-cache", keep_alive=None))
    assert "cache=None" in emu.log_events("no-cache")[emu.jobs["no-cache"].log_streams[0]]


def test_service_quotas_lists_the_warm_pool_quotas(emu):
    for knob in knobs.from_environment({"SM_PYTEST_EMULATE_WARM_POOL_QUOTA": f"{TYPE}=3"}):
        knob(emu)
    quotas = emu.client("service-quotas")
    pages = list(quotas.get_paginator("list_service_quotas").paginate(
        ServiceCode="sagemaker", PaginationConfig={"PageSize": 50}))
    listed = [q for page in pages for q in page["Quotas"]]
    types = service_quotas.instance_types()
    assert len(pages) == -(-len(types) // 50) and all(len(p["Quotas"]) <= 50 for p in pages)
    assert [q["QuotaName"] for q in listed] == [f"{t} for training warm pool usage"
                                                for t in types]
    assert len({q["QuotaCode"] for q in listed}) == len(types)
    by_name = {q["QuotaName"]: q for q in listed}
    m5 = by_name[f"{TYPE} for training warm pool usage"]
    assert m5 == {
        "ServiceCode": "sagemaker", "ServiceName": "Amazon SageMaker",
        "QuotaArn": "arn:aws:servicequotas:us-east-1:123456789012:sagemaker/L-0BEF44E8",
        "QuotaCode": "L-0BEF44E8", "QuotaName": f"{TYPE} for training warm pool usage",
        "Value": 3.0, "Unit": "None", "Adjustable": True, "GlobalQuota": False}
    assert by_name["ml.g5.xlarge for training warm pool usage"]["Value"] == 0.0
    defaults = quotas.list_aws_default_service_quotas(ServiceCode="sagemaker")
    assert len(defaults["Quotas"]) == 100 and "NextToken" in defaults
    assert {q["Value"] for q in defaults["Quotas"]} == {0.0}
    assert quotas.get_service_quota(ServiceCode="sagemaker",
                                    QuotaCode="L-0BEF44E8")["Quota"]["Value"] == 3.0
    assert quotas.get_aws_default_service_quota(ServiceCode="sagemaker",
                                                QuotaCode="L-0BEF44E8")["Quota"]["Value"] == 0.0
    assert error_of(quotas.get_service_quota, ServiceCode="sagemaker",
                    QuotaCode="L-00000000")[0] == "NoSuchResourceException"
    assert error_of(quotas.list_service_quotas, ServiceCode="sagemaker",
                    NextToken="forged")[0] == "InvalidPaginationTokenException"
    # Strict, like every emulated service; other service codes stay moto's.
    assert error_of(quotas.list_service_quotas, ServiceCode="sagemaker",
                    MaxResults=101)[0] == "ValidationException"
    assert [op for op, _ in emu.refused] == ["ListServiceQuotas"]
    assert quotas.list_aws_default_service_quotas(ServiceCode="vpc")["Quotas"]

    emu.deny_service_quotas()
    code, message = error_of(quotas.list_service_quotas, ServiceCode="sagemaker")
    assert code == "AccessDeniedException"
    assert message.startswith("User: arn:aws:sts::123456789012:assumed-role/")
    assert "is not authorized to perform: servicequotas:ListServiceQuotas" in message
    assert error_of(quotas.get_service_quota, ServiceCode="vpc",
                    QuotaCode="L-F678F1CE")[0] == "AccessDeniedException"


def test_the_quota_and_latency_are_checked(emu):
    with pytest.raises(ValueError, match="0 or more"):
        emu.quota(TYPE, -1)
    with pytest.raises(ValueError, match="cold must be"):
        emu.start_latency(-1.0, 0.0)
    with pytest.raises(ValueError, match="warm must be"):
        Emulator(warm_start_seconds=float("nan"))


# --- the knobs -----------------------------------------------------------------------------


class Recording:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def applied(environ: dict[str, str]) -> list[tuple]:
    emulator = Recording()
    for knob in knobs.from_environment(environ):
        knob(emulator)
    return emulator.calls


def test_the_warm_pool_knobs_arrange_the_emulator():
    assert applied({
        "SM_PYTEST_EMULATE_WARM_POOL_QUOTA": "ml.m5.xlarge=2, ml.g5.2xlarge=0",
        "SM_PYTEST_EMULATE_START_SECONDS": "2.5, .25",
        "SM_PYTEST_EMULATE_DENY_SERVICE_QUOTAS": "1",
    }) == [("quota", ("ml.m5.xlarge", 2), {}), ("quota", ("ml.g5.2xlarge", 0), {}),
           ("start_latency", (2.5, 0.25), {}), ("deny_service_quotas", (), {})]
    assert applied({"SM_PYTEST_EMULATE_DENY_SERVICE_QUOTAS": "0",
                    "SM_PYTEST_EMULATE_START_SECONDS": " "}) == []


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("SM_PYTEST_EMULATE_WARM_POOL_QUOTA", "ml.m5.xlarge", "whole number"),
    ("SM_PYTEST_EMULATE_WARM_POOL_QUOTA", "ml.m5.xlarge=-1", "whole number"),
    ("SM_PYTEST_EMULATE_WARM_POOL_QUOTA", "m5.xlarge=2", "not an instance type"),
    ("SM_PYTEST_EMULATE_START_SECONDS", "2", "two decimal numbers"),
    ("SM_PYTEST_EMULATE_START_SECONDS", "2,-1", "two decimal numbers"),
    ("SM_PYTEST_EMULATE_START_SECONDS", "2,inf", "two decimal numbers"),
    ("SM_PYTEST_EMULATE_DENY_SERVICE_QUOTAS", "yes", "set it to 1"),
])
def test_a_bad_warm_pool_knob_is_a_settings_error(variable, value, says):
    with pytest.raises(SettingsError, match=says) as caught:
        knobs.from_environment({variable: value})
    assert variable in str(caught.value)


# --- the pool logic, on a clock of our own ------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def simple(name_role: str = "role", count: int = 1, keep_alive: int = 60, **extra) -> dict:
    return {"RoleArn": name_role, **extra,
            "ResourceConfig": {"InstanceType": TYPE, "InstanceCount": count,
                               "VolumeSizeInGB": 10, "KeepAlivePeriodInSeconds": keep_alive}}


@pytest.fixture
def registry(tmp_path):
    clock = Clock()
    pools = WarmPoolRegistry(cache_root=tmp_path / "cache", clock=clock)
    pools.set_quota(TYPE, 4)
    pools.clock = clock
    return pools


def test_billing_rounds_up_and_freezes_on_reuse(registry):
    clock = registry.clock
    registry.register("a", simple())
    registry.job_ended("a", keeps=True)
    assert registry.status("a") == {"Status": AVAILABLE,
                                    "ResourceRetainedBillableTimeInSeconds": 1}
    clock.now += 2.2
    assert registry.status("a")["ResourceRetainedBillableTimeInSeconds"] == 3
    placement = registry.register("b", simple())
    assert placement.warm and placement.reused_from == "a"
    clock.now += 10
    assert registry.status("a") == {"Status": REUSED, "ReusedByJob": "b",
                                    "ResourceRetainedBillableTimeInSeconds": 3}
    assert registry.status("b") == {"Status": IN_USE}


def test_the_pool_available_longest_is_taken(registry):
    clock = registry.clock
    for name in ("old", "young"):  # running at once, so neither takes the other's pool
        registry.register(name, simple())
    for name in ("old", "young"):
        registry.job_ended(name, keeps=True)
        clock.now += 5
    assert registry.register("new", simple()).reused_from == "old"
    assert registry.register("newer", simple()).reused_from == "young"
    assert not registry.register("newest", simple()).warm


def test_update_moves_the_end_and_expiry_bills_the_period(registry):
    clock = registry.clock
    registry.register("a", simple(keep_alive=60))
    registry.job_ended("a", keeps=True)
    clock.now += 10
    registry.update("a", 30)  # ends at Available + 30
    clock.now += 19.9
    assert registry.status("a")["Status"] == AVAILABLE
    clock.now += 0.2
    assert registry.status("a") == {"Status": TERMINATED,
                                    "ResourceRetainedBillableTimeInSeconds": 30}
    registry.register("b", simple())
    registry.job_ended("b", keeps=True)
    clock.now += 10
    registry.update("b", 5)  # already past: ends now, billing what it idled
    assert registry.status("b")["ResourceRetainedBillableTimeInSeconds"] == 10
    with pytest.raises(WarmPoolError, match="'b' is Terminated"):
        registry.update("b", 60)


def test_the_quota_counts_instances_per_type_and_scope(registry):
    registry.set_quota(TYPE, 3)
    registry.register("two", simple(count=2))
    registry.job_ended("two", keeps=True)
    registry.register("two-more", simple("other-role", count=2))  # no match: not its pool
    registry.register("elsewhere", simple(count=2), scope=("other", "account"))
    registry.job_ended("two-more", keeps=True)
    registry.job_ended("elsewhere", keeps=True)
    assert registry.status("two-more")["Status"] == TERMINATED  # 2 + 2 > 3
    assert registry.status("elsewhere")["Status"] == AVAILABLE  # another account's pools
    assert registry.usage(TYPE) == 4 and registry.usage(TYPE, scope=None) == 4
    with pytest.raises(ValueError, match="whole number"):
        registry.set_quota(TYPE, 1.5)


def test_the_match_key_and_which_endings_keep_a_pool():
    base = simple(VpcConfig={"SecurityGroupIds": ["a", "b"], "Subnets": ["s"]})
    assert match_key(base) == match_key({**base, "EnableNetworkIsolation": False,
                                         "VpcConfig": {"SecurityGroupIds": ["b", "a"],
                                                       "Subnets": ["s"]}})
    for change in ({"RoleArn": "other"}, {"EnableInterContainerTrafficEncryption": True},
                   {"ResourceConfig": {**base["ResourceConfig"], "VolumeKmsKeyId": "k"}},
                   {"ResourceConfig": {**base["ResourceConfig"], "InstanceType": "ml.c5.xlarge"}},
                   {"VpcConfig": None}):
        assert match_key({**base, **change}) != match_key(base), change
    assert keeps_pool("Completed", None, trained=True)
    assert keeps_pool("Stopped", None, trained=True)
    assert not keeps_pool("Stopped", None, trained=False)
    assert keeps_pool("Failed", "ClientError: no data", trained=False)
    assert keeps_pool("Failed", "AlgorithmError: boom, exit code: 1", trained=True)
    assert not keeps_pool("Failed", "InternalServerError: emulator error: x", trained=True)


def test_cache_folders_are_made_moved_and_removed(registry, tmp_path):
    first = registry.register("a", simple()).cache_dir
    assert first.is_dir() and first.parent == tmp_path / "cache"
    (first / "wheel").write_text("w")
    registry.job_ended("a", keeps=True)
    assert registry.register("b", simple()).cache_dir == first
    assert (first / "wheel").exists()
    registry.job_ended("b", keeps=False)  # e.g. an internal error: the cluster is gone
    assert not first.exists()
    assert [(p.job_name, p.status, p.cache_dir) for p in registry.pools()] == [
        ("a", REUSED, None), ("b", TERMINATED, None)]
