"""sm_pytest/sagemaker/aws.py: s3 names, botocore error codes and lengths as AWS counts them,
all without importing the AWS stack."""

from __future__ import annotations

import pytest

from sm_pytest.sagemaker.aws import (
    error_code,
    parse_s3_uri,
    s3_key,
    s3_uri,
    utf16_cut,
    utf16_length,
)


def test_s3_key_joins_parts_without_empty_or_doubled_slashes():
    assert s3_key("prefix/", "", "/run/", "model.tar.gz") == "prefix/run/model.tar.gz"
    assert s3_key("", "/") == ""


def test_s3_uri_with_and_without_a_key():
    assert s3_uri("bucket", "a/", "/b") == "s3://bucket/a/b"
    assert s3_uri("bucket") == "s3://bucket"
    assert s3_uri("bucket", "", "/") == "s3://bucket"


def test_parse_s3_uri_round_trips():
    assert parse_s3_uri(s3_uri("bucket", "a", "b.txt")) == ("bucket", "a/b.txt")
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    assert parse_s3_uri("s3://bucket/") == ("bucket", "")


@pytest.mark.parametrize("uri", ["https://bucket/key", "s3://", "s3:///key", None, 3])
def test_parse_s3_uri_refuses_what_is_not_one(uri):
    with pytest.raises(ValueError):
        parse_s3_uri(uri)


def test_error_code_of_a_client_error_shaped_exception():
    class ClientError(Exception):
        response = {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}

    class NotFound(Exception):
        response = {"Error": {"Code": 404}}

    assert error_code(ClientError()) == "ThrottlingException"
    assert error_code(NotFound()) == "404"
    assert error_code(ValueError("plain")) == ""


def test_utf16_length_counts_characters_outside_the_bmp_twice():
    assert utf16_length("abc") == 3
    assert utf16_length("é") == 1
    assert utf16_length("a😀") == 3
    assert utf16_length("\U0001d400") == 2


def test_utf16_cut_never_splits_a_character():
    assert utf16_cut("abcdef", 4) == "abcd"
    assert utf16_cut("ab😀c", 3) == "ab"
    assert utf16_cut("ab😀c", 4) == "ab😀"
    assert utf16_cut("short", 50) == "short"
    assert utf16_length(utf16_cut("😀" * 10, 7)) == 6
