"""The SageMaker backend's launch preparation, against the in-process emulator."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

pytest.importorskip("moto")
pytest.importorskip("sagemaker.core")

from sm_pytest.backends.sagemaker import SageMakerBackend  # noqa: E402
from sm_pytest.sagemaker.emulator.service import Emulator  # noqa: E402

BUCKET = "bkt"


def test_launches_share_one_upload_of_each_source_folder_and_dataset(tmp_path):
    source, data = tmp_path / "src", tmp_path / "data"
    source.mkdir(), data.mkdir()
    (source / "train.py").write_text("print('hi')\n")
    for i in range(3):
        (data / f"part-{i}.txt").write_text(f"rows {i}\n")
    run = SimpleNamespace(source_dir=source, inputs={"training": str(data),
                                                     "test": "s3://elsewhere/test/"})
    settings = SimpleNamespace(bucket=BUCKET, prefix="p")
    with Emulator() as emu:
        backend = SageMakerBackend(settings_for=lambda run: settings, region="us-east-1",
                                   max_parallel=8, token="t", progress=lambda line: None)
        try:
            backend.s3.create_bucket(Bucket=BUCKET)
            puts = []
            backend.s3.meta.events.register("provide-client-params.s3.PutObject",
                                            lambda params, **kw: puts.append(params["Key"]))
            results, start = [], threading.Barrier(8)

            def launch():
                start.wait()
                results.append((backend._source_uri(run, settings),
                                backend._inputs(run, settings)))

            threads = [threading.Thread(target=launch) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            backend.close()
    assert emu.refused == []  # no request of ours that AWS would refuse
    assert len(results) == 8 and all(result == results[0] for result in results)
    source_uri, inputs = results[0]
    assert source_uri.startswith(f"s3://{BUCKET}/p/") and source_uri.endswith(".tar.gz")
    assert inputs["test"] == "s3://elsewhere/test/"
    assert inputs["training"].startswith(f"s3://{BUCKET}/p/datasets/data-")
    # One sourcedir.tar.gz, three data files and one manifest: nothing uploaded twice.
    assert len(puts) == len(set(puts)) == 5
