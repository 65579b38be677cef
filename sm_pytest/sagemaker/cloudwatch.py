"""Reading a training job's CloudWatch logs: the one place sm-pytest calls CloudWatch Logs.

    from sm_pytest.sagemaker import cloudwatch

    lines = cloudwatch.job_log_lines(logs, job_name)   # after the job: its whole log
    tail = cloudwatch.LogTail(logs, job_name)          # while it runs:
    new = tail.poll()                                   #   only the lines not seen before

``logs`` is a boto3 CloudWatch Logs client, made by the caller. A training job writes one
stream per instance and attempt, ``<job>/algo-<n>-<epoch seconds>``, in ``LOG_GROUP``; a
spot restart adds new streams. A multi-instance job's log ("Each training job has one log
stream per node", SageMaker developer guide, common-info-all-sagemaker-models-logs.md) is
read as one: every host's events interleaved by timestamp, each line prefixed
``[algo-<n>] `` (:func:`job_log`); the SageMaker Python SDK's ``logs_for_job`` likewise
reads every stream (``_flush_log_streams`` waits until there are ``instance_count``).

GetLogEvents is read per its contract: "Partially full or empty pages don't necessarily mean
that pagination is finished". A stream is read to its end when the service answers with a
``nextForwardToken`` equal to the token sent, never at the first empty page.

Standard library only; the client comes in from the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sm_pytest.sagemaker.aws import error_code

__all__ = ["LOG_GROUP", "JobLog", "LogTail", "job_log", "job_log_lines", "job_streams",
           "read_job_log", "read_stream", "stream_host"]

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# <job>/algo-<n>-<epoch seconds>: the host is what lies between the job's "/" and the last "-".
_STREAM_HOST = re.compile(r"/(algo-\d+)-\d+$")


def stream_host(stream: str) -> str:
    """The host (``algo-<n>``) that wrote the stream ``<job>/algo-<n>-<epoch seconds>``;
    ``algo-1`` for a name of another shape."""
    match = _STREAM_HOST.search(stream)
    return match.group(1) if match else "algo-1"


def _multi_host(streams: Iterable[str]) -> bool:
    return len({stream_host(s) for s in streams}) > 1


def job_streams(logs: Any, job_name: str) -> list[str]:
    """The names of the job's log streams, oldest attempt first (names end in the epoch
    second the stream was opened). None yet, or no log group yet in this account: []."""
    paginator = logs.get_paginator("describe_log_streams")
    names = []
    try:
        for page in paginator.paginate(logGroupName=LOG_GROUP,
                                       logStreamNamePrefix=f"{job_name}/"):
            names += [stream["logStreamName"] for stream in page.get("logStreams", [])]
    except Exception as exc:
        # A job that never started in a new account leaves no log group: nothing to read.
        if error_code(exc) == "ResourceNotFoundException":
            return []
        raise
    return sorted(names)


def read_stream(logs: Any, stream: str, token: str | None = None, *,
                max_pages: int | None = None) -> tuple[list[str], str | None]:
    """The stream's messages after ``token`` (from its start when None), read to the end,
    and the token to continue from later. ``max_pages`` bounds the calls, for a poller that
    must not spend a whole interval on one stream; the rest comes from the returned token."""
    events, token = _read_events(logs, stream, token, max_pages=max_pages)
    return [event["message"] for event in events], token


def _read_events(logs: Any, stream: str, token: str | None = None, *,
                 max_pages: int | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """read_stream, with the whole events (``timestamp``, ``message``)."""
    messages: list[dict[str, Any]] = []
    pages = 0
    while max_pages is None or pages < max_pages:
        kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream,
                                  "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        page = logs.get_log_events(**kwargs)
        pages += 1
        messages += page.get("events", [])
        following = page.get("nextForwardToken")
        if not following or following == token:  # the end, as the contract defines it
            break
        token = following
    return messages, token


def read_job_log(logs: Any, job_name: str) -> dict[str, list[str]]:
    """Every stream of the job, read to its end: stream name -> messages, in order."""
    return {stream: read_stream(logs, stream)[0] for stream in job_streams(logs, job_name)}


@dataclass(frozen=True)
class JobLog:
    """A job's whole log: ``lines`` as train.log shows them, and ``program_lines``, what the
    hosts printed, unprefixed and in arrival order (what metric definitions are applied to:
    SageMaker applies them to every instance's log, "each machine emits an objective
    metric", automatic-model-tuning-considerations.md)."""

    lines: list[str]
    program_lines: list[str]


def _interleaved(events: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str]]:
    """(host, line) of every stream's events, by timestamp; the stream order (name order)
    breaks ties, so one host's lines keep their order."""
    tagged = [(event.get("timestamp", 0), position, index, stream_host(stream),
               event["message"].rstrip("\n"))
              for position, (stream, stream_events) in enumerate(events.items())
              for index, event in enumerate(stream_events)]
    return [(host, line) for *_, host, line in sorted(tagged, key=lambda t: t[:3])]


def job_log(logs: Any, job_name: str) -> JobLog:
    """The job's whole log (see :class:`JobLog`). One instance: each stream's lines, and
    with several streams (spot restarts) each headed ``==> <stream> <==``, as ``tail``
    does. Several instances: every stream's lines interleaved by event timestamp, each
    prefixed ``[algo-<n>] ``."""
    streams = job_streams(logs, job_name)
    events = {stream: _read_events(logs, stream)[0] for stream in streams}
    if _multi_host(streams):
        pairs = _interleaved(events)
        return JobLog([f"[{host}] {line}" for host, line in pairs],
                      [line for _, line in pairs])
    lines: list[str] = []
    program: list[str] = []
    for stream, stream_events in events.items():
        if len(events) > 1:
            lines.append(f"==> {stream} <==")
        text = [event["message"].rstrip("\n") for event in stream_events]
        lines += text
        program += text
    return JobLog(lines, program)


def job_log_lines(logs: Any, job_name: str) -> list[str]:
    """The job's whole log as lines (trailing newlines stripped), as :func:`job_log` shows
    them in train.log."""
    return job_log(logs, job_name).lines


class LogTail:
    """The log of a running job, read a little at a time.

    Each :meth:`poll` returns only the lines written since the previous poll: new events of
    the streams already seen, and every event of streams that appeared since (a spot restart
    opens one). Streams are taken in name order, each stream's lines in order. Not
    thread-safe: one poller owns a tail. A poll costs one DescribeLogStreams page per 50
    streams and at least one GetLogEvents call per stream. AWS errors (throttling, access
    denied) reach the caller; a failed poll loses nothing, the next one resumes where the
    last good one ended.
    """

    def __init__(self, logs: Any, job_name: str, *, max_pages_per_stream: int = 50):
        self.logs = logs
        self.job_name = job_name
        self.max_pages_per_stream = max_pages_per_stream
        self._tokens: dict[str, str | None] = {}  # stream -> forward token to continue from

    @property
    def streams(self) -> list[str]:
        """The streams seen so far."""
        return list(self._tokens)

    def poll(self) -> list[str]:
        """The lines (trailing newlines stripped) new since the last poll; [] if none. From
        several instances' streams, the new lines of all of them, by event timestamp,
        unprefixed (what the program printed, for metric definitions)."""
        tokens = dict(self._tokens)
        # Re-listed every poll: a multi-instance job's streams appear as its hosts start.
        for stream in job_streams(self.logs, self.job_name):
            tokens.setdefault(stream, None)
        events: dict[str, list[dict[str, Any]]] = {}
        for stream, token in tokens.items():
            events[stream], tokens[stream] = _read_events(
                self.logs, stream, token, max_pages=self.max_pages_per_stream)
        self._tokens = tokens  # only now: a poll that raised is read again by the next
        if _multi_host(tokens):
            return [line for _, line in _interleaved(events)]
        return [event["message"].rstrip("\n") for stream_events in events.values()
                for event in stream_events]
