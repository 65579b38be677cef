"""Reading CloudWatch Logs per the GetLogEvents contract (sm_pytest.sagemaker.cloudwatch),
against the emulator, including its paging with empty pages mid-stream."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("moto")

from sm_pytest.sagemaker import cloudwatch  # noqa: E402
from sm_pytest.sagemaker.emulator.service import Emulator  # noqa: E402


@pytest.fixture
def logs():
    with Emulator() as emu:
        client = emu.client("logs")
        client.create_log_group(logGroupName=cloudwatch.LOG_GROUP)
        client.emulator = emu
        yield client
    assert emu.refused == [], emu.refused  # no request of ours that AWS would refuse


def write(logs, stream: str, *messages: str) -> None:
    existing = {s["logStreamName"] for s in logs.describe_log_streams(
        logGroupName=cloudwatch.LOG_GROUP)["logStreams"]}
    if stream not in existing:
        logs.create_log_stream(logGroupName=cloudwatch.LOG_GROUP, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=cloudwatch.LOG_GROUP, logStreamName=stream,
                        logEvents=[{"timestamp": now + i, "message": m}
                                   for i, m in enumerate(messages)])


def stop_at_first_empty_page(logs, stream: str) -> list[str]:
    """The loop sm-pytest had before: it took an empty page for the end."""
    messages, token = [], None
    while True:
        kwargs = {"logGroupName": cloudwatch.LOG_GROUP, "logStreamName": stream,
                  "startFromHead": True, **({"nextToken": token} if token else {})}
        page = logs.get_log_events(**kwargs)
        messages += [e["message"] for e in page["events"]]
        if not page["events"] or page["nextForwardToken"] == token:
            return messages
        token = page["nextForwardToken"]


def test_a_stream_is_read_through_empty_pages_to_the_token_that_comes_back(logs):
    lines = [f"line {i}" for i in range(9)]
    write(logs, "job/algo-1-1", *lines)
    paging = logs.emulator.paginate_logs(page_size=2, empty_pages=3)
    assert stop_at_first_empty_page(logs, "job/algo-1-1") == lines[:2]
    assert paging.empty_served == 1  # ... the first empty page stopped it
    messages, token = cloudwatch.read_stream(logs, "job/algo-1-1")
    assert messages == lines
    # 5 pages of events, 3 empty pages before each of the last 4, and the closing answer.
    assert paging.empty_served == 1 + 4 * 3
    assert cloudwatch.read_stream(logs, "job/algo-1-1", token) == ([], token)


def test_the_whole_job_log_has_every_stream_in_order(logs):
    write(logs, "job/algo-1-1700000002", "restarted", "epoch=2")
    write(logs, "job/algo-1-1700000001", "epoch=1", "interrupted\n")
    write(logs, "job-other/algo-1-1700000001", "not this job")
    logs.emulator.paginate_logs(page_size=1, empty_pages=2)
    assert cloudwatch.job_streams(logs, "job") == ["job/algo-1-1700000001",
                                                   "job/algo-1-1700000002"]
    assert cloudwatch.job_log_lines(logs, "job") == [
        "==> job/algo-1-1700000001 <==", "epoch=1", "interrupted",
        "==> job/algo-1-1700000002 <==", "restarted", "epoch=2"]


def test_no_log_group_yet_means_no_streams():
    with Emulator() as emu:
        client = emu.client("logs")
        assert cloudwatch.job_streams(client, "job") == []
        assert cloudwatch.job_log_lines(client, "job") == []
        assert cloudwatch.LogTail(client, "job").poll() == []
    assert emu.refused == []


def test_a_tail_returns_only_new_lines_and_picks_up_new_streams(logs):
    tail = cloudwatch.LogTail(logs, "job")
    assert tail.poll() == []
    logs.emulator.paginate_logs(page_size=2, empty_pages=1)
    write(logs, "job/algo-1-1", "starting", "epoch=1 loss=0.5")
    assert tail.poll() == ["starting", "epoch=1 loss=0.5"]
    assert tail.poll() == []
    write(logs, "job/algo-1-1", "epoch=2 loss=0.4", "epoch=3 loss=0.3", "interrupted")
    write(logs, "job/algo-1-2", "resuming at epoch 3")  # a spot restart's new stream
    assert tail.poll() == ["epoch=2 loss=0.4", "epoch=3 loss=0.3", "interrupted",
                           "resuming at epoch 3"]
    assert tail.streams == ["job/algo-1-1", "job/algo-1-2"]
    assert tail.poll() == []


def test_a_tail_bounds_the_calls_of_one_poll_and_goes_on_at_the_next(logs):
    write(logs, "job/algo-1-1", *[f"l{i}" for i in range(6)])
    logs.emulator.paginate_logs(page_size=1, empty_pages=0)
    tail = cloudwatch.LogTail(logs, "job", max_pages_per_stream=4)
    assert tail.poll() == ["l0", "l1", "l2", "l3"]
    assert tail.poll() == ["l4", "l5"]


def test_a_poll_that_fails_loses_no_line(logs):
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ClientError

    write(logs, "job/algo-1-1", "epoch=1")
    write(logs, "job/algo-1-2", "epoch=2")
    refusals = [1]

    def throttle_second_stream(params, **_):
        if b"algo-1-2" in params["body"] and refusals:
            refusals.pop()
            return (AWSResponse("", 400, {}, None),
                    {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}})
        return None

    logs.meta.events.register("before-call.cloudwatch-logs.GetLogEvents",
                              throttle_second_stream)
    tail = cloudwatch.LogTail(logs, "job")
    with pytest.raises(ClientError, match="ThrottlingException"):
        tail.poll()
    assert tail.poll() == ["epoch=1", "epoch=2"]
    assert tail.poll() == []
