"""Warm pools in the report: what became of each job's pool (known only once the session has
released them, so applied to the records just before the summary), what reuse saved and
what the idle time billed."""

from __future__ import annotations

import dataclasses
from statistics import mean

from sm_pytest.model import RunRecord, TrainingFields

_FACTS = ("pool_from", "pool_after", "pool_idle_seconds")


def apply(records: list[RunRecord], facts: dict[str, dict]) -> list[RunRecord]:
    """The records with each job's warm-pool facts (job name -> pool_from, pool_after,
    pool_idle_seconds), on the item, its repeats and its trials."""
    if not facts:
        return records

    def updated(training):
        known = facts.get(training.job_name) if training.job_name else None
        if not known:
            return training
        return dataclasses.replace(training, **{k: v for k, v in known.items() if k in _FACTS})

    return [dataclasses.replace(updated(rec), repeats=[updated(r) for r in rec.repeats],
                                trials=[updated(t) for t in rec.trials])
            for rec in records]


def trainings(records: list[RunRecord]) -> list[TrainingFields]:
    """Every SageMaker training of the session (a search's trials, else the item's
    repeats), those taken from the run cache left out."""
    found: list[TrainingFields] = []
    for rec in records:
        if rec.trials:  # a reused search is reused whole
            found += [] if rec.cached else rec.trials
        else:
            found += [r for r in rec.repeats if not r.cached]
    return [training for training in found if training.backend == "sagemaker"]


def idle_seconds(records: list[RunRecord]) -> int:
    """The warm-pool idle time every job of the session billed, in instance-seconds."""
    return sum(t.pool_idle_seconds or 0 for t in trainings(records) if t.pool_after)


def notes(records: list[RunRecord]) -> list[str]:
    """The lines after the summary table: how many jobs started on a reused pool, the start
    time that saved against this session's cold starts, and the idle time billed."""
    jobs = trainings(records)
    kept = [t for t in jobs if t.pool_after]
    warm = [t for t in jobs if t.pool_from and t.start_seconds is not None]
    if not kept and not warm:
        return []
    # Against the cold starts of jobs that asked for a pool too: the same kind of job.
    cold = [t for t in kept if not t.pool_from and t.start_seconds is not None]
    line = f"warm pools: {len(warm)} of {len(jobs)} SageMaker job(s) started on a reused pool"
    if warm and cold:
        warm_s = mean(t.start_seconds for t in warm)
        cold_s = mean(t.start_seconds for t in cold)
        line += (f"; from creation to training they took {warm_s:.1f} s on average, against"
                 f" {cold_s:.1f} s for the {len(cold)} cold start(s): about"
                 f" {max(0.0, cold_s - warm_s) * len(warm):.0f} s saved")
    elif warm:
        line += "; no cold start in this session to compare their start time with"
    idle = idle_seconds(records)
    billing = [t.job_name for t in kept if t.pool_after == "available"]
    idle_line = (f"warm pools: {idle} instance-second(s) of idle time billed at the instance"
                 " rate" + (f", and still counting for {len(billing)} pool(s) left Available"
                            if billing else ""))
    return [line, idle_line]


def shown(training: TrainingFields) -> str:
    """The summary's `pool` cell: how the job started."""
    if training.backend != "sagemaker" or training.start_seconds is None:
        return ""
    return f"warm: {training.pool_from}" if training.pool_from else "cold"
