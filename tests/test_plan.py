"""The plan view: cost bounds, one row per selected run, the table and its total line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sm_pytest.report import plan
from sm_pytest.report.plan import PlanRow, cost_bound, format_plan, plan_row
from sm_pytest.sagemaker.settings import SageMakerSettings

PRICES = {"ml.m5.xlarge": 0.23, "ml.g5.xlarge": 1.408}
GRACE = plan.STOP_GRACE_S


def test_cost_bound_arithmetic():
    assert cost_bound(3600, 0.23, stop_grace_s=0) == pytest.approx(0.23)
    assert cost_bound(1800, 1.408, 2, stop_grace_s=0) == pytest.approx(1.408)
    assert cost_bound(3600, 0.23) == pytest.approx((3600 + GRACE) / 3600 * 0.23)
    assert cost_bound(0, 0.23, stop_grace_s=0) == 0.0


def test_cost_bound_spot_is_on_demand_and_ignores_max_wait():
    on_demand = cost_bound(3600, 0.23, 3)
    assert cost_bound(3600, 0.23, 3, spot=True) == on_demand
    assert cost_bound(3600, 0.23, 3, spot=True, max_wait_s=7200) == on_demand


def test_cost_bound_keep_alive_counts_without_spot_only():
    base = cost_bound(3600, 0.23)
    assert cost_bound(3600, 0.23, keep_alive_s=1800) == pytest.approx(base + 0.5 * 0.23)
    assert cost_bound(3600, 0.23, spot=True, keep_alive_s=1800) == base


def test_cost_bound_unknown_price_and_bad_values():
    assert cost_bound(3600, None) is None
    assert cost_bound(3600, None, 4, spot=True) is None
    with pytest.raises(ValueError, match="max_run_s must not be negative"):
        cost_bound(-1, 0.23)
    with pytest.raises(ValueError, match="price_per_hour"):
        cost_bound(60, float("nan"))


def test_plan_rows():
    local = plan_row("baseline", backend="local", max_run_s=60, reuse="no")
    assert local == PlanRow("baseline", "local", "local", False, "no", 60, None, 0.0)
    sm = plan_row("a", backend="sagemaker", instance_type="ml.m5.xlarge", max_run_s=3600,
                  prices=PRICES, instance_count=2, keep_alive_s=1800)
    assert sm.price_per_hour == 0.23
    assert sm.cost_bound == pytest.approx(cost_bound(3600, 0.23, 2, keep_alive_s=1800))
    unknown = plan_row("b", backend="sagemaker", instance_type="ml.x9.huge", max_run_s=60,
                       prices=PRICES)
    assert unknown.price_per_hour is None and unknown.cost_bound is None
    with pytest.raises(ValueError, match="reuse must be one of"):
        PlanRow("c", "local", "local", False, "maybe", 60, None, 0.0)


def rows_example() -> list[PlanRow]:
    return [
        plan_row("lr_sweep[lr=1.0]", backend="sagemaker", instance_type="ml.m5.xlarge",
                 max_run_s=3600, prices=PRICES, reuse="no"),
        plan_row("lr_sweep[lr=0.1]", backend="sagemaker", instance_type="ml.m5.xlarge",
                 max_run_s=3600, prices=PRICES, reuse="yes"),
        plan_row("gpu", backend="sagemaker", instance_type="ml.g5.xlarge", max_run_s=1800,
                 spot=True, prices=PRICES, reuse="no", instance_count=2),
        plan_row("baseline", backend="local", max_run_s=86400, reuse="no"),
    ]


def test_format_plan_table_and_total():
    text = format_plan(rows_example())
    lines = text.splitlines()
    assert lines[0].split() == ["run", "backend", "instance", "spot", "reuse", "max_run",
                                "$/hour", "at", "most"]
    assert len(lines) == 6
    # aligned: every row's "reuse" cell starts in the header's column
    column = lines[0].index("reuse")
    assert [line[column:column + 3] for line in lines[1:5]] == ["no ", "yes", "no ", "no "]
    assert lines[1].split()[-3:] == ["1h", "$0.23", "$0.24"]
    assert lines[2].split()[-1] == "reused"
    assert "2 x ml.g5.xlarge" in lines[3] and lines[3].split()[-1] == "$1.51"  # 1.5019, up
    assert lines[4].split()[-3:] == ["24h", "-", "$0.00"]
    # reused runs cost nothing: 0.2377 + 1.5019 (spot bounded by on-demand) + 0 = 1.7396
    assert lines[5] == "at most $1.74 for 4 runs; 1 would be reused from the cache"
    assert text.endswith("\n")


def test_unknown_price_is_a_question_mark_and_left_out_of_the_total():
    rows = [
        plan_row("a", backend="sagemaker", instance_type="ml.m5.xlarge", max_run_s=3600,
                 prices=PRICES),
        plan_row("b", backend="sagemaker", instance_type="ml.trn1.2xlarge", max_run_s=3600,
                 prices=PRICES),
        plan_row("c", backend="sagemaker", instance_type="ml.trn1.2xlarge", max_run_s=60,
                 prices=PRICES),
    ]
    lines = format_plan(rows).splitlines()
    assert lines[2].split()[-2:] == ["?", "?"]
    assert lines[-1] == ("at most $0.24 for 3 runs, not counting 2 on ml.trn1.2xlarge (no"
                         " price: add it under prices: in config/sagemaker.yaml)")


def test_cache_not_in_use_and_local_only():
    rows = [plan_row(f"r{i}", backend="local", max_run_s=90) for i in range(3)]
    lines = format_plan(rows).splitlines()
    assert lines[-1] == "at most $0.00 for 3 runs"
    assert lines[1].split()[3:6] == ["-", "-", "1m30s"]
    assert format_plan([rows[0]]).splitlines()[-1] == "at most $0.00 for 1 run"


def test_money_rounds_up_to_the_cent():
    assert plan._money(0.23) == "$0.23"
    assert plan._money(0.2301) == "$0.24"
    assert plan._money(0.0) == "$0.00"
    assert plan._money(1e-6) == "$0.01"
    assert plan._money(1234.5) == "$1,234.50"


def test_empty_plan_and_tiny_costs():
    assert format_plan([]).splitlines() == [
        "run  backend  instance  spot  reuse  max_run  $/hour  at most",
        "at most $0.00 for 0 runs"]
    tiny = plan_row("t", backend="sagemaker", instance_type="ml.m5.xlarge", max_run_s=1,
                    prices={"ml.m5.xlarge": 0.05}, reuse="no")
    assert format_plan([tiny]).splitlines()[1].split()[-1] == "$0.01"


def test_emulated_runs_are_free():
    row = plan_row("e", backend="sagemaker", instance_type="ml.m5.xlarge", max_run_s=3600,
                   prices=PRICES, emulated=True, spot=True)
    assert (row.backend, row.price_per_hour, row.cost_bound) == ("sagemaker (emulated)", None,
                                                                 0.0)
    line = format_plan([row]).splitlines()[1].split()
    assert line[-5:] == ["yes", "-", "1h", "-", "$0.00"]


def test_all_reused():
    rows = [plan_row("a", backend="sagemaker", instance_type="ml.m5.xlarge", max_run_s=60,
                     prices=PRICES, reuse="yes")]
    assert format_plan(rows).splitlines()[-1] == ("at most $0.00 for 1 run; 1 would be reused"
                                                  " from the cache")


def test_plan_rows_of_repeats():
    repeats = [SimpleNamespace(name="a", max_run=60, instance_count=1),
               SimpleNamespace(name="b", max_run=90, instance_count=2)]
    local = plan.plan_rows(repeats)
    assert local == [plan_row("a", backend="local", max_run_s=60),
                     plan_row("b", backend="local", max_run_s=90, instance_count=2)]
    settings = {"a": SageMakerSettings(max_run=3600, keep_alive_s=1800),
                "b": SageMakerSettings(max_run=3600, keep_alive_s=1800, spot=True,
                                       instance_type="ml.g5.xlarge", instance_count=2)}
    rows = plan.plan_rows(repeats, reused=lambda repeat: repeat.name == "b",
                          settings_for=lambda repeat: settings[repeat.name], prices=PRICES)
    assert rows == [
        plan_row("a", backend="sagemaker", max_run_s=3600, instance_type="ml.m5.xlarge",
                 reuse="no", prices=PRICES, keep_alive_s=1800),
        plan_row("b", backend="sagemaker", max_run_s=3600, instance_type="ml.g5.xlarge",
                 spot=True, reuse="yes", prices=PRICES, instance_count=2, keep_alive_s=0),
    ]
    emulated = plan.plan_rows(repeats[:1], settings_for=lambda repeat: SageMakerSettings(
        emulate=True))
    assert emulated[0].backend == "sagemaker (emulated)" and emulated[0].cost_bound == 0.0


def test_local_runs_on_several_hosts_read_as_n_x_local():
    # A 2-host local run (the experiment's top-level instance_count) is still free; the
    # instance column says how many hosts it starts, as it does for SageMaker rows.
    row = plan_row("two_hosts", backend="local", max_run_s=60, instance_count=2)
    assert (row.instance_count, row.cost_bound, row.price_per_hour) == (2, 0.0, None)
    table = format_plan([row, plan_row("one", backend="local", max_run_s=60)])
    lines = table.splitlines()
    assert lines[1].split()[:3] == ["two_hosts", "local", "2"]
    assert "2 x local" in lines[1] and " x " not in lines[2]
    assert lines[-1] == "at most $0.00 for 2 runs"


def test_a_search_is_bounded_by_all_its_trials():
    search = SimpleNamespace(name="lr_search", max_run=3600, instance_count=1,
                             tune=SimpleNamespace(max_jobs=12))
    (row,) = plan.plan_rows([search], settings_for=lambda repeat: SageMakerSettings(
        max_run=3600, keep_alive_s=0), prices=PRICES)
    one_job = plan_row("x", backend="sagemaker", max_run_s=3600,
                       instance_type="ml.m5.xlarge", prices=PRICES).cost_bound
    assert row.run == "lr_search (12 trials)" and row.trials == 12
    assert row.cost_bound == pytest.approx(12 * one_job)
    (local,) = plan.plan_rows([search])
    assert local.run == "lr_search (12 trials)" and local.cost_bound == 0.0


def test_the_plan_of_a_search_names_its_trials(project):
    project.experiment("lr_search", """
        base: config/base.yaml
        tune:
          strategy: Random
          objective: {metric: accuracy, type: Maximize}
          max_jobs: 6
          max_parallel_jobs: 2
          random_seed: 1
          ranges: {accuracy: {min: 0.5, max: 0.99}}
    """)
    project.experiment("baseline", "base: config/base.yaml\n")
    result = project.run("--sm-plan")
    assert result.ret == 0
    # The footer counts the search as one run, and says how many trials it is.
    result.stdout.fnmatch_lines(["*lr_search (6 trials)*local*",
                                 "at most $0.00 for 2 runs (one of them a search of 6 trials)"])
    assert not project.artifacts.exists() or not (project.artifacts / "lr_search").exists()


def _search_row(run: str, trials: int | None, bound: float = 0.5) -> PlanRow:
    name = run if trials is None else f"{run} ({trials} trials)"
    return PlanRow(name, "sagemaker", "ml.m5.xlarge", False, "-", 3600, 0.23, bound,
                   trials=trials)


def test_the_total_line_says_which_runs_are_searches_and_of_how_many_trials():
    def total(*rows: PlanRow) -> str:
        return format_plan(rows).splitlines()[-1]

    job, six, twelve = _search_row("a", None), _search_row("s", 6), _search_row("t", 12)
    assert total(job, job) == "at most $1.00 for 2 runs"
    assert total(six) == "at most $0.50 for 1 run (a search of 6 trials)"
    assert total(job, six) == "at most $1.00 for 2 runs (one of them a search of 6 trials)"
    assert total(job, six, twelve) == (
        "at most $1.50 for 3 runs (two of them searches, of 6 and 12 trials)")
    assert total(twelve, six) == "at most $1.00 for 2 runs (all searches, of 6 and 12 trials)"
    assert total(six, six, job) == (
        "at most $1.50 for 3 runs (two of them searches, of 6 trials each)")
    assert total(_search_row("one", 1)) == "at most $0.50 for 1 run (a search of 1 trial)"
