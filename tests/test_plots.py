"""PNG plots: valid files of sensible size, robust to odd values, no pyplot state."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sm_pytest.report import plots

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which must come first."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert data.endswith(b"\x00\x00\x00\x00IEND\xaeB`\x82"), "no IEND chunk at the end"
    return width, height


def reasonable(path: Path) -> tuple[int, int]:
    width, height = png_size(path)
    assert 300 <= width <= 3000 and 200 <= height <= 4000, (width, height)
    assert 2_000 < path.stat().st_size < 2_000_000
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    return width, height


def test_available():
    assert plots.available() is True


def test_learning_curve(tmp_path):
    series = {"train_loss": [2.3, 0.9, 0.4, 0.21], "test_accuracy": [0.8, 0.93, 0.97, 0.981]}
    out = plots.learning_curve(series, tmp_path / "run" / "curve.png", "lr_sweep[lr=0.1]")
    assert out == tmp_path / "run" / "curve.png"
    width, height = reasonable(out)
    one = plots.learning_curve({"loss": [1, 2]}, tmp_path / "one.png", "one metric")
    assert png_size(one)[1] < height  # one subplot per metric: fewer metrics, shorter


def test_learning_curve_nan_inf_none_single_point_and_empty(tmp_path):
    series = {
        "loss": [1.0, math.nan, 0.5, math.inf, None, 0.25],
        "all_nan": [math.nan, math.nan],
        "single": [0.5],
        "empty": [],
    }
    reasonable(plots.learning_curve(series, tmp_path / "odd.png", "odd values"))
    reasonable(plots.learning_curve({}, tmp_path / "none.png", "no metrics"))


def test_learning_curve_many_metrics_uses_two_columns(tmp_path):
    series = {f"m{i}": [i, i + 1, i + 0.5] for i in range(7)}
    width, _ = reasonable(plots.learning_curve(series, tmp_path / "many.png", "seven"))
    narrow, _ = png_size(plots.learning_curve({"m": [1, 2]}, tmp_path / "n.png", "one"))
    assert width > 1.5 * narrow


def test_learning_curve_long_series(tmp_path):
    series = {"loss": [1 / (i + 1) for i in range(5000)]}
    reasonable(plots.learning_curve(series, tmp_path / "long.png", "5000 steps"))


def test_overwrite_is_atomic(tmp_path):
    path = tmp_path / "curve.png"
    path.write_bytes(b"old")
    plots.learning_curve({"loss": [1, 0.5]}, path, "again")
    reasonable(path)


def test_sweep_single_axis_log_scale(tmp_path):
    rows = [{"lr": lr, "test_accuracy": acc}
            for lr, acc in [(1.0, 0.9), (0.1, 0.97), (0.01, 0.95), (0.001, 0.85)]]
    reasonable(plots.sweep_plot(rows, "lr", "test_accuracy", tmp_path / "lr.png", "lr sweep"))


def test_sweep_two_axes_one_line_per_other_value(tmp_path):
    rows = [{"lr": lr, "batch-size": bs, "test_accuracy": 0.9 + lr / 100 - bs / 10000}
            for lr in (1.0, 0.5, 0.1) for bs in (32, 128)]
    width, _ = reasonable(plots.sweep_plot(rows, "lr", "test_accuracy", tmp_path / "grid.png",
                                           "lr x batch-size"))
    single, _ = png_size(plots.sweep_plot(rows[:3:2], "lr", "test_accuracy",
                                          tmp_path / "single.png", "one line"))
    assert width > single  # room for the legend


def test_sweep_explicit_others_ignores_extra_columns(tmp_path):
    rows = [{"lr": lr, "seed": seed, "run": f"grid[lr={lr},seed={seed}]", "duration_s": i,
             "test_accuracy": 0.9 + i / 100}
            for i, (lr, seed) in enumerate((lr, s) for lr in (0.1, 0.2) for s in (1, 2))]
    reasonable(plots.sweep_plot(rows, "lr", "test_accuracy", tmp_path / "x.png", "t",
                                others=["seed"]))


def test_sweep_odd_inputs(tmp_path):
    cases = {
        "single": [{"lr": 0.1, "acc": 0.9}],
        "nan": [{"lr": 0.1, "acc": math.nan}, {"lr": 0.2, "acc": 0.8},
                {"lr": 0.3, "acc": None}],
        "all_nan": [{"lr": 0.1, "acc": math.nan}],
        "missing": [{"lr": 0.1}, {"other": 1}],
        "empty": [],
        "categorical": [{"opt": "sgd", "acc": 0.9}, {"opt": "adam", "acc": 0.95},
                        {"opt": True, "acc": 0.5}],
        "list_valued_other": [{"lr": 0.1, "layers": [64, 32], "acc": 0.9},
                              {"lr": 0.1, "layers": [128], "acc": 0.8}],
        "negative": [{"lr": -1.0, "acc": 0.1}, {"lr": 100.0, "acc": 0.2}],
    }
    for name, rows in cases.items():
        param = "opt" if name == "categorical" else "lr"
        reasonable(plots.sweep_plot(rows, param, "acc", tmp_path / f"{name}.png", name))


def test_no_pyplot_and_no_global_state():
    """In a fresh interpreter: pyplot is never imported, the backend and rcParams untouched."""
    # rcParams["backend"] and get_backend() would themselves import pyplot to resolve the
    # automatic backend, hence _get.
    code = """
import json, sys, tempfile, pathlib
import matplotlib
def rc():
    return {k: repr(matplotlib.rcParams._get(k)) for k in matplotlib.rcParams}
before = rc()
from sm_pytest.report import plots
d = pathlib.Path(tempfile.mkdtemp())
plots.learning_curve({"loss": [1, 0.5]}, d / "a.png", "a")
plots.sweep_plot([{"lr": 0.1, "acc": 1}, {"lr": 1.0, "acc": 2}], "lr", "acc", d / "b.png", "b")
print(json.dumps({"pyplot": "matplotlib.pyplot" in sys.modules, "rc": rc() == before}))
"""
    out = subprocess.check_output([sys.executable, "-c", code], text=True)
    assert json.loads(out.strip().splitlines()[-1]) == {"pyplot": False, "rc": True}


def test_threads_draw_independently(tmp_path):
    errors: list[BaseException] = []

    def draw(i: int) -> None:
        try:
            series = {"loss": [1 / (j + 1 + i) for j in range(20)], "acc": [0.5 + i / 100] * 20}
            plots.learning_curve(series, tmp_path / f"c{i}.png", f"run {i}")
            rows = [{"lr": 10 ** -k, "acc": k * i} for k in range(4)]
            plots.sweep_plot(rows, "lr", "acc", tmp_path / f"s{i}.png", f"sweep {i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    sizes = {png_size(tmp_path / f"c{i}.png") for i in range(4)}
    assert len(sizes) == 1  # same layout, no figure leaked into another
    for i in range(4):
        reasonable(tmp_path / f"s{i}.png")


# --- the session's plots, from the run records -----------------------------------------


def _record(tmp_path: Path, lr: float, accuracy: float, *, cached: bool = False):
    from sm_pytest.model import CheckRecord, GateRow, RunRecord

    return RunRecord(
        experiment="lr_sweep", name=f"lr_sweep[lr={lr}]", run_id=f"lr={lr}", status="completed",
        verdict="pass", swept={"lr": lr}, final_metrics={"accuracy": accuracy, "loss": 0.1},
        metric_series={"accuracy": [0.5, accuracy]}, artifact_dir=str(tmp_path / f"lr={lr}"),
        cached=cached, checks=[CheckRecord("accuracy", ">= 0.9", accuracy, True)],
        gate=[GateRow(metric="loss", verdict="ok", gated=True, baseline=0.1, now=0.1,
                      delta=0.0, allowed=0.01, arrow="=")])


def test_session_plots_a_curve_per_trained_run_and_each_checked_or_gated_metric(tmp_path):
    records = [_record(tmp_path, 0.1, 0.95), _record(tmp_path, 1.0, 0.91, cached=True)]
    drawn = plots.draw(records, tmp_path)
    # A reused run drew its curve when it was trained.
    assert drawn == [tmp_path / "lr=0.1" / "learning_curve.png",
                     tmp_path / "plots" / "lr_sweep-accuracy-vs-lr.png",
                     tmp_path / "plots" / "lr_sweep-loss-vs-lr.png"]
    for path in drawn:
        reasonable(path)


def test_session_plots_say_why_they_were_skipped(tmp_path, monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(plots, "available", lambda: False)
    assert plots.draw_session([_record(tmp_path, 0.1, 0.95)], tmp_path, said.append) == []
    assert said == ["plots skipped: matplotlib is not installed (pip install"
                    " 'sm-pytest[plots]')"]
    monkeypatch.undo()
    said.clear()
    broken = _record(tmp_path, 0.1, 0.95)
    broken.artifact_dir = str(tmp_path / "file")
    (tmp_path / "file").write_text("not a folder")
    assert plots.draw_session([broken], tmp_path, said.append) == []
    assert len(said) == 1 and said[0].startswith("plots skipped: ")
