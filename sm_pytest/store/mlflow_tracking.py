"""The MLflow tracker (a store.tracker.Tracker), and the replay of what it could not send.

The attempt folder and the embedded store have the run before this is called (the session
records in that order). Each record then goes through the outbox (mlflow_outbox.py) before
MLflow sees it, so a server that is down or refuses a call never costs a result: the
session goes on, the summary names the runs that were not tracked and why, and the end of
the session or `sm-pytest mlflow-sync` sends them.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

from sm_pytest.model import FAIL, PASS, RunRecord
from sm_pytest.store.mlflow_outbox import END, RUN, Outbox, Row
from sm_pytest.store.mlflow_runs import RunLogger, mlflow_status

# After MLflow did not answer, records are only queued for this long, not tried: a session
# must not wait on every item for a server that is down, and one that is back gets the rest.
RETRY_AFTER_S = 60.0
SYNC_COMMAND = "sm-pytest mlflow-sync"


class MlflowTracker:
    def __init__(self, uri: str, session: str, db_path: Path, *, log_models: bool = True,
                 rootdir: Path | None = None, sync_hint: str = SYNC_COMMAND):
        self.uri = uri
        self.session = session
        self.outbox = Outbox(db_path)
        self.log_models = log_models
        self.git_commit = git_commit(rootdir) if rootdir is not None else ""
        self.sync_hint = sync_hint  # the command that sends what is left, for this project
        self._logger: RunLogger | None = None
        self._down = ""  # why MLflow is taken as unreachable, "" while it answers
        self._down_at = 0.0
        self._seen: dict[str, list[RunRecord]] = {}  # experiment -> its items, in order
        self._not_sent: dict[str, str] = {}  # item name -> why it was not tracked

    @property
    def logger(self) -> RunLogger:
        if self._logger is None:
            from sm_pytest.store.mlflow_setup import make_client

            self._logger = RunLogger(make_client(self.uri))
        return self._logger

    def record(self, rec: RunRecord) -> None:
        self._seen.setdefault(rec.experiment, []).append(rec)
        if rec.cached:
            return  # in MLflow since the session that trained it; the parent says so
        row = self.outbox.add(self.uri, self.session, RUN, rec.experiment, rec.name,
                              {"record": rec.to_json(), "git_commit": self.git_commit,
                               "log_models": self.log_models})
        if self._down and time.monotonic() - self._down_at < RETRY_AFTER_S:
            self._not_sent[rec.name] = self._down
            self.outbox.not_sent(row.id, self._down)
            return
        self._attempt(row, replace=False)

    def _attempt(self, row: Row, *, replace: bool) -> bool:
        try:
            send_row(self.logger, row, replace=replace)
        except Exception as exc:
            reason = describe(exc)
            if unreachable(exc):
                self._down, self._down_at = reason, time.monotonic()
            self.outbox.not_sent(row.id, reason)
            self._not_sent[row.name] = reason
            return False
        self._down = ""
        self.outbox.sent(row.id)
        self._not_sent.pop(row.name, None)
        return True

    def close(self, *, interrupted: bool) -> list[str]:
        """End each file's parent run, then send whatever this session still holds back (a
        server that is back gets it now); the notices say where the runs are, or what is
        left and how to send it."""
        for experiment, recs in self._seen.items():
            status, tags = parent_outcome(recs, interrupted=interrupted)
            self.outbox.add(self.uri, self.session, END, experiment, experiment,
                            {"status": status, "tags": tags, "end": time.time()})
        held_back = dict(self._not_sent)
        self._down = ""  # one more try, however recent the last failure
        for row in self.outbox.rows(session=self.session):
            if self._down:  # the rest would wait for the same server
                self.outbox.not_sent(row.id, self._down)
            else:
                self._attempt(row, replace=row.kind == RUN)
        return self._notices(held_back)

    def _notices(self, held_back: dict[str, str]) -> list[str]:
        tracked = sum(1 for recs in self._seen.values() for r in recs if not r.cached)
        left = self.outbox.rows(session=self.session)
        earlier = [row for row in self.outbox.rows(uri=self.uri)
                   if row.session != self.session and row.kind == RUN]
        notes = []
        if earlier:
            sessions = sorted({row.session for row in earlier})
            notes.append(f"MLflow: {len(earlier)} runs of earlier sessions"
                         f" ({', '.join(sessions)}) are still to be sent; `{self.sync_hint}`"
                         " sends them")
        if not left:
            notes.insert(0, f"MLflow: {tracked} runs tracked at {self.uri}" + self._links())
            if held_back:
                notes.append(f"MLflow: {len(held_back)} of them were sent at the end of the"
                             f" session, after MLflow failed ({next(iter(held_back.values()))})")
            return notes
        runs = [row for row in left if row.kind == RUN]
        parents = [row.experiment for row in left if row.kind == END]
        lines = [f"MLflow: {len(runs)} of {tracked} runs were not tracked at {self.uri};"
                 f" they are kept, and `{self.sync_hint}` sends them:"]
        lines += [f"  {row.name}: {row.last_error}" for row in runs]
        if parents:
            lines.append(f"  the parent runs of {', '.join(parents)} stay RUNNING in MLflow"
                         f" until then ({left[-1].last_error})")
        return lines + notes

    def _links(self) -> str:
        """Where the experiments are in the MLflow UI, for a server."""
        if not self.uri.startswith(("http://", "https://")) or self._logger is None:
            return ""
        base = self.uri.rstrip("/")
        try:
            links = [f"{base}/#/experiments/{self.logger.experiment_id(name)}"
                     for name in self._seen]
        except Exception:  # the links are a courtesy; the runs are in
            return ""
        return ": " + ", ".join(links)


def send_row(logger: RunLogger, row: Row, *, replace: bool = True) -> None:
    """One outbox row into MLflow: an item's runs (`replace`: first delete what an earlier
    attempt left of them) or the end of a parent run."""
    if row.kind == RUN:
        logger.log(RunRecord.from_json(row.payload["record"]), row.session,
                   git_commit=row.payload.get("git_commit", ""),
                   log_models=row.payload.get("log_models", True), replace=replace)
    else:
        logger.end_parent(row.experiment, row.session, row.payload["status"],
                          row.payload["tags"], row.payload["end"])


def parent_outcome(recs: list[RunRecord], *, interrupted: bool) -> tuple[str, dict[str, str]]:
    """A file's parent run at the end of the session: KILLED if the session was
    interrupted, FAILED if a run of it failed, else FINISHED; the counts as tags."""
    verdicts = Counter(rec.verdict for rec in recs)
    tags = {"sm_pytest.items": str(len(recs)), "sm_pytest.passed": str(verdicts[PASS]),
            "sm_pytest.failed": str(verdicts[FAIL]),
            "sm_pytest.errors": str(len(recs) - verdicts[PASS] - verdicts[FAIL]),
            "sm_pytest.verdict": PASS if verdicts[PASS] == len(recs) else FAIL}
    cached = [rec.name for rec in recs if rec.cached]
    if cached:
        # Reused with --sm-reuse: their runs are in MLflow from the session that trained them.
        tags["sm_pytest.cached_items"] = ", ".join(cached)
    if interrupted:
        return "KILLED", tags
    trained = [rec for rec in recs if not rec.cached]
    failed = any(mlflow_status(rec.status) == "FAILED" for rec in trained)
    return ("FAILED" if failed else "FINISHED"), tags


def sync(db_path: Path, uri: str | None = None, *, write=print) -> int:
    """`sm-pytest mlflow-sync`: send every row the outbox of `db_path` holds, each to the
    URI it was meant for (or to `uri`). Returns how many rows are left."""
    from sm_pytest.store.mlflow_setup import make_client

    outbox = Outbox(db_path)
    rows = outbox.rows()
    if not rows:
        write(f"nothing to send: every run in {db_path} is in MLflow")
        return 0
    loggers: dict[str, RunLogger] = {}
    down: dict[str, str] = {}
    left = 0
    for row in rows:
        target = uri or row.uri
        if target in down:
            outbox.not_sent(row.id, down[target])
            left += 1
            continue
        try:
            if target not in loggers:
                loggers[target] = RunLogger(make_client(target))
            send_row(loggers[target], row)
        except Exception as exc:
            reason = describe(exc)
            if unreachable(exc):
                down[target] = reason
            outbox.not_sent(row.id, reason)
            write(f"not sent: {row.name} (session {row.session}) to {target}: {reason}")
            left += 1
            continue
        outbox.sent(row.id)
        what = "run" if row.kind == RUN else "end of the parent run of"
        write(f"sent: {what} {row.name} (session {row.session}) to {target}")
    write(f"{len(rows) - left} sent, {left} left")
    return left


def unreachable(exc: BaseException) -> bool:
    """MLflow did not answer (as opposed to refusing one call): a request that could not
    be made, or a server saying it is unavailable."""
    try:
        from mlflow.exceptions import MlflowException, RestException
    except ImportError:
        return isinstance(exc, OSError)
    if isinstance(exc, RestException):
        return exc.error_code in ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR")
    if isinstance(exc, MlflowException):
        return "API request to" in str(exc)  # MLflow's wording for a request not made
    return isinstance(exc, OSError)


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def describe(exc: BaseException) -> str:
    """One short line: a connection failure as `not reachable ([Errno 111] ...)`."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "API request to" in text or isinstance(exc, OSError):
        found = _ERRNO.search(text)
        return f"not reachable ({found.group(0).strip() if found else text[:160]})"
    return f"{type(exc).__name__}: {text[:300]}"


def git_commit(rootdir: Path) -> str:
    """HEAD of the repository the project is in, "" outside one."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=rootdir, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
