"""GetLogEvents paged the way the real service may page it (Emulator.paginate_logs): small
pages, empty pages in the middle of a stream, and the end of a stream as the token sent coming
back. First the paging on its own, then through boto3 against moto's CloudWatch Logs."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

import boto3  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.logs.responses import LogsResponse  # noqa: E402

from sm_pytest.sagemaker.cloudwatch import LOG_GROUP  # noqa: E402
from sm_pytest.sagemaker.emulator import logs  # noqa: E402

STREAM = "job-1/algo-1-1"
# Recent: CloudWatch (and moto) drop events older than 14 days.
NOW_MS = int(time.time() * 1000)
EVENTS = [{"timestamp": NOW_MS + i, "message": f"line {i}"} for i in range(5)]


def _read_all(paging: logs.LogPaging, events: list[dict]) -> list[dict]:
    """Answers for a reader that follows nextForwardToken until it comes back unchanged."""
    answers, sent, position, empties = [], None, 0, 0
    while True:
        answer = paging.answer(events, position, empties, sent, None)
        answers.append(answer)
        if answer["nextForwardToken"] == sent:
            return answers
        sent = answer["nextForwardToken"]
        position, empties = (int(part) for part in sent.removeprefix("f/emu-").split("-"))


def test_pages_hold_page_size_events_with_empty_pages_between():
    paging = logs.LogPaging(page_size=2, empty_pages=1)
    answers = _read_all(paging, EVENTS)
    assert [[e["message"] for e in a["events"]] for a in answers] == [
        ["line 0", "line 1"], [], ["line 2", "line 3"], [], ["line 4"], []]
    assert [a["nextForwardToken"] for a in answers] == [
        "f/emu-2-0", "f/emu-2-1", "f/emu-4-0", "f/emu-4-1", "f/emu-5-0", "f/emu-5-0"]
    assert (paging.pages, paging.empty_served) == (6, 2)


def test_the_end_of_a_stream_sends_the_token_back():
    paging = logs.LogPaging(page_size=10, empty_pages=3)
    assert paging.answer(EVENTS, 5, 0, "f/emu-5-0", None)["nextForwardToken"] == "f/emu-5-0"
    # An empty stream read from the head ends at once, with a token of its own.
    empty = paging.answer([], 0, 0, None, None)
    assert (empty["events"], empty["nextForwardToken"]) == ([], "f/emu-0-0")
    assert paging.empty_served == 0


def test_the_first_page_is_never_empty_and_a_smaller_limit_wins():
    paging = logs.LogPaging(page_size=4, empty_pages=2)
    first = paging.answer(EVENTS, 0, 0, None, 1)
    assert [e["message"] for e in first["events"]] == ["line 0"]
    assert first["nextForwardToken"] == "f/emu-1-0"


def test_paginate_refuses_impossible_paging_and_restore_puts_moto_back():
    original = LogsResponse.__dict__["get_log_events"]
    with pytest.raises(ValueError, match="page_size must be >= 1"):
        logs.paginate(0, 0)
    with pytest.raises(ValueError, match="empty_pages >= 0"):
        logs.paginate(1, -1)
    assert LogsResponse.__dict__["get_log_events"] is original
    try:
        first = logs.paginate(3, 0)
        again = logs.paginate(1, 2)  # changes the paging, patches once
        assert again is not first and (again.page_size, again.empty_pages) == (1, 2)
        assert LogsResponse.__dict__["get_log_events"] is not original
    finally:
        logs.restore()
    assert LogsResponse.__dict__["get_log_events"] is original
    logs.restore()  # nothing to undo
    assert LogsResponse.__dict__["get_log_events"] is original


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("logs", region_name="us-east-1")
        client.create_log_group(logGroupName=LOG_GROUP)
        for name in (STREAM, "job-1/algo-1-2", "job-2/algo-1-1"):
            client.create_log_stream(logGroupName=LOG_GROUP, logStreamName=name)
        client.put_log_events(logGroupName=LOG_GROUP, logStreamName=STREAM, logEvents=EVENTS)
        try:
            yield client
        finally:
            logs.restore()


def _get(client, **kwargs) -> dict:
    return client.get_log_events(logGroupName=LOG_GROUP, logStreamName=STREAM, **kwargs)


def test_get_log_events_pages_through_boto3(client):
    paging = logs.paginate(page_size=2, empty_pages=2)
    first = _get(client, startFromHead=True)
    assert [e["message"] for e in first["events"]] == ["line 0", "line 1"]
    read, token, answers = list(first["events"]), first["nextForwardToken"], 1
    while True:
        page = _get(client, startFromHead=True, nextToken=token)
        answers += 1
        if page["nextForwardToken"] == token:
            break
        read += page["events"]
        token = page["nextForwardToken"]
    assert [e["message"] for e in read] == [e["message"] for e in EVENTS]
    assert [e["timestamp"] for e in read] == [e["timestamp"] for e in EVENTS]
    assert (paging.pages, paging.empty_served) == (answers, 4)


def test_a_reader_that_stops_at_the_first_empty_page_misses_events(client):
    logs.paginate(page_size=2, empty_pages=1)
    first = _get(client, startFromHead=True)
    second = _get(client, startFromHead=True, nextToken=first["nextForwardToken"])
    assert len(first["events"]) == 2
    assert second["events"] == []
    assert second["nextForwardToken"] != first["nextForwardToken"]  # not the end


def test_what_paging_does_not_emulate_goes_to_moto(client):
    paging = logs.paginate(page_size=1, empty_pages=1)
    # A time window, and a read from the tail: moto's one full page.
    assert len(_get(client, startFromHead=True, startTime=0)["events"]) == 5
    assert len(_get(client)["events"]) == 5
    assert paging.pages == 0
    with pytest.raises(ClientError) as missing:
        client.get_log_events(logGroupName=LOG_GROUP, logStreamName="job-9/algo-1-1",
                              startFromHead=True)
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_describe_log_streams_keeps_moto_paging(client):
    # Only GetLogEvents is paged by the emulator; DescribeLogStreams pages by its limit.
    logs.paginate(page_size=1, empty_pages=3)
    first = client.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix="job-1/",
                                        limit=1)
    second = client.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix="job-1/",
                                         limit=1, nextToken=first["nextToken"])
    assert len(first["logStreams"]) == len(second["logStreams"]) == 1
    names = [s["logStreamName"] for s in first["logStreams"] + second["logStreams"]]
    assert sorted(names) == ["job-1/algo-1-1", "job-1/algo-1-2"]
