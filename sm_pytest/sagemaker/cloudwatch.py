"""Reading a training job's CloudWatch logs: the one place sm-pytest calls CloudWatch Logs.

    from sm_pytest.sagemaker import cloudwatch

    lines = cloudwatch.job_log_lines(logs, job_name)   # after the job: its whole log
    tail = cloudwatch.LogTail(logs, job_name)          # while it runs:
    new = tail.poll()                                   #   only the lines not seen before

``logs`` is a boto3 CloudWatch Logs client, made by the caller. A training job writes one
stream per instance and attempt, ``<job>/algo-<n>-<epoch seconds>``, in ``LOG_GROUP``; a
spot restart adds new streams.

GetLogEvents is read per its contract: "Partially full or empty pages don't necessarily mean
that pagination is finished". A stream is read to its end when the service answers with a
``nextForwardToken`` equal to the token sent, never at the first empty page.

Standard library only; the client comes in from the caller.
"""

from __future__ import annotations

from typing import Any

from sm_pytest.sagemaker.aws import error_code

__all__ = ["LOG_GROUP", "LogTail", "job_log_lines", "job_streams", "read_job_log",
           "read_stream"]

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


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
    messages: list[str] = []
    pages = 0
    while max_pages is None or pages < max_pages:
        kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream,
                                  "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        page = logs.get_log_events(**kwargs)
        pages += 1
        messages += [event["message"] for event in page.get("events", [])]
        following = page.get("nextForwardToken")
        if not following or following == token:  # the end, as the contract defines it
            break
        token = following
    return messages, token


def read_job_log(logs: Any, job_name: str) -> dict[str, list[str]]:
    """Every stream of the job, read to its end: stream name -> messages, in order."""
    return {stream: read_stream(logs, stream)[0] for stream in job_streams(logs, job_name)}


def job_log_lines(logs: Any, job_name: str) -> list[str]:
    """The job's whole log as lines (trailing newlines stripped). With several streams
    (instances, spot restarts), each is headed ``==> <stream> <==``, as ``tail`` does."""
    streams = read_job_log(logs, job_name)
    lines: list[str] = []
    for stream, messages in streams.items():
        if len(streams) > 1:
            lines.append(f"==> {stream} <==")
        lines += [message.rstrip("\n") for message in messages]
    return lines


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
        """The lines (trailing newlines stripped) new since the last poll; [] if none."""
        tokens = dict(self._tokens)
        for stream in job_streams(self.logs, self.job_name):
            tokens.setdefault(stream, None)
        lines: list[str] = []
        for stream, token in tokens.items():
            messages, tokens[stream] = read_stream(
                self.logs, stream, token, max_pages=self.max_pages_per_stream)
            lines += [message.rstrip("\n") for message in messages]
        self._tokens = tokens  # only now: a poll that raised is read again by the next
        return lines
