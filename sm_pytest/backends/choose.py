"""Which backend a session's runs go to, decided here alone: this machine, or with --sm the
SageMaker session's backend. The same choice names the backend, and its settings, in each
run's fingerprint, so that a cached run is only reused on the backend it ran on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sm_pytest.backends.base import Backend
    from sm_pytest.backends.sagemaker_session import SageMakerSession
    from sm_pytest.spec.experiment_file import RunSpec


def choose_backend(sagemaker: SageMakerSession | None, repeats: Sequence[RunSpec] = (), *,
                   echo: Callable[[str], Any] | None = None,
                   progress: Callable[[str], None] | None = None) -> Backend:
    """The local backend when `sagemaker` is None. Otherwise the SageMaker backend, started
    (with the emulator, when asked for) on the first call and planning the Experiments names
    of `repeats` on every call: the caller checks their settings first (SageMakerSession.check).

    echo: where a local run's output is copied as it comes (pytest -s); progress: where
    live metric lines go, None when nobody would see them."""
    if sagemaker is None:
        from sm_pytest.backends.local import LocalBackend, thread_share

        return LocalBackend(echo=echo, extra_env=thread_share(), progress=progress)
    backend = sagemaker.start(list(repeats))
    # The SageMaker backend's lines go through the session's queue (SageMakerSession.flush):
    # it only needs to know whether anyone reads them.
    backend.live_progress = progress is not None
    return backend


def backend_settings(sagemaker: SageMakerSession | None, run: RunSpec) -> tuple[str, dict]:
    """The backend's name and the settings of `run` that change what it computes, for the
    run's fingerprint."""
    if sagemaker is None:
        return "local", {}
    from sm_pytest.sagemaker.settings import fingerprint_settings

    return "sagemaker", fingerprint_settings(sagemaker.settings_for(run))
