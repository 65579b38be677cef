"""Standard-library helpers for AWS names and errors: s3:// URIs and keys, the error code
of a botocore ClientError, and string lengths as AWS counts them. Used by the backend, the
uploads and the emulator alike."""

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


def utf16_length(text: str) -> int:
    """A string's length as AWS counts it (Java: UTF-16 code units), so a character outside
    the Basic Multilingual Plane (an emoji, 𝐀) counts twice."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def utf16_cut(text: str, limit: int) -> str:
    """The longest head of `text` of at most `limit` UTF-16 code units, never half a
    character."""
    size = 0
    for index, char in enumerate(text):
        size += 2 if ord(char) > 0xFFFF else 1
        if size > limit:
            return text[:index]
    return text
