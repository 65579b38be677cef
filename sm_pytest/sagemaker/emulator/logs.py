"""GetLogEvents served the way the real service may serve it: small pages, and empty pages
in the middle of a stream (Emulator.paginate_logs).

CloudWatch Logs documents that "Partially full or empty pages don't necessarily mean that
pagination is finished"; moto always answers with one full page. With paging on, every
GetLogEvents read from the head (or from one of our tokens) gets at most ``page_size``
events, and before each page after the first, ``empty_pages`` empty answers whose
nextForwardToken differs from the one sent. The end of a stream is, as on AWS, an answer
whose nextForwardToken equals the token sent. A reader that stops at the first empty page
therefore sees ``page_size`` events at most.

Patches ``moto.logs.responses.LogsResponse.get_log_events`` (moto 5.2.5) while paging is
on; anything it does not emulate (startTime/endTime, reading backwards, a token of moto's
own) goes to moto unchanged.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from moto.logs.responses import LogsResponse

_TOKEN = re.compile(r"f/emu-(\d+)-(\d+)")
_MOTO_PAGE = 10000  # moto's own page size (and GetLogEvents' largest limit)


@dataclass
class LogPaging:
    """The paging in force, and what it served (for tests to assert on)."""

    page_size: int
    empty_pages: int
    pages: int = 0  # answers served, empty ones included
    empty_served: int = 0  # empty answers served before the end of a stream
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def answer(self, events: list[dict[str, Any]], position: int, empties: int,
               sent: str | None, limit: int | None) -> dict[str, Any]:
        """The page for a reader at ``position`` that got ``empties`` empty pages there."""
        with self.lock:
            self.pages += 1
            if position >= len(events):  # the end: the token sent comes back
                token = sent or _token(position, 0)
                return _page([], position, token)
            if position > 0 and empties < self.empty_pages:
                self.empty_served += 1
                return _page([], position, _token(position, empties + 1))
            chunk = events[position : position + min(self.page_size, limit or self.page_size)]
            return _page(chunk, position, _token(position + len(chunk), 0))


_PAGING: LogPaging | None = None
_ORIGINAL: Any = None


def _token(position: int, empties: int) -> str:
    return f"f/emu-{position}-{empties}"


def _page(events: list[dict[str, Any]], position: int, forward: str) -> dict[str, Any]:
    return {"events": events, "nextBackwardToken": f"b/emu-{position}-0",
            "nextForwardToken": forward}


def paginate(page_size: int, empty_pages: int) -> LogPaging:
    """Turn paging on (or change it) until :func:`restore`."""
    global _PAGING, _ORIGINAL
    if page_size < 1 or empty_pages < 0:
        raise ValueError("page_size must be >= 1 and empty_pages >= 0")
    if _ORIGINAL is None:
        _ORIGINAL = LogsResponse.__dict__["get_log_events"]
        LogsResponse.get_log_events = _get_log_events
    _PAGING = LogPaging(page_size, empty_pages)
    return _PAGING


def restore() -> None:
    """Turn paging off: moto's GetLogEvents again."""
    global _PAGING, _ORIGINAL
    if _ORIGINAL is not None:
        LogsResponse.get_log_events = _ORIGINAL
    _PAGING = _ORIGINAL = None


def _get_log_events(self: LogsResponse) -> str:
    paging = _PAGING
    token = self._get_param("nextToken")
    match = _TOKEN.fullmatch(token) if token else None
    ours = match is not None or (token is None and self._get_param("startFromHead", False))
    if (paging is None or not ours or self._get_param("startTime") is not None
            or self._get_param("endTime") is not None):
        return _ORIGINAL(self)
    events = _all_events(self)
    position, empties = (int(match[1]), int(match[2])) if match else (0, 0)
    return json.dumps(paging.answer(events, position, empties, token,
                                    self._get_param("limit")))


def _all_events(response: LogsResponse) -> list[dict[str, Any]]:
    """The stream's events in order, read from moto's backend (which raises the
    ResourceNotFound errors AWS raises)."""
    backend = response.logs_backend
    events: list[dict[str, Any]] = []
    token = None
    while True:
        page, _, forward = backend.get_log_events(
            log_group_name=response._get_param("logGroupName"),
            log_group_id=response._get_param("logGroupIdentifier"),
            log_stream_name=response._get_param("logStreamName"),
            start_time=None, end_time=None, limit=_MOTO_PAGE, next_token=token,
            start_from_head=True)
        events += page
        if forward == token:
            return events
        token = forward
