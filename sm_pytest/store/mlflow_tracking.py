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
        # Why MLflow is taken as unreachable, "" while it answers. Once it did not answer,
        # the session's records are only queued: a session must not wait on every item for
        # a server that is down. The end of the session tries once more (close).
        self._down = ""
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
        # A reused item too: MLflow may not have seen the session that trained it.
        row = self.outbox.add(self.uri, self.session, RUN, rec.experiment, rec.name,
                              {"record": rec.to_json(), "git_commit": self.git_commit,
                               "log_models": self.log_models})
        if self._down:
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
                self._down = reason
            self.outbox.not_sent(row.id, reason)
            self._not_sent[row.name] = reason
            return False
        self.outbox.sent(row.id)
        self._not_sent.pop(row.name, None)
        return True

    def close(self, *, interrupted: bool) -> list[str]:
        """End each file's parent run, then send whatever this session still holds back;
        the notices say where the runs are, or what is left and how to send it. A server
        that refused connections gets one more try (a refusal is quick), one that did not
        answer in time does not, nor any after a Ctrl-C, which wants the session over."""
        try:
            return self._close(interrupted=interrupted)
        finally:
            from sm_pytest.run.contract.environment import unset_for_this_process

            unset_for_this_process()  # the client's HTTP caps end with the session

    def _close(self, *, interrupted: bool) -> list[str]:
        for experiment, recs in self._seen.items():
            status, tags = parent_outcome(recs, interrupted=interrupted)
            self.outbox.add(self.uri, self.session, END, experiment, experiment,
                            {"status": status, "tags": tags, "end": time.time()})
        held_back = dict(self._not_sent)
        if self._down and (interrupted or not self._down.startswith(REFUSED)):
            for row in self.outbox.rows(session=self.session):
                self.outbox.not_sent(row.id, self._down)
            return self._notices(held_back)
        self._down = ""
        for row in self.outbox.rows(session=self.session):
            if self._down:  # the rest would wait for the same server
                self.outbox.not_sent(row.id, self._down)
            else:
                self._attempt(row, replace=row.kind == RUN)
        return self._notices(held_back)

    def _notices(self, held_back: dict[str, str]) -> list[str]:
        recs = [r for group in self._seen.values() for r in group]
        tracked = len(recs)
        reused = sum(1 for r in recs if r.cached)
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
            what = f" ({reused} reused from the run cache)" if reused else ""
            notes.insert(0, f"MLflow: {_runs(tracked)} tracked at {self.uri}{what}"
                         + self._links())
            if held_back:
                notes.append(f"MLflow: {len(held_back)} of them were sent at the end of the"
                             f" session, after MLflow failed ({next(iter(held_back.values()))})")
            return notes
        runs = [row for row in left if row.kind == RUN]
        parents = [row.experiment for row in left if row.kind == END and self._logger
                   is not None and self._logger.has_parent(row.experiment, self.session)]
        lines = [f"MLflow: {len(runs)} of {_runs(tracked)} not tracked at {self.uri};"
                 f" kept, and `{self.sync_hint}` sends them:"]
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


REFUSED = "not reachable (connection refused)"
_HTTP_STATUS = re.compile(r"error code (\d{3})")


def _chain(exc: BaseException | None):
    """`exc` and what it was raised from or during: MLflow wraps the requests error."""
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def unreachable(exc: BaseException) -> bool:
    """MLflow did not answer (as opposed to refusing one call): a request that could not
    be made or got no answer (requests' errors are OSErrors), or a server saying it is
    unavailable."""
    try:
        from mlflow.exceptions import RestException
    except ImportError:
        RestException = ()  # noqa: N806 (nothing is a RestException without MLflow)
    if isinstance(exc, RestException):
        return exc.error_code in ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR")
    return any(isinstance(e, OSError) for e in _chain(exc))


def describe(exc: BaseException) -> str:
    """One short line: why the server was not reached, or what it answered."""
    chain = list(_chain(exc))
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return REFUSED
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        return "not answering (timed out)"
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    status = _HTTP_STATUS.search(text)
    if status is not None:
        return (f"HTTP {status.group(1)} from the server (is the URI an MLflow tracking"
                " server, and may you use it?)")
    if any(isinstance(e, OSError) for e in chain):
        deepest = chain[-1]
        return f"not reachable ({type(deepest).__name__}: {str(deepest)[:200]})"
    return f"{type(exc).__name__}: {text[:300]}"


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def git_commit(rootdir: Path) -> str:
    """HEAD of the repository the project is in, "" outside one."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=rootdir, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
