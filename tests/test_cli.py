"""sm_pytest/cli.py: the `sm-pytest` command."""

from __future__ import annotations

import pytest

from sm_pytest import cli


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    assert exited.value.code == 2
    assert "fetch-mnist" in capsys.readouterr().err


def test_upload_dataset_refuses_a_missing_folder(tmp_path, capsys):
    missing = tmp_path / "nothing"
    assert cli.main(["upload-dataset", str(missing), "--bucket", "b"]) == 2
    assert capsys.readouterr().err.strip() == f"sm-pytest upload-dataset: {missing} does not exist"


def test_upload_dataset_prints_the_uri_to_use(tmp_path, capsys, monkeypatch):
    pytest.importorskip("boto3")
    calls = []

    def upload(folder, bucket, prefix, region):
        calls.append((folder, bucket, prefix, region))
        return "s3://b/sm-pytest/datasets/abc"

    monkeypatch.setattr("sm_pytest.sagemaker.uploads.upload_dataset_command", upload)
    assert cli.main(["upload-dataset", str(tmp_path), "--bucket", "b"]) == 0
    assert calls == [(tmp_path, "b", "sm-pytest", None)]
    assert capsys.readouterr().out.splitlines() == [
        "s3://b/sm-pytest/datasets/abc",
        "use it in an experiment:  inputs: {training: s3://b/sm-pytest/datasets/abc}"]


def test_upload_dataset_reports_what_boto3_said(tmp_path, capsys, monkeypatch):
    pytest.importorskip("boto3")

    def upload(*args):
        raise RuntimeError("NoSuchBucket: b")

    monkeypatch.setattr("sm_pytest.sagemaker.uploads.upload_dataset_command", upload)
    assert cli.main(["upload-dataset", str(tmp_path), "--bucket", "b"]) == 1
    assert capsys.readouterr().err.strip() == "sm-pytest upload-dataset: NoSuchBucket: b"


def test_fetch_mnist_prints_the_files_and_how_to_use_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "fetch_mnist", lambda target: [target / "a.gz", target / "b.gz"])
    assert cli.main(["fetch-mnist", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        str(tmp_path / "a.gz"), str(tmp_path / "b.gz"),
        f"point an experiment at it with  inputs: {{training: {tmp_path}}}"]


def test_fetch_mnist_reports_a_failed_download(tmp_path, capsys, monkeypatch):
    def offline(target):
        raise OSError("no network")

    monkeypatch.setattr(cli, "fetch_mnist", offline)
    assert cli.main(["fetch-mnist", str(tmp_path)]) == 1
    assert "download failed: no network" in capsys.readouterr().err
