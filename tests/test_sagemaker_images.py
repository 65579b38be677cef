"""The default training image and the py_version derivation, read from the pinned SDK's own
image config (sm_pytest.sagemaker.images), and how settings use them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sm_pytest.sagemaker import images
from sm_pytest.sagemaker.settings import SettingsError, resolve


def res(block=None, config=None):
    return resolve(cli={}, ini={}, config_path=config, experiment_block=block or {},
                   environ={"HOME": "/nonexistent"}, experiment_path=None)


def test_the_default_is_the_newest_version_the_sdk_lists_for_cpu_and_gpu():
    image_uris = pytest.importorskip("sagemaker.core.image_uris")
    training = image_uris.config_for_framework("pytorch")["training"]
    both = [v for v, entry in training["versions"].items()
            if {"cpu", "gpu"} <= set(entry.get("processors") or training["processors"])]
    newest = max(both, key=lambda v: tuple(int(p) for p in v.split(".")))
    assert images.default_framework_version() == newest
    # sagemaker-core 2.27, as FIELD-NOTES records it: 2.10.0 is the newest, with py313 only.
    assert (newest, images.py_versions(newest)) == ("2.10.0", ("py313",))


def test_settings_take_the_default_image_and_derive_py_version():
    s = res()
    assert (s.framework_version, s.py_version) == ("2.10.0", "py313")
    assert "newest PyTorch training image" in s.sources["framework_version"]
    # Only the framework version changed: py_version follows it.
    s = res({"framework_version": "2.8.0"})
    assert (s.framework_version, s.py_version) == ("2.8.0", "py312")
    assert s.sources["py_version"] == "derived from framework_version 2.8.0"
    s = res({"framework_version": "2.8.0", "py_version": "py312"})
    assert (s.framework_version, s.py_version) == ("2.8.0", "py312")


def test_a_py_version_the_framework_version_lacks_names_the_ones_it_has(tmp_path):
    config = tmp_path / "sagemaker.yaml"
    config.write_text('framework_version: "2.10.0"\npy_version: py312\n')
    with pytest.raises(SettingsError) as info:
        res(config=config)
    message = str(info.value)
    assert f"framework_version from {config}:1, py_version from {config}:2" in message
    assert "framework_version '2.10.0' has no image for py_version 'py312'" in message
    assert "its py_versions are py313" in message


def test_a_version_without_an_image_names_the_versions_that_exist():
    with pytest.raises(SettingsError) as info:
        res({"framework_version": "2.11.0"})
    message = str(info.value)
    assert "framework_version '2.11.0' has no PyTorch training image" in message
    assert "sagemaker-core 2.27" in message and "2.8.0, 2.9.0, 2.10.0" in message


def test_versions_listed_for_one_processor_only_are_not_chosen(monkeypatch):
    config = {"processors": ["cpu", "gpu"], "version_aliases": {"3.0": "3.0.0"},
              "versions": {
                  "2.9.0": {"py_versions": ["py311", "py312"]},
                  "3.0.0": {"py_versions": ["py313"], "processors": ["gpu"]},
              }}
    monkeypatch.setattr(images, "_training_config", lambda: config)
    images.training_versions.cache_clear()
    try:
        assert images.default_framework_version() == "2.9.0"
        assert images.choose_versions(None, None) == ("2.9.0", "py312")  # the newest tag
        with pytest.raises(images.ImageVersionError, match="lists 2.9.0$"):
            images.choose_versions("3.0", None)
    finally:
        images.training_versions.cache_clear()


def test_a_version_given_needs_an_image_only_for_the_instance_types_processor(monkeypatch):
    config = {"processors": ["cpu", "gpu"], "versions": {
        "2.9.0": {"py_versions": ["py312"]},
        "3.0.0": {"py_versions": ["py313"], "processors": ["gpu"]}}}
    monkeypatch.setattr(images, "_training_config", lambda: config)
    images.training_versions.cache_clear()
    try:
        # A GPU-only version on a GPU instance is what the user asked for.
        s = res({"framework_version": "3.0.0", "instance_type": "ml.g5.xlarge"})
        assert (s.framework_version, s.py_version) == ("3.0.0", "py313")
        with pytest.raises(SettingsError) as info:
            res({"framework_version": "3.0.0", "instance_type": "ml.m5.xlarge"})
        assert "'3.0.0' has no PyTorch training image for CPU" in str(info.value)
        assert "lists 2.9.0, 3.0.0" not in str(info.value)
        # The default still runs either way.
        assert res({"instance_type": "ml.g5.xlarge"}).framework_version == "2.9.0"
    finally:
        images.training_versions.cache_clear()


@pytest.mark.parametrize("instance_type, kind", [
    ("ml.m5.xlarge", "cpu"), ("ml.c5.2xlarge", "cpu"), ("ml.g5.xlarge", "gpu"),
    ("ml.p4d.24xlarge", "gpu"), ("local", "cpu"), ("local_gpu", "gpu"),
    ("ml.trn1.2xlarge", None), (None, None)])
def test_the_processor_is_the_sdks(instance_type, kind):
    assert images.processor(instance_type) == kind


def test_reading_the_image_config_imports_no_sdk():
    code = ("import sys; from sm_pytest.sagemaker import images;"
            " print(images.choose_versions(None, None));"
            " print(sorted(m for m in ('sagemaker', 'boto3', 'botocore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1]).stdout.splitlines()
    assert out == [str(("2.10.0", "py313")), json.dumps([])]
