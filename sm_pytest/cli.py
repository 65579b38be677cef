"""The `sm-pytest` command: helpers around the plugin that are not test runs."""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
from pathlib import Path

_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def fetch_mnist(target: Path) -> list[Path]:
    """Download the full MNIST with torchvision's downloader (needs internet access) and lay
    it out as the four .gz IDX files train.py reads, like the bundled sample."""
    try:
        from torchvision.datasets import MNIST
    except ImportError:
        raise SystemExit("fetch-mnist needs torchvision: pip install 'sm-pytest[mnist]'") from None
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for train in (True, False):
            MNIST(scratch, train=train, download=True)
        raw = Path(scratch) / "MNIST" / "raw"
        written = []
        for name in _MNIST_FILES:
            source, destination = raw / name, target / f"{name}.gz"
            with open(source, "rb") as src, gzip.GzipFile(destination, "wb", mtime=0) as dst:
                shutil.copyfileobj(src, dst)
            written.append(destination)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sm-pytest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch-mnist", help="download the full MNIST (needs internet)")
    fetch.add_argument("target", type=Path, nargs="?", default=Path("data/mnist"),
                       help="folder to write the four .gz files to (default: data/mnist)")
    upload = commands.add_parser(
        "upload-dataset", help="upload a local dataset folder to S3 once, by content hash")
    upload.add_argument("folder", type=Path, help="the local dataset folder, e.g. data/mnist")
    upload.add_argument("--bucket", required=True, help="the S3 bucket")
    upload.add_argument("--prefix", default="sm-pytest", help="key prefix (default: sm-pytest)")
    upload.add_argument("--region", default=None, help="AWS region (default: AWS config)")
    sync = commands.add_parser(
        "mlflow-sync", help="send to MLflow the runs a session could not track there")
    sync.add_argument("--artifacts", type=Path, default=Path("sm-artifacts"),
                      help="the session's artifacts folder, which holds tracking.sqlite"
                           " (default: sm-artifacts)")
    sync.add_argument("--uri", default=None,
                      help="send them to this tracking URI instead of the one each session"
                           " used (e.g. a server that moved)")
    args = parser.parse_args(argv)
    if args.command == "mlflow-sync":
        return _mlflow_sync(args)
    if args.command == "upload-dataset":
        return _upload_dataset(args)
    if args.command == "fetch-mnist":
        try:
            for path in fetch_mnist(args.target):
                print(path)
        except (OSError, RuntimeError) as exc:
            print(f"sm-pytest fetch-mnist: download failed: {exc}", file=sys.stderr)
            return 1
        print(f"point an experiment at it with  inputs: {{training: {args.target}}}")
    return 0


def _upload_dataset(args) -> int:
    if not args.folder.exists():
        print(f"sm-pytest upload-dataset: {args.folder} does not exist", file=sys.stderr)
        return 2
    try:
        from sm_pytest.sagemaker.uploads import upload_dataset_command
    except ImportError:
        print("upload-dataset needs the SageMaker extra: pip install 'sm-pytest[sagemaker]'",
              file=sys.stderr)
        return 2
    try:
        uri = upload_dataset_command(args.folder, args.bucket, args.prefix, args.region)
    except Exception as exc:  # boto3's errors name the bucket and the cause
        print(f"sm-pytest upload-dataset: {exc}", file=sys.stderr)
        return 1
    print(uri)
    print(f"use it in an experiment:  inputs: {{training: {uri}}}")
    return 0


def _mlflow_sync(args) -> int:
    from sm_pytest.store.mlflow_setup import MlflowSetupError, check_client, check_uri

    db_path = args.artifacts / "tracking.sqlite"
    if not db_path.is_file():
        print(f"sm-pytest mlflow-sync: {db_path} does not exist; give the artifacts folder"
              " of the session with --artifacts DIR", file=sys.stderr)
        return 2
    try:
        check_client("it")
        uri = check_uri(args.uri, origin="--uri") if args.uri else None
        from sm_pytest.store.mlflow_tracking import sync

        left = sync(db_path, uri)
    except MlflowSetupError as exc:
        print(f"sm-pytest mlflow-sync: {exc}", file=sys.stderr)
        return 2
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
