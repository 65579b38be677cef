"""Standard-library helpers for AWS names and errors: s3:// URIs and keys, and the error
code of a botocore ClientError. Used by the backend, the uploads and the emulator alike."""

from __future__ import annotations


def s3_key(*parts: str) -> str:
    """part/part, skipping empty parts and doubled slashes."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def s3_uri(bucket: str, *parts: str) -> str:
    """s3://bucket/part/part, skipping empty parts and doubled slashes."""
    key = s3_key(*parts)
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URI; ValueError for anything else."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('ThrottlingException', '404'), else ''."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
