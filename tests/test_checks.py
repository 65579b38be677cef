"""sm_pytest/gating/checks.py: judging a finished run and the report a failed test shows."""

from __future__ import annotations

from sm_pytest.gating.checks import LOG_TAIL_LINES, crash_report, judge, threshold_report
from sm_pytest.model import COMPLETED, TIMED_OUT, RunResult
from sm_pytest.spec.thresholds import parse


def _result(tmp_path, log: str | None = "", **fields) -> RunResult:
    log_path = tmp_path / "train.log"
    if log is not None:
        log_path.write_text(log)
    return RunResult(status=fields.pop("status", COMPLETED), artifact_dir=tmp_path,
                     log_path=log_path, model_dir=tmp_path / "model", **fields)


def test_judge_reads_the_final_metrics(tmp_path):
    result = _result(tmp_path, final_metrics={"accuracy": 0.91})
    [verdict] = judge((parse("accuracy", ">= 0.95"),), result)
    assert (verdict.actual, verdict.passed) == (0.91, False)


def test_threshold_report_shows_the_table_and_the_log_tail(tmp_path):
    result = _result(tmp_path, "".join(f"step {n}\n" for n in range(40)),
                     final_metrics={"accuracy": 0.91234567})
    verdicts = judge((parse("accuracy", ">= 0.95"), parse("loss", "< 1")), result)
    report = threshold_report("mnist[lr=0.1]", verdicts, result)
    lines = report.splitlines()
    assert lines[0] == "mnist[lr=0.1]: 2 of 2 thresholds not met"
    assert lines[1].split() == ["metric", "threshold", "actual", "verdict"]
    assert lines[2].split() == ["accuracy", ">=", "0.95", "0.912346", "FAIL"]
    assert "(no value in the log)" in lines[3]
    assert f"last {LOG_TAIL_LINES} log lines ({result.log_path}):" in report
    assert "  step 39" in report and "step 9\n" not in report
    assert report.endswith(f"artifacts: {tmp_path}")


def test_crash_report_gives_the_reason_and_an_empty_log(tmp_path):
    result = _result(tmp_path, None, status=TIMED_OUT, failure_reason="ran past 60 s")
    report = crash_report("mnist", result)
    assert report.startswith("mnist: the run timed out and produced no verdict\n"
                             "reason: ran past 60 s\n")
    assert "last 0 log lines" in report and "  (the log is empty)" in report
