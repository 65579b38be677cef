"""One emulated job's files: in from emulated S3 before an attempt, out to S3 after it.

    from sm_pytest.sagemaker.emulator.staging import JobStaging

Before each attempt, :meth:`JobStaging.prepare_trees` downloads sourcedir.tar.gz and the
channels and lays out one container tree per instance with :mod:`sm_pytest.run.contract`,
and :meth:`JobStaging.download_checkpoints` fills each host's checkpoint dir from
CheckpointConfig.S3Uri (the one prefix every host syncs to: "the checkpoints from this S3
bucket are restored to checkpoint_local_path in each instance", model-checkpoints.md).
After it, :meth:`JobStaging.sync_checkpoints_up` puts each host's checkpoints back (and
deletes the restored ones that no host has any more), and
:meth:`JobStaging.upload_model` and :meth:`JobStaging.upload_output_data` pack
model.tar.gz and output.tar.gz as SageMaker does, from every host. A failure SageMaker
reports as the job's FailureReason is a :class:`JobError`.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sm_pytest.run.contract import (
    INSTANCE_TYPE_PARAM,
    SCRIPT_MODE_PARAMS,
    TORCH_DISTRIBUTED_PARAM,
    ContainerJob,
    ContainerTree,
    Rendezvous,
    decode_hyperparameters,
    host_names,
    prepare_container_tree,
)
from sm_pytest.run.safe_tar import safe_extract
from sm_pytest.sagemaker.aws import parse_s3_uri
from sm_pytest.sagemaker.emulator.hosts import merge_folders

if TYPE_CHECKING:  # pragma: no cover
    from sm_pytest.sagemaker.emulator.job_host import JobHost

__all__ = ["JobError", "JobStaging", "relative_key", "tar_gz"]

# One host's tree, or every host's, in host order.
Trees = ContainerTree | Sequence[ContainerTree]


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


def _truthy(value: Any) -> bool:
    """A decoded hyperparameter flag: JSON true, or the strings the toolkit accepts."""
    return value is True or str(value).lower() == "true"


# What tells a file written since it was restored from one left alone: size and mtime alone
# miss a rewrite that keeps the mtime (shutil.copy2, os.utime); ctime cannot be set from
# user space and changes with every write, and a file replaced by a rename has a new inode.
Signature = tuple[int, int, int, int]


def _signatures(folder: Path) -> dict[Path, Signature]:
    """(size, mtime_ns, ctime_ns, inode) of every file below ``folder``."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            st = path.stat()
            found[path] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    return found


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def _merged(trees: Trees, attribute: str, target: Path) -> Path:
    """One tree's folder ``attribute``; several trees': merged into ``target``, in order."""
    if isinstance(trees, ContainerTree):
        return getattr(trees, attribute)
    if len(trees) == 1:
        return getattr(trees[0], attribute)
    return merge_folders([getattr(tree, attribute) for tree in trees], target)


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
    #: Checkpoint dir -> the Signature of each file restored into it from S3 or put there
    #: from it by the last sync: what S3 holds of that host, as far as this job knows.
    _restored: dict[Path, dict[Path, Signature]] = field(
        default_factory=dict, init=False, repr=False)
    #: The checkpoint dirs of the current attempt's hosts, in host order.
    _checkpoint_dirs: list[Path] = field(default_factory=list, init=False, repr=False)

    # --- in ----------------------------------------------------------------------------------

    def prepare_tree(self, root: Path) -> ContainerTree:
        """The container tree of one attempt under ``root``: the source and the channels
        downloaded, the program's arguments and variables laid out by the contract."""
        return self.prepare_trees(root)[0][1]

    def prepare_trees(self, root: Path) -> list[tuple[str, ContainerTree]]:
        """(host, tree) of every instance of one attempt, in host-list order. The source
        and the channels are downloaded once under ``root`` (every host of a SageMaker job
        gets the same copy; FullyReplicated is the only distribution the emulator
        knows). One instance, without a distribution: its tree is ``root/container``, as
        it always was. Otherwise each host's tree is ``root/hosts/algo-<n>``, laid out by
        the contract for that host, with one local rendezvous shared by the hosts (on
        SageMaker, the first host and port 7777; here ``algo-<n>`` does not resolve and
        7777 may be taken)."""
        job = self._container_job(root)
        try:
            if len(job.hosts) == 1 and not job.distribution:
                trees = [(job.hosts[0], prepare_container_tree(job, root / "container",
                                                               python=self.host.python))]
            else:
                rendezvous = Rendezvous.local()
                trees = [(host, prepare_container_tree(job, root / "hosts" / host,
                                                       python=self.host.python,
                                                       current_host=host,
                                                       rendezvous=rendezvous))
                         for host in job.hosts]
        except (ValueError, OSError) as exc:
            raise JobError(f"AlgorithmError: {exc}, exit code: 1", container=True) from exc
        # A new attempt (a spot restart) restores into new trees: the old ones are no host's.
        self._restored.clear()
        self._checkpoint_dirs = [tree.checkpoint_dir for _, tree in trees]
        return trees

    def _container_job(self, root: Path) -> ContainerJob:
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
        fields: dict[str, Any] = {}
        count = int(resources.get("InstanceCount") or 1)
        # The PyTorch estimator's distribution={"torch_distributed": {"enabled": True}}
        # arrives as these hyperparameters (sagemaker-python-sdk v2 pytorch/estimator.py,
        # LAUNCH_TORCH_DISTRIBUTED_ENV_NAME and INSTANCE_TYPE_ENV_NAME): back to the
        # distribution, which the contract turns into the same hyperparameters again.
        distribution = {}
        if _truthy(decoded.get(TORCH_DISTRIBUTED_PARAM)):
            distribution = {"torch_distributed": {"enabled": True}}
            for key in (TORCH_DISTRIBUTED_PARAM, INSTANCE_TYPE_PARAM):
                hyperparameters.pop(key, None)
        if count > 1 or distribution:  # a single host stays today's ContainerJob exactly
            fields = {"hosts": host_names(count), "distribution": distribution}
        return ContainerJob(
            job_name=self.job_name,
            program=str(program),
            source_dir=source_dir,
            hyperparameters=hyperparameters,
            channels=channels,
            instance_type=resources.get("InstanceType") or "local",
            region=str(region),
            log_level=int(log_level) if isinstance(log_level, (int, float)) else logging.INFO,
            **fields,
        )

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
        self._restored[tree.checkpoint_dir] = _signatures(tree.checkpoint_dir)

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
        """Put every file of the checkpoint dir that is new or changed since it was restored
        to CheckpointConfig.S3Uri, if there is one, and delete the keys of restored files
        that are gone. SageMaker syncs what the program writes; a file restored and left
        alone is not written back: with several hosts, every host gets every host's
        checkpoints, and one host's stale copy of another's file must not overwrite that
        host's new one.

        "If a checkpoint is deleted in the SageMaker container, it will also be deleted in
        the S3 folder" (developer guide, model-checkpoints.md). Only keys this job restored
        or wrote are deleted, and with several hosts on the one prefix a key is deleted only
        when NO host of the attempt has the file any more: one host removing its copy of a
        file that another host still holds (every host gets every checkpoint) must not take
        it from the others' next restore."""
        checkpoint = (self.request.get("CheckpointConfig") or {}).get("S3Uri")
        if not checkpoint:
            return
        bucket, prefix = parse_s3_uri(checkpoint)
        prefix = _folder_prefix(prefix)
        root = tree.checkpoint_dir
        restored = self._restored.get(root, {})
        current = _signatures(root)
        for path, signature in sorted(current.items()):
            if restored.get(path) != signature:
                key = prefix + path.relative_to(root).as_posix()
                self.host.s3_put(self.account, bucket, key, path.read_bytes())
        others = [d for d in self._checkpoint_dirs if d != root]
        for path in sorted(set(restored) - set(current)):
            relative = path.relative_to(root)
            if any((other / relative).is_file() for other in others):
                continue
            self.host.s3_delete(self.account, bucket, prefix + relative.as_posix())
        # S3 now holds this host's files as they are; a later sync sends only what changes
        # after this one, and deletes what goes after it.
        self._restored[root] = current

    def _output_base(self) -> tuple[str, str]:
        """The bucket and the key prefix of the job's output archives."""
        output = (self.request.get("OutputDataConfig") or {}).get("S3OutputPath", "")
        bucket, prefix = parse_s3_uri(output)
        prefix = f"{prefix.rstrip('/')}/" if prefix.strip("/") else ""
        return bucket, f"{prefix}{self.job_name}/output/"

    def upload_model(self, tree: Trees, staging: Path, status: str) -> str | None:
        """Pack and put model.tar.gz below OutputDataConfig.S3OutputPath, as SageMaker does
        for a job that ends ``status`` (packed in the folder ``staging``); its S3 URI (the
        job's S3ModelArtifacts), or None when there is none. Several hosts' trees: their
        model dirs merged in host order (see emulator/hosts.py)."""
        bucket, base = self._output_base()
        staging.mkdir(exist_ok=True)
        model_dir = _merged(tree, "model_dir", staging / "model")
        # Always for a job that did not fail; for a failed one, when the program left
        # something in the model dir.
        if status == "Failed" and not _has_files(model_dir):
            return None
        tar_gz(model_dir, staging / "model.tar.gz")
        self.host.s3_put(self.account, bucket, base + "model.tar.gz",
                         (staging / "model.tar.gz").read_bytes())
        return f"s3://{bucket}/{base}model.tar.gz"

    def upload_output_data(self, tree: Trees, staging: Path) -> None:
        """Pack and put output.tar.gz next to model.tar.gz, when output/data has files
        (several hosts: merged as the model dirs are)."""
        staging.mkdir(exist_ok=True)
        data_dir = _merged(tree, "output_data_dir", staging / "output-data")
        if not _has_files(data_dir):
            return
        bucket, base = self._output_base()
        tar_gz(data_dir, staging / "output.tar.gz")
        self.host.s3_put(self.account, bucket, base + "output.tar.gz",
                         (staging / "output.tar.gz").read_bytes())
