"""The strict SageMaker emulator: moto, checked against the service model, running real
training jobs on this machine.

    from sm_pytest.sagemaker.emulator import Emulator

An Emulator starts moto's ``mock_aws()`` in this process and patches moto's SageMaker *response*
layer, so that CreateTrainingJob runs the job the way a SageMaker script-mode container
would (see :mod:`sm_pytest.sagemaker.emulator.jobs`): sourcedir.tar.gz and the channels come
from emulated S3, the container tree and the program's arguments and ``SM_*`` variables come
from :mod:`sm_pytest.run.contract`, the program runs as a subprocess in its own process
group, its output becomes CloudWatch log events in ``/aws/sagemaker/TrainingJobs`` (stream
``<job>/algo-<n>-<epoch seconds>``, one per instance per attempt), and model.tar.gz,
output.tar.gz and the checkpoints go back to S3. ``ResourceConfig.InstanceCount`` N runs N
hosts, ``algo-1`` .. ``algo-N``, started together, each with its own tree
(``hosts/algo-<n>`` of the attempt's folder) and stream; a failing host fails the job and
stops the others (which host is blamed: :mod:`sm_pytest.run.host_failure`); model.tar.gz is
every host's /opt/ml/model merged in host order (:mod:`sm_pytest.sagemaker.emulator.hosts`).
DescribeTrainingJob then shows what a real job shows: InProgress with SecondaryStatus
Starting -> Downloading -> Training -> Uploading, then Completed, Failed (FailureReason
``AlgorithmError: <the failure file>, exit code: 1``) or Stopped (SecondaryStatus Stopped,
MaxRuntimeExceeded or MaxWaitTimeExceeded), real FinalMetricDataList values from the
request's MetricDefinitions, timings, and the SecondaryStatusTransitions.

Warm pools (:mod:`sm_pytest.sagemaker.emulator.warm_pools`): a job with
``ResourceConfig.KeepAlivePeriodInSeconds`` shows WarmPoolStatus InUse, and after it ends
keeps an Available pool for that period when the warm-pool quota allows (``quota``, default
0 as on AWS); a matching job takes it (the old job becomes Reused, ReusedByJob the new one),
starts faster, and finds the pool's persistent cache folder in
SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY; ResourceRetainedBillableTimeInSeconds counts the
idle time; UpdateTrainingJob ends or extends a pool. ``warm_pools`` lists every keep-alive
job's pool. Service Quotas lists the warm-pool quotas for service code sagemaker
(:mod:`sm_pytest.sagemaker.emulator.service_quotas`); ``deny_service_quotas`` plays a caller
without permission.

Start latency: a real cluster takes minutes to start cold and seconds on a warm pool. A job
waits ``cold_start_seconds`` (``warm_start_seconds`` on a pool) in SecondaryStatus
Starting before Downloading, stoppable meanwhile; TrainingStartTime comes after the wait.
Both are 0 by default, so that tests stay fast; the figures are the test's to choose and
stand for nothing measured.

CreateHyperParameterTuningJob runs a search whose trials are such jobs, created through
CreateTrainingJob, at most MaxParallelTrainingJobs at a time
(:mod:`sm_pytest.sagemaker.emulator.tuning`).

Limits: script mode only (sagemaker_program + an s3:// sagemaker_submit_directory); the
hosts of a multi-instance job meet on 127.0.0.1 and a free port (``algo-<n>`` does not
resolve here, and 7777 may be taken), and each gets every channel (FullyReplicated);
S3Prefix channels in File/FastFile mode;
CheckpointConfig.LocalPath is not relocated (the program gets SM_CHECKPOINT_DIR);
checkpoints are synced to S3 at the end of each attempt, not continuously; the image is not
used (the program runs with this interpreter, nothing is pip-installed).

Where things are (one job each):

* ``service.py``: the :class:`Emulator` (its lifetime, the knobs a test turns, what it
  records), the RequestHost of the patched handlers and the JobHost of the job runners.
* ``environment.py``: the process environment it sets for its lifetime (credentials, region,
  retries, config files) and restores; ``aws_clients.py``: its own S3, Logs and SageMaker
  clients, each call made as one account.
* ``patches.py``: which moto handlers are patched and why, their installing, and the
  training-job handlers; ``pool_handlers.py``: the warm-pool and Service Quotas handlers;
  ``refusals.py``: how a handler refuses a request; ``service_rules.py``: the service
  model's rules it checks; ``logs.py``: GetLogEvents paging.
* ``jobs.py``: one training job's runner thread; ``attempts.py``: the records of its runs;
  ``hosts.py``: the hosts of one attempt; ``staging.py``: its files in from and out to S3;
  ``job_host.py``: what a runner may ask of the Emulator.
* ``warm_pools.py``: the warm-pool registry; ``service_quotas.py``: the quota answers.
* ``tuning.py`` and ``tuning_rules.py``: hyperparameter tuning jobs; ``trial_components.py``:
  SageMaker Experiments; ``knobs.py``: the knobs set through the environment for whole
  --sm-emulate sessions.

The names here are looked up on first use (PEP 562), not at import: the service imports
moto and boto3 and checks moto's version, and the SageMaker session imports
:mod:`~sm_pytest.sagemaker.emulator.knobs` before it knows whether it will emulate at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sm_pytest.sagemaker.emulator.service import Emulator, EmulatorError

__all__ = ["Emulator", "EmulatorError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sm_pytest.sagemaker.emulator import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
