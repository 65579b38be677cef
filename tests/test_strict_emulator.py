"""The strict emulator: every request to emulated SageMaker, S3 and CloudWatch Logs is checked
against the botocore service model, and refused with AWS's ValidationException when it breaks
a constraint (sm_pytest/sagemaker/service_rules.py)."""

from __future__ import annotations

import importlib.util
import re

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

import botocore.model  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from sm_pytest.sagemaker.emulator import service_rules  # noqa: E402
from sm_pytest.sagemaker.emulator.service import Emulator  # noqa: E402

BUCKET = "sm-strict-tests"
ROLE = "arn:aws:iam::123456789012:role/sm-strict-tests"
NAME_PATTERN = "[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}"


@pytest.fixture
def emu(tmp_path):
    with Emulator(region="us-east-1", workdir=tmp_path) as emulator:
        emulator.client("s3").create_bucket(Bucket=BUCKET)
        yield emulator


def job_request(name="strict-job", **changes):
    """A CreateTrainingJob request like the ones sm-pytest sends (script mode)."""
    request = {
        "TrainingJobName": name,
        "HyperParameters": {"epochs": "2", "sagemaker_program": '"train.py"',
                            "sagemaker_submit_directory": f'"s3://{BUCKET}/src.tar.gz"'},
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.8",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "loss", "Regex": "loss=([0-9.]+)"}],
        },
        "RoleArn": ROLE,
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                           "VolumeSizeInGB": 10, "KeepAlivePeriodInSeconds": 60},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "Tags": [{"Key": "sm-pytest:experiment", "Value": "lr-sweep"}],
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = request
        for key in parents:
            target = target[key]
        target[last] = value
    return request


def refusal(call):
    """The ClientError a refused call raises: (code, HTTP status, message)."""
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    return (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"],
            error["Error"]["Message"])


# --- SageMaker ----------------------------------------------------------------------------


def test_a_sweep_item_id_as_display_name_is_refused_with_aws_message(emu):
    sm = emu.client("sagemaker")
    code, status, message = refusal(lambda: sm.create_trial_component(
        TrialComponentName="lr-sweep-1", DisplayName="lr_sweep[lr=0.5]"))
    assert (code, status) == ("ValidationException", 400)
    assert message == (
        "1 validation error detected: Value 'lr_sweep[lr=0.5]' at 'displayName' failed to "
        f"satisfy constraint: Member must satisfy regular expression pattern: {NAME_PATTERN}")
    assert emu.refused == [("CreateTrialComponent", message)]
    assert sm.list_trial_components()["TrialComponentSummaries"] == []  # nothing was created


def test_a_64_character_job_name_breaks_length_and_pattern(emu):
    name = "j" * 64
    code, _, message = refusal(
        lambda: emu.client("sagemaker").create_training_job(**job_request(name)))
    assert code == "ValidationException"
    assert message == (
        f"2 validation errors detected: Value '{name}' at 'trainingJobName' failed to satisfy "
        "constraint: Member must have length less than or equal to 63; "
        f"Value '{name}' at 'trainingJobName' failed to satisfy constraint: Member must "
        "satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
    assert emu.requests == [] and emu.jobs == {}  # refused before moto stored anything


def test_lengths_are_counted_in_utf16_code_units_as_aws_counts(emu):
    from sm_pytest.sagemaker.request import _tag_text

    sm = emu.client("sagemaker")
    wide = "\N{MATHEMATICAL BOLD CAPITAL A}"  # a letter outside the BMP: 2 code units
    too_long = [{"Key": "sm-pytest:run", "Value": wide * 129}]  # 129 characters, 258 units
    code, _, message = refusal(lambda: sm.create_training_job(**job_request(Tags=too_long)))
    assert code == "ValidationException"
    assert "at 'tags.1.member.value' failed to satisfy constraint: Member must have length" \
           " less than or equal to 256" in message
    emu.refused.clear()
    # What sm-pytest sends for a run id that long is cut to 256 units, never half a letter.
    value = _tag_text(wide * 200)
    assert value == wide * 128
    sm.create_training_job(**job_request(Tags=[{"Key": "sm-pytest:run", "Value": value}]))
    assert emu.refused == []


def test_out_of_range_numbers_are_refused(emu):
    # botocore checks a minimum itself, so only a client without that check sends 0
    unchecked = emu.client("sagemaker", config=Config(parameter_validation=False))
    _, _, too_short = refusal(lambda: unchecked.create_training_job(
        **job_request(StoppingCondition__MaxRuntimeInSeconds=0)))
    assert too_short == (
        "1 validation error detected: Value '0' at 'stoppingCondition.maxRuntimeInSeconds' "
        "failed to satisfy constraint: Member must have value greater than or equal to 1")
    # ... but no maximum: this one leaves any client
    _, _, too_long = refusal(lambda: emu.client("sagemaker").create_training_job(
        **job_request(ResourceConfig__KeepAlivePeriodInSeconds=21601)))
    assert too_long == (
        "1 validation error detected: Value '21601' at 'resourceConfig.keepAlivePeriodInSeconds'"
        " failed to satisfy constraint: Member must have value less than or equal to 21600")


def test_unknown_enum_values_are_refused(emu):
    sm = emu.client("sagemaker")
    _, _, bad_type = refusal(lambda: sm.create_training_job(
        **job_request(ResourceConfig__InstanceType="ml.m5.xlarg")))
    assert bad_type.startswith(
        "1 validation error detected: Value 'ml.m5.xlarg' at 'resourceConfig.instanceType' "
        "failed to satisfy constraint: Member must satisfy enum value set: [")
    assert "ml.m5.xlarge, " in bad_type
    _, _, bad_mode = refusal(lambda: sm.create_training_job(
        **job_request(AlgorithmSpecification__TrainingInputMode="file")))
    assert bad_mode == (
        "1 validation error detected: Value 'file' at 'algorithmSpecification.trainingInputMode'"
        " failed to satisfy constraint: Member must satisfy enum value set: [Pipe, File, FastFile]")


def test_several_violations_are_counted_and_listed_in_member_order(emu):
    request = job_request(
        "bad_name",
        ResourceConfig__KeepAlivePeriodInSeconds=86400,
        Tags=[{"Key": "ok", "Value": "fine"}, {"Key": "a,b", "Value": "x"}],
    )
    _, _, message = refusal(lambda: emu.client("sagemaker").create_training_job(**request))
    assert message.startswith("3 validation errors detected: ")
    assert [re.search(r"at '([^']+)'", part).group(1) for part in message.split("; ")] == [
        "trainingJobName", "resourceConfig.keepAlivePeriodInSeconds", "tags.2.member.key"]
    assert "; Value '86400' at 'resourceConfig.keepAlivePeriodInSeconds' failed to satisfy " \
        "constraint: Member must have value less than or equal to 21600; " in message


def test_a_missing_required_member_is_null_to_the_service(emu):
    # botocore refuses this client-side; a client without that check reaches the service.
    sm = emu.client("sagemaker", config=Config(parameter_validation=False))
    request = job_request()
    del request["RoleArn"]
    _, _, message = refusal(lambda: sm.create_training_job(**request))
    assert message == ("1 validation error detected: Value null at 'roleArn' failed to satisfy"
                       " constraint: Member must not be null")


def test_a_valid_training_job_request_passes(emu):
    # (its sourcedir.tar.gz was never uploaded: the job fails, but the service accepted it)
    response = emu.client("sagemaker").create_training_job(**job_request())
    assert response["TrainingJobArn"].endswith(":training-job/strict-job")
    assert emu.refused == []
    assert emu.requests[-1]["TrainingJobName"] == "strict-job"
    assert emu.wait_idle(timeout=30)


def test_map_values_are_refused_as_the_map(emu):
    request = job_request(Environment={"GOOD": "1", "bad-key": "2"})
    _, _, message = refusal(lambda: emu.client("sagemaker").create_training_job(**request))
    assert message == (
        "1 validation error detected: Value '{GOOD=1, bad-key=2}' at 'environment' failed to "
        "satisfy constraint: Map keys must satisfy constraint: [Member must have length less "
        "than or equal to 512, Member must have length greater than or equal to 0, Member must "
        "satisfy regular expression pattern: [a-zA-Z_][a-zA-Z0-9_]*]")


# --- S3 and CloudWatch Logs ---------------------------------------------------------------


def test_s3_refuses_a_bad_bucket_name_as_s3_does(emu):
    s3 = emu.client("s3")
    code, status, message = refusal(lambda: s3.create_bucket(Bucket="My_Bucket"))
    assert (code, status, message) == ("InvalidBucketName", 400,
                                       "The specified bucket is not valid.")
    assert emu.refused == [("CreateBucket", "The specified bucket is not valid.")]
    assert "My_Bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_s3_model_constraints_answer_a_validation_exception(emu):
    s3 = emu.client("s3")
    s3.put_object(Bucket=BUCKET, Key="a/b c.txt", Body=b"data")  # a valid request passes
    code, status, message = refusal(
        lambda: s3.copy_object(Bucket=BUCKET, Key="copy", CopySource="no-slash"))
    assert (code, status) == ("ValidationException", 400)
    assert message == ("1 validation error detected: Value 'no-slash' at 'copySource' failed "
                       "to satisfy constraint: Member must satisfy regular expression pattern:"
                       " \\/?.+\\/.+")
    assert s3.get_object(Bucket=BUCKET, Key="a/b c.txt")["Body"].read() == b"data"


def test_logs_refuses_a_log_stream_name_with_a_colon(emu):
    logs = emu.client("logs")
    logs.create_log_group(logGroupName="/strict/tests")
    code, status, message = refusal(lambda: logs.create_log_stream(
        logGroupName="/strict/tests", logStreamName="job:algo-1"))
    assert (code, status) == ("ValidationException", 400)
    assert message == ("1 validation error detected: Value 'job:algo-1' at 'logStreamName' "
                       "failed to satisfy constraint: Member must satisfy regular expression "
                       "pattern: [^:*]*")
    assert emu.refused == [("CreateLogStream", message)]


def test_logs_list_sizes_are_checked_by_the_service(emu):
    logs = emu.client("logs", config=Config(parameter_validation=False))
    logs.create_log_group(logGroupName="/strict/tests")
    logs.create_log_stream(logGroupName="/strict/tests", logStreamName="s")
    _, _, message = refusal(lambda: logs.put_log_events(
        logGroupName="/strict/tests", logStreamName="s", logEvents=[]))
    assert message == ("1 validation error detected: Value '[]' at 'logEvents' failed to "
                       "satisfy constraint: Member must have length greater than or equal to 1")


def test_metrics_api_refuses_what_its_model_refuses(emu):
    metrics = emu.client("sagemaker-metrics")
    code, status, message = refusal(lambda: metrics.batch_put_metrics(
        TrialComponentName="Exp-Run-1",
        MetricData=[{"MetricName": "loss", "Timestamp": 1_700_000_000, "Step": 1,
                     "Value": 0.5}]))
    assert (code, status) == ("ValidationException", 400)
    assert message == ("1 validation error detected: Value 'Exp-Run-1' at "
                       "'trialComponentName' failed to satisfy constraint: Member must satisfy"
                       " regular expression pattern: ^[a-z0-9](-*[a-z0-9]){0,119}")


# --- through the plugin -------------------------------------------------------------------


# (not importorskip in the test: pytester would unload what it imports, numpy included)
@pytest.mark.skipif(importlib.util.find_spec("sagemaker") is None, reason="needs sagemaker-core")
def test_sm_emulate_is_strict_a_bad_instance_type_errors_with_aws_message(project):
    project.experiment("typo", """
        base: config/base.yaml
        sagemaker: {instance_type: ml.m5.xlarg}
    """)
    result = project.run_subprocess("--sm", "--sm-emulate", "--sm-region", "us-east-1",
                                    refusals=True)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*ValidationException*1 validation error detected: Value 'ml.m5.xlarg' at "
        "'resourceConfig.instanceType' failed to satisfy constraint: Member must satisfy enum "
        "value set: [[]ml.m4.xlarge, *"])
    # and the session says so at the end, even for a refusal the plugin could tolerate
    result.stdout.fnmatch_lines(["*the emulator refused 1 request(s), as AWS would:*",
                                 "*CreateTrainingJob: 1 validation error detected*"])


# --- the model's patterns -----------------------------------------------------------------

# Patterns Python's re cannot compile (Java-only syntax), per service and shape, in the
# botocore 1.44.8 models; service_rules translates every one of them.
JAVA_ONLY = {
    "service-quotas": {"TagKey", "TagValue"},
    "sagemaker": {
        # UTF-16 surrogate pairs: \uD800\uDC00-\uDBFF\uDFFF
        "AthenaCatalog", "Catalog", "Database", "TableName",
        # \p{Alnum}, ASCII in Java
        "TrainingRepositoryCredentialsProviderArn",
        # Unicode properties: \p{L}, \p{Z}, \p{N}, \p{M}, \p{S}, \p{P}
        "CognitoUserGroup", "CustomerMetadataKey", "CustomerMetadataValue",
        "EntityDescription", "FeatureParameterKey", "FeatureParameterValue", "Group",
        "ModelPackageSourceUri", "ParameterName", "TagKey", "TagValue",
        "VisibilityConditionsKey", "VisibilityConditionsValue",
    },
    "sagemaker-metrics": set(),
    "s3": set(),
    "logs": {
        "ResourceType",  # [\w-_]: a range whose start is a class
        "TagFilterKey", "TagFilterValue", "TagKey", "TagValue",  # Unicode properties
    },
}


def test_the_patterns_re_cannot_compile_are_exactly_the_known_ones():
    found = {}
    for service in JAVA_ONLY:
        found[service] = set()
        for pattern, shapes in service_rules.model_patterns(service).items():
            try:
                re.compile(pattern)
            except re.error:
                found[service].update(shapes)
    assert found == JAVA_ONLY


def test_every_model_pattern_is_checked():
    unchecked = set()
    for service in JAVA_ONLY:
        for pattern in service_rules.model_patterns(service):
            try:
                service_rules.compile_pattern(pattern)
            except service_rules.UncompilablePattern:
                unchecked.add(pattern)
    assert unchecked == set(service_rules.UNCHECKED_PATTERNS) == set()


@pytest.mark.parametrize(("shape", "good", "bad"), [
    ("TagValue", "lr 0.5 é:=+-@/", "a,b"),  # \p{L}: letters of any script
    ("Catalog", "x \U0001F600\t", "\x01"),  # surrogate pair range: U+10000..U+10FFFF
    ("TrainingRepositoryCredentialsProviderArn",
     "arn:aws:lambda:us-east-1:123456789012:function:f",
     "arn:aws:lambda:us-east-é:123456789012:function:f"),  # \p{Alnum}: ASCII only
])
def test_translated_patterns_mean_what_java_means(shape, good, bad):
    model = service_rules._service_model("sagemaker")
    compiled = service_rules.compile_pattern(model.shape_for(shape).metadata["pattern"])
    assert compiled.fullmatch(good)
    assert compiled.fullmatch(bad) is None


def test_java_classes_stay_ascii():
    pattern = service_rules.model_patterns("logs")
    (resource_type,) = [p for p, shapes in pattern.items() if "ResourceType" in shapes]
    compiled = service_rules.compile_pattern(resource_type)  # [\w-_]*
    assert compiled.fullmatch("AWS-Lambda_fn")
    assert compiled.fullmatch("é") is None  # Java's \w is ASCII
    assert service_rules.compile_pattern(r"\w+").fullmatch("é") is None
    assert service_rules.compile_pattern("[a-z]+") is service_rules.compile_pattern("[a-z]+")


# --- service_rules on a small hand-built model ----------------------------------------------

TOY = {
    "metadata": {"protocol": "json", "apiVersion": "2026-01-01", "serviceId": "Toy",
                 "endpointPrefix": "toy", "jsonVersion": "1.1", "targetPrefix": "Toy",
                 "signatureVersion": "v4"},
    "operations": {"Make": {"name": "Make", "http": {"method": "POST", "requestUri": "/"},
                            "input": {"shape": "MakeRequest"}}},
    "shapes": {
        "MakeRequest": {"type": "structure", "required": ["Name"], "members": {
            "Name": {"shape": "Name"}, "Count": {"shape": "Count"}, "Mode": {"shape": "Mode"},
            "Items": {"shape": "Items"}, "Labels": {"shape": "Labels"},
            "Nested": {"shape": "Nested"}, "Flag": {"shape": "Flag"}}},
        "Name": {"type": "string", "min": 1, "max": 5, "pattern": "[a-z]+"},
        "Count": {"type": "integer", "min": 1, "max": 10},
        "Mode": {"type": "string", "enum": ["Fast", "Slow"]},
        "Items": {"type": "list", "member": {"shape": "Item"}, "min": 1, "max": 2},
        "Item": {"type": "structure", "required": ["Key"], "members": {"Key": {"shape": "Name"}}},
        "Labels": {"type": "map", "key": {"shape": "Name"}, "value": {"shape": "Short"},
                   "max": 2},
        "Short": {"type": "string", "max": 3},
        "Nested": {"type": "structure", "members": {"InstanceCount": {"shape": "Count"}}},
        "Flag": {"type": "boolean"},
    },
}


def toy(params):
    shape = botocore.model.ServiceModel(TOY, "toy").operation_model("Make").input_shape
    return [(v.path, v.constraint) for v in service_rules.check_shape(shape, params)]


def test_a_valid_value_has_no_violation():
    assert toy({"Name": "abc", "Count": 10, "Mode": "Fast", "Items": [{"Key": "k"}],
                "Labels": {"a": "xyz"}, "Nested": {"InstanceCount": 1}, "Flag": True}) == []


def test_patterns_match_the_whole_value():
    assert toy({"Name": "abc1"}) == [
        ("name", "Member must satisfy regular expression pattern: [a-z]+")]
    assert toy({"Name": "1abc"}) == toy({"Name": "abc1"})


def test_lengths_ranges_enums_and_required_members():
    assert toy({"Name": ""}) == [
        ("name", "Member must have length greater than or equal to 1"),
        ("name", "Member must satisfy regular expression pattern: [a-z]+")]
    assert toy({"Name": "abcdef"}) == [
        ("name", "Member must have length less than or equal to 5")]
    assert toy({"Name": "a", "Count": 0, "Mode": "fast"}) == [
        ("count", "Member must have value greater than or equal to 1"),
        ("mode", "Member must satisfy enum value set: [Fast, Slow]")]
    assert toy({"Name": "a", "Count": 11}) == [
        ("count", "Member must have value less than or equal to 10")]
    assert toy({"Count": True}) == [("name", "Member must not be null")]  # a bool is no number


def test_lists_structures_and_maps_nest_with_aws_paths():
    assert toy({"Name": "a", "Items": [{"Key": "A"}, {}, {"Key": "b"}],
                "Nested": {"InstanceCount": 99}}) == [
        ("items", "Member must have length less than or equal to 2"),
        ("items.1.member.key", "Member must satisfy regular expression pattern: [a-z]+"),
        ("items.2.member.key", "Member must not be null"),
        ("nested.instanceCount", "Member must have value less than or equal to 10")]
    assert toy({"Name": "a", "Items": []}) == [
        ("items", "Member must have length greater than or equal to 1")]
    assert toy({"Name": "a", "Labels": {"a": "long", "b": "ok", "c": "ok"}}) == [
        ("labels", "Member must have length less than or equal to 2"),
        ("labels", "Map value must satisfy constraint: "
                   "[Member must have length less than or equal to 3]")]
    assert toy({"Name": "a", "Labels": {"A": "x"}}) == [
        ("labels", "Map keys must satisfy constraint: [Member must have length less than or "
                   "equal to 5, Member must have length greater than or equal to 1, Member "
                   "must satisfy regular expression pattern: [a-z]+]")]


def test_wrong_types_are_left_to_the_service_s_serializer():
    assert toy({"Name": 5, "Items": "x", "Labels": [1], "Nested": "y"}) == []


def test_the_message_counts_and_lists_the_violations_as_aws_does():
    one = service_rules.Violation("displayName", "a_b", "Member must satisfy x")
    two = service_rules.Violation("tags", [{"Key": "k"}], "Member must have length y")
    null = service_rules.Violation("roleArn", None, "Member must not be null")
    assert service_rules.message([one]) == (
        "1 validation error detected: Value 'a_b' at 'displayName' failed to satisfy "
        "constraint: Member must satisfy x")
    assert service_rules.message([two, null]) == (
        "2 validation errors detected: Value '[{Key=k}]' at 'tags' failed to satisfy "
        "constraint: Member must have length y; Value null at 'roleArn' failed to satisfy "
        "constraint: Member must not be null")


@pytest.mark.parametrize(("name", "valid"), [
    ("sm-pytest-data", True), ("a.b-c1", True), ("abc", True),
    ("ab", False), ("a" * 64, False), ("My_Bucket", False), ("-abc", False), ("abc-", False),
    ("a..b", False), ("192.168.5.4", False), ("xn--abc", False), ("abc-s3alias", False),
])
def test_s3_bucket_naming_rules(name, valid):
    assert (service_rules.bucket_name_problem(name) is None) is valid
