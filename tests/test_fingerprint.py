"""Run fingerprints: what changes them, what does not, and that hashing data is cheap."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import pytest

from sm_pytest.run import fingerprint as fp
from sm_pytest.run import hashing
from sm_pytest.sagemaker.settings import SageMakerSettings, fingerprint_settings
from sm_pytest.spec import thresholds
from sm_pytest.spec.experiment_file import RunSpec, load_experiment
from sm_pytest.spec.metrics import MetricDefinition

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "data" / "mnist-sample"
SM = {"instance_type": "ml.m5.xlarge", "instance_count": 1, "spot": False}


def make_project(root: Path) -> tuple[Path, Path]:
    src, data = root / "src", root / "data"
    (src / "pkg").mkdir(parents=True)
    (src / "train.py").write_text("print('loss=0.1 accuracy=0.9')\n")
    (src / "pkg" / "model.py").write_text("X = 1\n")
    data.mkdir()
    (data / "train.bin").write_bytes(b"\x01" * 1000)
    (data / "labels.bin").write_bytes(b"\x02" * 10)
    return src, data


def make_run(src: Path, data: Path, **changes) -> RunSpec:
    run = RunSpec(
        experiment="exp", run_id="lr=0.1", path=src.parent / "exp.yaml", line=1,
        description="", source_dir=src, entry_point="train.py",
        hyperparameters={"lr": 0.1, "epochs": 2, "opt": {"name": "sgd", "momentum": 0.9}},
        swept={"lr": 0.1}, inputs={"training": str(data)},
        metric_definitions=(MetricDefinition("loss", r"loss=([0-9.]+)"),
                            MetricDefinition("accuracy", r"accuracy=([0-9.]+)")),
        expect=(thresholds.parse("accuracy", ">= 0.5"),), marks=(), max_run=60, sagemaker={},
    )
    return dataclasses.replace(run, **changes)


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


def parts(run, backend="local", settings=None):
    return fp.fingerprint_parts(run, backend=backend, backend_settings=settings or {})


def changed(a: dict, b: dict) -> set[str]:
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def test_fingerprint_is_stable_and_hex(project):
    run = make_run(*project)
    first = fp.fingerprint(run, backend="local", backend_settings={})
    assert first == fp.fingerprint(run, backend="local", backend_settings={})
    assert len(first) == 64 and int(first, 16) >= 0
    p = parts(run)
    assert first == fp.digest_parts(p)
    assert set(p) == {"version", "hyperparameters", "entry_point", "metric_definitions",
                      "source", "backend", "input:training"}
    assert all(len(v) == 64 for v in p.values())


def test_thresholds_and_max_run_are_not_part_of_it(project):
    run = make_run(*project)
    other = make_run(*project, max_run=9999, marks=("slow",), description="x",
                     expect=(thresholds.parse("accuracy", ">= 0.99"),),
                     experiment="renamed", run_id="", line=7)
    assert parts(run) == parts(other)


@pytest.mark.parametrize("change, part", [
    ({"hyperparameters": {"lr": 0.2, "epochs": 2, "opt": {"name": "sgd", "momentum": 0.9}}},
     "hyperparameters"),
    ({"hyperparameters": {"lr": 0.1, "epochs": 2, "opt": {"name": "sgd", "momentum": 0.8}}},
     "hyperparameters"),
    ({"entry_point": "pkg/model.py"}, "entry_point"),
    ({"metric_definitions": (MetricDefinition("loss", r"loss=(\d+)"),)}, "metric_definitions"),
])
def test_each_spec_field_changes_its_part(project, change, part):
    assert changed(parts(make_run(*project)), parts(make_run(*project, **change))) == {part}


def test_hyperparameter_and_definition_order_do_not_matter(project):
    run = make_run(*project)
    reordered = make_run(*project, hyperparameters={"opt": {"momentum": 0.9, "name": "sgd"},
                                                    "epochs": 2, "lr": 0.1},
                         metric_definitions=tuple(reversed(run.metric_definitions)))
    assert parts(run) == parts(reordered)


def test_floats_are_canonical_but_types_are_kept():
    assert fp.canonical_json({"lr": 0.10}) == fp.canonical_json({"lr": 0.1})
    assert fp.canonical_json({"lr": 1e-3}) == fp.canonical_json({"lr": 0.001})
    assert fp.canonical_json({"b": 1, "a": (1, 2)}) == '{"a":[1,2],"b":1}'
    # the script sees "--x 1" and "--x 1.0" (and strings verbatim): different runs
    assert fp.canonical_json({"x": 1}) != fp.canonical_json({"x": 1.0})
    assert fp.canonical_json({"x": "0.1"}) != fp.canonical_json({"x": 0.1})
    assert fp.canonical_json({"x": True}) != fp.canonical_json({"x": 1})
    assert fp.canonical_json({"x": float("nan")}) == '{"x":NaN}'
    np = pytest.importorskip("numpy")
    assert fp.canonical_json({"x": np.float64(0.1), "n": np.int64(3)}) == '{"n":3,"x":0.1}'
    with pytest.raises(fp.FingerprintError, match="hp.x: a value of type object"):
        fp.canonical_json({"x": object()}, "hp")


def test_yaml_spellings_of_one_float_match(tmp_path):
    src, data = make_project(tmp_path)
    base = ("source_dir: src\ninputs: {training: data}\n"
            "metric_definitions: [{Name: loss, Regex: 'loss=([0-9.]+)'}]\n")
    (tmp_path / "a.yaml").write_text(base + "hyperparameters: {lr: 0.10, wd: 1.0e-4}\n")
    (tmp_path / "b.yaml").write_text(base + "hyperparameters: {lr: 0.1, wd: 0.0001}\n"
                                     "max_run: 5\nexpect: {loss: '< 1'}\n")
    (a,) = load_experiment(tmp_path / "a.yaml", tmp_path)
    (b,) = load_experiment(tmp_path / "b.yaml", tmp_path)
    assert parts(a) == parts(b)


def test_source_content_changes_source_part(project):
    src, data = project
    before = parts(make_run(src, data))
    (src / "pkg" / "model.py").write_text("X = 2\n")
    assert changed(before, parts(make_run(src, data))) == {"source"}


def test_source_ignores_caches_and_tracks_renames_and_exec_bit(project):
    src, data = project
    before = parts(make_run(src, data))
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (src / "pkg" / "stale.pyc").write_bytes(b"\0")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref\n")
    assert parts(make_run(src, data)) == before
    (src / "pkg" / "model.py").chmod(0o755)
    exec_bit = parts(make_run(src, data))
    assert changed(before, exec_bit) == {"source"}
    (src / "pkg" / "model.py").rename(src / "pkg" / "other.py")
    assert changed(exec_bit, parts(make_run(src, data))) == {"source"}


def test_source_hash_is_independent_of_location_and_mtime(tmp_path, project):
    src, _ = project
    copy = shutil.copytree(src, tmp_path / "elsewhere")
    os.utime(copy / "train.py", ns=(1, 1))
    assert fp.source_hash(copy) == fp.source_hash(src)


def test_data_content_changes_only_its_input(project):
    src, data = project
    before = parts(make_run(src, data))
    (data / "labels.bin").write_bytes(b"\x03" * 11)
    assert changed(before, parts(make_run(src, data))) == {"input:training"}


def test_data_rewrite_with_same_size_is_seen(project):
    src, data = project
    before = parts(make_run(src, data))
    target = data / "labels.bin"
    stat = target.stat()
    target.write_bytes(b"\x09" * 10)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert changed(before, parts(make_run(src, data))) == {"input:training"}


def test_inputs_s3_by_uri_and_channels_separately(project, tmp_path):
    src, data = project
    run = make_run(src, data, inputs={"training": str(data),
                                      "test": "s3://bucket/datasets/mnist-abc/"})
    p = parts(run)
    assert set(p) >= {"input:training", "input:test"}
    moved = parts(make_run(src, data, inputs={"training": str(data),
                                              "test": "s3://bucket/datasets/mnist-def/"}))
    assert changed(p, moved) == {"input:test"}
    # the same bytes elsewhere hash the same: a dataset is its content, not its path
    copy = shutil.copytree(data, tmp_path / "copy")
    relocated = parts(make_run(src, data, inputs={"training": str(copy),
                                                  "test": "s3://bucket/datasets/mnist-abc/"}))
    assert relocated == p


def test_local_input_matches_upload_dataset_hash(project):
    src, data = project
    assert parts(make_run(src, data))["input:training"] == hashing.dataset_hash(data)


def test_empty_and_missing_inputs(project, tmp_path):
    src, data = project
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "input:training" in parts(make_run(src, data, inputs={"training": str(empty)}))
    with pytest.raises(fp.FingerprintError, match="input 'training': .*does not exist"):
        parts(make_run(src, data, inputs={"training": str(tmp_path / "gone")}))
    with pytest.raises(fp.FingerprintError, match="source_dir .* is not a folder"):
        parts(make_run(src, data, source_dir=tmp_path / "nosrc"))


@pytest.mark.parametrize("setting", [
    {"instance_type": "ml.g5.xlarge"}, {"instance_count": 2}, {"spot": True},
])
def test_backend_settings_change_backend_part(project, setting):
    run = make_run(*project)
    before = parts(run, "sagemaker", SM)
    assert changed(before, parts(run, "sagemaker", {**SM, **setting})) == {"backend"}
    assert changed(before, parts(run, "local", SM)) == {"backend"}
    assert parts(run, "sagemaker", dict(reversed(SM.items()))) == before


def test_sagemaker_backend_settings_keep_what_changes_the_job():
    settings = SageMakerSettings(instance_type="ml.g5.xlarge", spot=True, max_run=10,
                                 keep_alive_s=600, bucket="b", role="r",
                                 environment={"A": "1"}, framework_version="2.8.0",
                                 py_version="py312")
    chosen = fingerprint_settings(settings)
    assert chosen == {"instance_type": "ml.g5.xlarge", "instance_count": 1,
                      "framework_version": "2.8.0", "py_version": "py312", "spot": True,
                      "volume_size_gb": 30, "environment": {"A": "1"}}
    relaxed = dataclasses.replace(settings, max_run=7200, keep_alive_s=0, bucket="other")
    assert fingerprint_settings(relaxed) == chosen


def test_mnist_sample_hashes_fast_and_once(monkeypatch, project):
    """1000 runs sharing the bundled 800 KB sample read each of its files once."""
    if not MNIST.is_dir():
        pytest.skip("data/mnist-sample is not in this checkout")
    reads: list[str] = []
    real_open = open

    def counting_open(file, mode="r", *args, **kwargs):
        if "b" in mode and str(file).startswith(str(MNIST)):
            reads.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    hashing._memo.clear()
    monkeypatch.setattr("builtins.open", counting_open)
    base = make_run(project[0], MNIST)
    started = time.perf_counter()
    digests = {fp.fingerprint(dataclasses.replace(base, hyperparameters={"lr": i / 1000}),
                              backend="local", backend_settings={})
               for i in range(1000)}
    elapsed = time.perf_counter() - started
    assert len(digests) == 1000
    files = [p for p in MNIST.rglob("*") if p.is_file()]
    assert sorted(reads) == sorted(map(str, files))  # every file read exactly once
    # about 0.5 s on an idle machine; the bound only catches re-reading (it must hold on a
    # loaded CI machine running pytest -n 8 beside training runs too)
    assert elapsed < 30.0, f"1000 fingerprints took {elapsed:.2f} s"


def test_fingerprint_module_imports_no_aws_or_heavy_modules():
    import json
    import subprocess
    import sys

    code = ("import sys, json, sm_pytest.run.fingerprint, sm_pytest.store.run_cache,"
            " sm_pytest.report.plan, sm_pytest.report.plots;"
            " print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))
    assert not loaded & {"boto3", "botocore", "sagemaker", "matplotlib", "pandas", "numpy",
                         "torch", "moto"}


# --- several hosts (issue 11) --------------------------------------------------------------

TORCHRUN = {"torch_distributed": {"enabled": True}}


def test_single_host_runs_keep_their_parts_and_digest(project):
    # No `hosts` part at the defaults, so every digest made before multi-host runs stays.
    run = make_run(*project)
    assert set(parts(run)) == {"version", "hyperparameters", "entry_point",
                               "metric_definitions", "source", "backend", "input:training"}
    explicit = dataclasses.replace(run, instance_count=1, distribution={})
    assert fp.fingerprint(explicit, backend="local") == fp.fingerprint(run, backend="local")


@pytest.mark.parametrize("hosts", [
    {"instance_count": 2}, {"distribution": TORCHRUN},
    {"instance_count": 2, "distribution": TORCHRUN},
])
def test_hosts_change_the_hosts_part_only(project, hosts):
    run = make_run(*project)
    before = parts(run)
    after = parts(dataclasses.replace(run, **hosts))
    assert changed(before, after) == {"hosts"}
    assert fp.fingerprint(dataclasses.replace(run, **hosts), backend="local") != \
        fp.fingerprint(run, backend="local")


def test_each_count_and_distribution_is_its_own_training(project):
    run = make_run(*project)
    variants = [dataclasses.replace(run, instance_count=n, distribution=d)
                for n in (2, 3) for d in ({}, TORCHRUN)]
    assert len({parts(v)["hosts"] for v in variants}) == 4


def test_sagemaker_count_comes_from_the_run_in_both_parts(project):
    # resolve() gives settings the run's count, so the backend part and the hosts part
    # always hold the same number: a 2-instance job never matches a 1-instance entry.
    run = make_run(*project)
    one = fingerprint_settings(SageMakerSettings())
    two = fingerprint_settings(SageMakerSettings(instance_count=2))
    before = parts(run, "sagemaker", one)
    after = parts(dataclasses.replace(run, instance_count=2), "sagemaker", two)
    assert changed(before, after) == {"backend", "hosts"}
    assert two["instance_count"] == 2
