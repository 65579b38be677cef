"""One emulated job's files: in from emulated S3 before an attempt, out to S3 after it.

    from sm_pytest.sagemaker.emulator.staging import JobStaging

Before each attempt, :meth:`JobStaging.prepare_tree` downloads sourcedir.tar.gz and the
channels and lays out the container tree with :mod:`sm_pytest.run.contract`, and
:meth:`JobStaging.download_checkpoints` fills the checkpoint dir from
CheckpointConfig.S3Uri. After it, :meth:`JobStaging.sync_checkpoints_up` puts the
checkpoints back, and :meth:`JobStaging.upload_model` and
:meth:`JobStaging.upload_output_data` pack model.tar.gz and output.tar.gz
as SageMaker does. A failure SageMaker reports as the job's FailureReason is a
:class:`JobError`.
"""

from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sm_pytest.run.contract import (
    SCRIPT_MODE_PARAMS,
    ContainerJob,
    ContainerTree,
    decode_hyperparameters,
    prepare_container_tree,
)
from sm_pytest.run.safe_tar import safe_extract
from sm_pytest.sagemaker.aws import parse_s3_uri

if TYPE_CHECKING:  # pragma: no cover
    from sm_pytest.sagemaker.emulator.job_host import JobHost

__all__ = ["JobError", "JobStaging", "relative_key", "tar_gz"]


class JobError(Exception):
    """The job fails before or outside the program, with this FailureReason."""

    def __init__(self, reason: str, *, container: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.container = container  # the container saw it (so it belongs in the log)


def _safe_relative(rel: str) -> PurePosixPath:
    """An S3 key remainder as a relative path that stays inside its folder."""
    path = PurePosixPath(rel)
    if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts):
        raise ValueError(f"unsafe object name {rel!r}")
    return path


def relative_key(prefix: str, key: str) -> PurePosixPath:
    """Where the object ``key``, listed under ``prefix``, lands in the channel folder.

    The prefix is the folder: s3://b/data/train puts data/train/x.csv at x.csv and
    data/train/sub/y.csv at sub/y.csv; a prefix naming one object (data/train.csv) puts it
    at train.csv; a prefix ending inside a name (data/tr) keeps the path below its last
    "/" (train/x.csv)."""
    if key == prefix:
        rest = key.rsplit("/", 1)[-1]
    elif prefix.endswith("/") or not prefix:
        rest = key[len(prefix):]
    elif key.startswith(prefix + "/"):
        rest = key[len(prefix) + 1:]
    else:
        rest = key[prefix.rfind("/") + 1:]
    return _safe_relative(rest)


def tar_gz(folder: Path, target: Path) -> None:
    """Pack the contents of ``folder`` (no leading ``./``), as SageMaker packs model.tar.gz."""
    with tarfile.open(target, "w:gz") as tar:
        for entry in sorted(folder.iterdir()):
            tar.add(entry, arcname=entry.name)


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def _folder_prefix(prefix: str) -> str:
    """A checkpoint S3Uri's key prefix as a folder (SageMaker syncs below it)."""
    return prefix if (not prefix or prefix.endswith("/")) else prefix + "/"


@dataclass
class JobStaging:
    """The files of one job (``request`` is its CreateTrainingJob request), moved through
    ``host`` as ``account``."""

    host: JobHost
    account: str
    region: str
    job_name: str
    request: dict[str, Any]

    # --- in ----------------------------------------------------------------------------------

    def prepare_tree(self, root: Path) -> ContainerTree:
        """The container tree of one attempt under ``root``: the source and the channels
        downloaded, the program's arguments and variables laid out by the contract."""
        request = self.request
        stored_hps = request.get("HyperParameters") or {}
        decoded = decode_hyperparameters(stored_hps)
        program = decoded.get("sagemaker_program")
        submit = decoded.get("sagemaker_submit_directory")
        if not program or not submit:
            raise JobError(
                "AlgorithmError: the emulator runs script mode only: the hyperparameters "
                "sagemaker_program and sagemaker_submit_directory (an s3:// URI of "
                "sourcedir.tar.gz) are required, exit code: 1", container=True)
        log_level = decoded.get("sagemaker_container_log_level", logging.INFO)
        region = decoded.get("sagemaker_region") or self.region
        # The contract writes the script-mode keys from the job itself; every other key,
        # unknown sagemaker_* ones included (they land in SM_FRAMEWORK_PARAMS), passes on.
        hyperparameters = {k: v for k, v in decoded.items() if k not in SCRIPT_MODE_PARAMS}

        source_dir = root / "sourcedir"
        try:
            bucket, key = parse_s3_uri(submit)
            root.mkdir(parents=True, exist_ok=True)
            archive = root / "sourcedir.tar.gz"
            archive.write_bytes(self.host.s3_get(self.account, bucket, key))
            safe_extract(archive, source_dir)  # nothing may land outside the folder
        except Exception as exc:
            raise JobError(
                f"AlgorithmError: could not download and extract sagemaker_submit_directory "
                f"{submit}: {exc}, exit code: 1", container=True) from exc

        channels = {}
        for channel in request.get("InputDataConfig") or []:
            name = channel["ChannelName"]
            channels[name] = self._download_channel(channel, root / "channels" / name)

        resources = request.get("ResourceConfig") or {}
        job = ContainerJob(
            job_name=self.job_name,
            program=str(program),
            source_dir=source_dir,
            hyperparameters=hyperparameters,
            channels=channels,
            instance_type=resources.get("InstanceType") or "local",
            region=str(region),
            log_level=int(log_level) if isinstance(log_level, (int, float)) else logging.INFO,
        )
        try:
            return prepare_container_tree(job, root / "container", python=self.host.python)
        except (ValueError, OSError) as exc:
            raise JobError(f"AlgorithmError: {exc}, exit code: 1", container=True) from exc

    def download_checkpoints(self, tree: ContainerTree) -> None:
        """Fill the checkpoint dir from CheckpointConfig.S3Uri (a restart resumes there)."""
        checkpoint = (self.request.get("CheckpointConfig") or {}).get("S3Uri")
        if not checkpoint:
            return
        bucket, prefix = parse_s3_uri(checkpoint)
        try:
            self.host.s3_download_prefix(self.account, bucket, _folder_prefix(prefix),
                                         tree.checkpoint_dir)
        except Exception as exc:
            raise JobError(f"ClientError: could not download the checkpoints from "
                           f"{checkpoint}: {exc}") from exc

    def _download_channel(self, channel: dict[str, Any], dest: Path) -> Path:
        name = channel["ChannelName"]
        source = (channel.get("DataSource") or {}).get("S3DataSource")
        if not source:
            raise JobError(f"ClientError: channel {name!r}: the emulator supports S3 data "
                           "sources only")
        mode = channel.get("InputMode") or self.request.get("AlgorithmSpecification", {}).get(
            "TrainingInputMode", "File")
        if mode not in ("File", "FastFile"):
            raise JobError(f"ClientError: channel {name!r}: input mode {mode} is not emulated "
                           "(File and FastFile are)")
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise JobError(f"ClientError: channel {name!r}: S3DataType "
                           f"{source.get('S3DataType')} is not emulated (S3Prefix is)")
        uri = source["S3Uri"]
        try:
            bucket, prefix = parse_s3_uri(uri)
        except ValueError as exc:
            raise JobError(f"ClientError: channel {name!r}: {exc}") from exc
        try:
            count = self.host.s3_download_prefix(self.account, bucket, prefix, dest)
        except Exception as exc:
            raise JobError(f"ClientError: Data download failed:{exc}") from exc
        if not count:
            raise JobError(
                f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data '
                f"source. Please ensure that the bucket exists in the selected region "
                f'({self.region}), that objects exist under that S3 prefix, and that the role '
                f'"{self.request.get("RoleArn")}" has "s3:ListBucket" permissions on bucket '
                f'"{bucket}".')
        return dest

    # --- out ---------------------------------------------------------------------------------

    def sync_checkpoints_up(self, tree: ContainerTree) -> None:
        """Put every file of the checkpoint dir to CheckpointConfig.S3Uri, if there is one."""
        checkpoint = (self.request.get("CheckpointConfig") or {}).get("S3Uri")
        if not checkpoint:
            return
        bucket, prefix = parse_s3_uri(checkpoint)
        prefix = _folder_prefix(prefix)
        root = tree.checkpoint_dir
        for path in sorted(root.rglob("*")):
            if path.is_file():
                key = prefix + path.relative_to(root).as_posix()
                self.host.s3_put(self.account, bucket, key, path.read_bytes())

    def _output_base(self) -> tuple[str, str]:
        """The bucket and the key prefix of the job's output archives."""
        output = (self.request.get("OutputDataConfig") or {}).get("S3OutputPath", "")
        bucket, prefix = parse_s3_uri(output)
        prefix = f"{prefix.rstrip('/')}/" if prefix.strip("/") else ""
        return bucket, f"{prefix}{self.job_name}/output/"

    def upload_model(self, tree: ContainerTree, staging: Path, status: str) -> str | None:
        """Pack and put model.tar.gz below OutputDataConfig.S3OutputPath, as SageMaker does
        for a job that ends ``status`` (packed in the folder ``staging``); its S3 URI (the
        job's S3ModelArtifacts), or None when there is none."""
        bucket, base = self._output_base()
        staging.mkdir(exist_ok=True)
        # Always for a job that did not fail; for a failed one, when the program left
        # something in the model dir.
        if status == "Failed" and not _has_files(tree.model_dir):
            return None
        tar_gz(tree.model_dir, staging / "model.tar.gz")
        self.host.s3_put(self.account, bucket, base + "model.tar.gz",
                         (staging / "model.tar.gz").read_bytes())
        return f"s3://{bucket}/{base}model.tar.gz"

    def upload_output_data(self, tree: ContainerTree, staging: Path) -> None:
        """Pack and put output.tar.gz next to model.tar.gz, when output/data has files."""
        if not _has_files(tree.output_data_dir):
            return
        bucket, base = self._output_base()
        staging.mkdir(exist_ok=True)
        tar_gz(tree.output_data_dir, staging / "output.tar.gz")
        self.host.s3_put(self.account, bucket, base + "output.tar.gz",
                         (staging / "output.tar.gz").read_bytes())
