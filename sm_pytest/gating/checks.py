"""Judge a finished run and phrase the verdict for a person reading a failed test."""

from __future__ import annotations

from sm_pytest.messages import aligned_table
from sm_pytest.model import RunResult
from sm_pytest.run.artifacts import tail
from sm_pytest.spec.thresholds import Verdict, evaluate

LOG_TAIL_LINES = 30


def judge(expect, result: RunResult) -> list[Verdict]:
    return evaluate(expect, result.final_metrics)


def _format_value(value: float | None) -> str:
    return "(no value in the log)" if value is None else f"{value:.6g}"


def threshold_report(name: str, verdicts: list[Verdict], result: RunResult) -> str:
    rows = [("metric", "threshold", "actual", "verdict")]
    rows += [(v.threshold.metric, v.threshold.text, _format_value(v.actual),
              "pass" if v.passed else "FAIL") for v in verdicts]
    table = aligned_table(rows)
    failed = sum(not v.passed for v in verdicts)
    return (f"{name}: {failed} of {len(verdicts)} thresholds not met\n{table}\n\n"
            + _log_section(result))


def crash_report(name: str, result: RunResult) -> str:
    return (f"{name}: the run {result.status.replace('_', ' ')} and produced no verdict\n"
            f"reason: {result.failure_reason}\n\n" + _log_section(result))


def _log_section(result: RunResult) -> str:
    lines = tail(result.log_path, LOG_TAIL_LINES)
    body = "\n".join("  " + line for line in lines) if lines else "  (the log is empty)"
    return (f"last {len(lines)} log lines ({result.log_path}):\n{body}\n"
            f"artifacts: {result.artifact_dir}")
