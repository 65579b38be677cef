"""--sm-mlflow URI: the URI checked, and the MLflow client made, before anything runs.

Checked with the standard library only, so that a wrong URI or a missing extra is one usage
error at start-up; MLflow itself is imported when the first run is recorded."""

from __future__ import annotations

import re
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlparse

EXTRA = "pip install 'sm-pytest[mlflow]'"
ARN_EXTRA = "pip install 'sm-pytest[mlflow-sagemaker]'"
# The full `mlflow` package: its server, and SQLAlchemy for the database stores.
FULL_MLFLOW = "pip install 'mlflow==3.17.2'"

# SageMaker's managed MLflow: a tracking server, or a serverless MLflow app
# (sagemaker-mlflow 0.5 `mlflow_sagemaker_helpers.py` accepts these two resource types).
_ARN = re.compile(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:"
                  r"(mlflow-tracking-server|mlflow-app)/[A-Za-z0-9][A-Za-z0-9-]*")
_HOST_PORT = re.compile(r"[\w.-]+:\d+(/.*)?")  # a server written without its scheme
_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")

# MLflow retries a refused connection 7 times with a doubling backoff, over four minutes
# per call, and waits 120 s for each answer: a session would hang on a server that is down.
# These apply unless the user has set the variables (the runs do not inherit them); a run
# that is not logged is kept for `sm-pytest mlflow-sync`.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                 # MLflow prints a "View run" line per run ended; the summary links the
                 # experiments once instead.
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


class MlflowSetupError(Exception):
    """The URI or the installation cannot work; phrased for the user."""


def is_arn(uri: str) -> bool:
    return uri.startswith("arn:")


def check_client(origin: str) -> None:
    if find_spec("mlflow") is None:
        raise MlflowSetupError(f"{origin} needs the MLflow client: {EXTRA}")


def check_uri(uri: str, *, origin: str = "--sm-mlflow", base: Path | None = None) -> str:
    """`uri` as MLflow will be given it, or MlflowSetupError saying what to change. `origin`
    names where it was written (the option or the ini value). A relative sqlite path is made
    absolute against `base`, so that `sm-pytest mlflow-sync` finds the same file later."""
    uri = uri.strip()
    check_client(origin)
    if is_arn(uri):
        if not _ARN.fullmatch(uri):
            raise MlflowSetupError(
                f"{origin} {uri!r} is not the ARN of a SageMaker MLflow tracking server; it"
                " looks like arn:aws:sagemaker:us-east-1:123456789012:"
                "mlflow-tracking-server/NAME (or .../mlflow-app/ID)")
        if find_spec("sagemaker_mlflow") is None:
            raise MlflowSetupError(f"{origin} {uri}: a SageMaker ARN needs the sagemaker-mlflow"
                                   f" plugin: {ARN_EXTRA}")
        return uri
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0]  # postgresql+psycopg2://...
    if scheme in ("http", "https"):
        if not parsed.hostname:
            raise MlflowSetupError(f"{origin} {uri!r} has no host; write it as"
                                   " http://HOST:PORT")
        try:
            parsed.port  # noqa: B018 (urllib checks the port only when asked for it)
        except ValueError:
            raise MlflowSetupError(f"{origin} {uri!r}: the port must be a number from 1 to"
                                   " 65535, as in http://HOST:5000") from None
        return uri
    if _HOST_PORT.fullmatch(uri):
        raise MlflowSetupError(f"{origin} {uri!r}: write a server as http://{uri}")
    if scheme in _DATABASES:
        if find_spec("sqlalchemy") is None or find_spec("alembic") is None:
            raise MlflowSetupError(f"{origin} {uri}: a {scheme} store needs the full MLflow"
                                   f" package, not the client alone: {FULL_MLFLOW}")
        if scheme == "sqlite":
            return _sqlite_uri(uri, origin, base or Path.cwd())
        return uri
    if scheme == "databricks":
        return uri
    raise MlflowSetupError(
        f"{origin} {uri!r} is not a tracking URI sm-pytest can use: give a server"
        " (http://HOST:PORT), an embedded store (sqlite:///mlruns.db), or a SageMaker"
        " MLflow ARN (arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME)")


def _sqlite_uri(uri: str, origin: str, base: Path) -> str:
    """sqlite:///relative.db or sqlite:////absolute.db: the file may be new, its folder not."""
    if not uri.startswith("sqlite:///"):
        raise MlflowSetupError(f"{origin} {uri!r}: write an sqlite store as"
                               " sqlite:///FILE.db (three slashes, then the path)")
    path, _, query = uri[len("sqlite:///"):].partition("?")
    if path in ("", ":memory:"):
        raise MlflowSetupError(f"{origin} {uri!r}: name a database file, e.g."
                               " sqlite:///mlruns.db; an in-memory store is gone when the"
                               " session ends")
    file = (base / Path(path).expanduser()).resolve()
    if not file.parent.is_dir():
        raise MlflowSetupError(f"{origin} {uri}: the folder {file.parent} does not exist;"
                               " create it, or name a file in an existing folder")
    return f"sqlite:///{file}" + (f"?{query}" if query else "")


def bound_http_waits() -> None:
    """HTTP_DEFAULTS in this process, where the user has not set them; never in a run's."""
    from sm_pytest.run.contract.environment import set_for_this_process

    for name, value in HTTP_DEFAULTS.items():
        set_for_this_process(name, value)


def make_client(uri: str):
    """An MlflowClient for `uri`, with bounded HTTP retries (HTTP_DEFAULTS)."""
    bound_http_waits()
    import mlflow

    if is_arn(uri):
        # sagemaker-mlflow 0.5.0 names the server in each request's headers from the
        # process's tracking URI, not from the client's. set_tracking_uri also exports it as
        # MLFLOW_TRACKING_URI, which the runs must not inherit.
        use_process_tracking_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri)


def use_process_tracking_uri(uri: str) -> None:
    """mlflow.set_tracking_uri(uri) for this process alone: MLflow exports it to the
    environment as MLFLOW_TRACKING_URI, kept from the runs like HTTP_DEFAULTS."""
    import mlflow

    from sm_pytest.run.contract.environment import set_for_this_process

    set_for_this_process("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
