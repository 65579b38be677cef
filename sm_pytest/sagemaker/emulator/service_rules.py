"""The request rules an AWS service enforces before it acts: the constraints of its botocore
service model, checked the way the service checks them, and worded the way it words them.

botocore's client-side validation checks types, required members and minimum lengths only,
and moto checks almost nothing, so a request can pass every emulated test and still be
refused by AWS. :func:`find_violations` walks an operation's input shape over the
parameters as they were sent and returns every violation of:

* a required member that is missing or null ("Member must not be null");
* a string's or blob's length, and a list's or map's size ("Member must have length less
  than or equal to 63", "... greater than or equal to 1");
* a string ``pattern``, matched against the WHOLE value, as AWS matches it ("Member must
  satisfy regular expression pattern: ...");
* an enum ("Member must satisfy enum value set: [...]");
* a number's ``min``/``max`` ("Member must have value less than or equal to 21600");

through structures, lists and maps, with member paths as AWS writes them
(``resourceConfig.instanceCount``, ``tags.1.member.key``). A map whose keys or values break
their shape's constraints is one violation of the map ("Map value must satisfy constraint:
[...]", listing every constraint of the value shape, as AWS does). :func:`message` turns the
violations into the ValidationException message ("2 validation errors detected: Value ...;
Value ..."). Members the model does not know, and values of the wrong type (AWS answers
those with a SerializationException), are left alone.

Patterns. The models' patterns are Java regular expressions. They are compiled with ``re``
with ASCII ``\\w \\d \\s``, as in Java. The ones ``re`` cannot compile use Java-only syntax
and are translated (see :func:`compile_pattern`): UTF-16 surrogate pairs
(``\\uD800\\uDC00``) become the code point they encode, Java's POSIX classes (``\\p{Alnum}``,
ASCII-only in Java) become ASCII sets, and Unicode properties (``\\p{L}``, ``\\p{N}``...)
and ranges like ``[\\w-_]`` are compiled by the ``regex`` package (in the ``emulate``
extra). :data:`UNCHECKED_PATTERNS` lists the patterns that not even that compiles; they are
not checked, and a test keeps that list exact for the models of the emulated services. One
Java difference is not translated: Java's ``.`` also refuses ``\\r``, U+0085, U+2028 and
U+2029, Python's only ``\\n``.

Also here, because S3's model carries none of them: S3's bucket naming rules
(:func:`bucket_name_problem`), which CreateBucket enforces with InvalidBucketName.

Standard library and botocore only (``regex`` is imported for the few patterns that need it).
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sm_pytest.sagemaker.aws import utf16_length

__all__ = [
    "UNCHECKED_PATTERNS",
    "UncompilablePattern",
    "Violation",
    "bucket_name_problem",
    "check_shape",
    "compile_pattern",
    "find_violations",
    "message",
    "model_patterns",
]

logger = logging.getLogger(__name__)

#: Patterns of the emulated services' models (SageMaker and its metrics API, S3, CloudWatch
#: Logs, Service Quotas; botocore 1.44.8) that neither ``re`` nor the translation to
#: ``regex`` compiles: values of these shapes are not checked against their pattern (their
#: lengths and enums still are). None today.
UNCHECKED_PATTERNS: frozenset[str] = frozenset()

_NUMBER_TYPES = ("integer", "long", "float", "double")
_SURROGATE_PAIR = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)
# Java's POSIX classes are US-ASCII unless UNICODE_CHARACTER_CLASS is set; the `regex`
# package would read \p{Alnum} and the like as Unicode properties.
_JAVA_POSIX = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": "\\x00-\\x7f",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "XDigit": "0-9a-fA-F",
    "Blank": " \\t",
    "Space": " \\t\\n\\x0b\\f\\r",
    "Cntrl": "\\x00-\\x1f\\x7f",
}
_POSIX_CLASS = re.compile(r"\\p\{(" + "|".join(_JAVA_POSIX) + r")\}")


class UncompilablePattern(ValueError):
    """A model pattern that neither ``re`` nor the ``regex`` translation compiles."""


@dataclass(frozen=True)
class Violation:
    """One broken constraint: where, the value found there, and AWS's wording of the rule."""

    path: str
    value: Any
    constraint: str

    def __str__(self) -> str:
        shown = "null" if self.value is None else f"'{_java_text(self.value)}'"
        return f"Value {shown} at '{self.path}' failed to satisfy constraint: {self.constraint}"


def message(violations: Sequence[Violation]) -> str:
    """The ValidationException message AWS sends for these violations."""
    count = len(violations)
    noun = "error" if count == 1 else "errors"
    return f"{count} validation {noun} detected: " + "; ".join(map(str, violations))


def find_violations(service: str, operation: str, params: Mapping[str, Any] | None
                    ) -> list[Violation]:
    """Every constraint of ``operation``'s input shape that ``params`` break, in member
    order. ``params`` are keyed by member name, as sent (the JSON body of a JSON-protocol
    request) or as parsed from a REST request."""
    shape = _service_model(service).operation_model(operation).input_shape
    if shape is None:
        return []
    return check_shape(shape, params if params is not None else {})


def check_shape(shape: Any, value: Any) -> list[Violation]:
    """Every constraint of the botocore ``shape`` (and the shapes inside it) that ``value``
    breaks; the paths of a structure's members start at its member names."""
    found: list[Violation] = []
    _check(shape, value, "", found)
    return found


# --- the walk ----------------------------------------------------------------------------


def _check(shape: Any, value: Any, path: str, found: list[Violation]) -> None:
    kind = shape.type_name
    if kind == "structure":
        if isinstance(value, Mapping):
            _check_structure(shape, value, path, found)
    elif kind == "list":
        if isinstance(value, (list, tuple)):
            sizes = _length_problems(shape.metadata, len(value))
            found += [Violation(path, value, c) for c in sizes]
            for index, item in enumerate(value, start=1):
                if item is not None:
                    _check(shape.member, item, f"{path}.{index}.member", found)
    elif kind == "map":
        if isinstance(value, Mapping):
            _check_map(shape, value, path, found)
    else:
        found += [Violation(path, value, c) for c in _scalar_problems(shape, value)]


def _check_structure(shape: Any, value: Mapping[str, Any], path: str,
                     found: list[Violation]) -> None:
    required = set(shape.required_members)
    for name, member in shape.members.items():
        item = value.get(name)
        if item is None:
            item = value.get(member.serialization.get("name", name))
        where = f"{path}.{_lower_camel(name)}" if path else _lower_camel(name)
        if item is None:
            if name in required:
                found.append(Violation(where, None, "Member must not be null"))
        else:
            _check(member, item, where, found)


def _check_map(shape: Any, value: Mapping[Any, Any], path: str, found: list[Violation]) -> None:
    sizes = _length_problems(shape.metadata, len(value))
    found += [Violation(path, value, c) for c in sizes]
    if any(_scalar_problems(shape.key, key) for key in value):
        found.append(Violation(path, value, "Map keys must satisfy constraint: "
                               f"[{', '.join(_constraints(shape.key))}]"))
    if shape.value.type_name in ("structure", "list", "map"):
        for key, item in value.items():
            if item is not None:
                _check(shape.value, item, f"{path}.{key}", found)
    elif any(_scalar_problems(shape.value, item) for item in value.values()):
        found.append(Violation(path, value, "Map value must satisfy constraint: "
                               f"[{', '.join(_constraints(shape.value))}]"))


def _scalar_problems(shape: Any, value: Any) -> list[str]:
    """The constraint texts ``value`` breaks, in AWS's order: length, pattern, enum, range."""
    kind, meta = shape.type_name, shape.metadata
    problems: list[str] = []
    if kind == "string" and isinstance(value, str):
        problems += _length_problems(meta, utf16_length(value))
        pattern = meta.get("pattern")
        if pattern is not None:
            compiled = _checked_pattern(pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                problems.append(f"Member must satisfy regular expression pattern: {pattern}")
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            problems.append(f"Member must satisfy enum value set: [{', '.join(enum)}]")
    elif kind == "blob":
        size = _blob_size(value)
        if size is not None:
            problems += _length_problems(meta, size)
    elif kind in _NUMBER_TYPES and isinstance(value, (int, float)) and not isinstance(
            value, bool):
        if "max" in meta and value > meta["max"]:
            problems.append(f"Member must have value less than or equal to {meta['max']}")
        if "min" in meta and value < meta["min"]:
            problems.append(f"Member must have value greater than or equal to {meta['min']}")
    return problems


def _length_problems(meta: Mapping[str, Any], size: int) -> list[str]:
    problems = []
    if "max" in meta and size > meta["max"]:
        problems.append(f"Member must have length less than or equal to {meta['max']}")
    if "min" in meta and size < meta["min"]:
        problems.append(f"Member must have length greater than or equal to {meta['min']}")
    return problems


def _constraints(shape: Any) -> list[str]:
    """Every constraint of a scalar shape, worded as in AWS's map messages."""
    meta, kind = shape.metadata, shape.type_name
    word = "value" if kind in _NUMBER_TYPES else "length"
    texts = []
    if "max" in meta:
        texts.append(f"Member must have {word} less than or equal to {meta['max']}")
    if "min" in meta:
        texts.append(f"Member must have {word} greater than or equal to {meta['min']}")
    if "pattern" in meta:
        texts.append(f"Member must satisfy regular expression pattern: {meta['pattern']}")
    enum = getattr(shape, "enum", None)
    if enum:
        texts.append(f"Member must satisfy enum value set: [{', '.join(enum)}]")
    return texts


def _blob_size(value: Any) -> int | None:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, str):  # JSON protocols send blobs base64-encoded
        try:
            return len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            return None
    return None


def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _java_text(value: Any) -> str:
    """A value as the service's Java front end prints it in its messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_java_text(k)}={_java_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_java_text(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


# --- the models and their patterns -------------------------------------------------------


_MODEL_LOCK = threading.Lock()  # requests are checked from many threads at once


@functools.cache
def _service_model(service: str) -> Any:
    import botocore.session

    with _MODEL_LOCK:
        return botocore.session.get_session().get_service_model(service)


def model_patterns(service: str) -> dict[str, list[str]]:
    """Every ``pattern`` of the service's model -> the names of the shapes that carry it."""
    model = _service_model(service)
    patterns: dict[str, list[str]] = {}
    for name in model.shape_names:
        pattern = model.shape_for(name).metadata.get("pattern")
        if pattern is not None:
            patterns.setdefault(pattern, []).append(name)
    return patterns


@functools.cache
def compile_pattern(pattern: str) -> Any:
    """A compiled matcher (``re`` or ``regex``) for a Java pattern of a service model;
    :class:`UncompilablePattern` when neither compiles it, even translated."""
    try:
        return re.compile(pattern, re.ASCII)
    except re.error:
        pass
    translated = _translate(pattern)
    unicode_properties = "\\p{" in translated or "\\P{" in translated
    if not unicode_properties:
        try:
            return re.compile(translated, re.ASCII)
        except re.error:
            pass
    try:
        import regex
    except ImportError as exc:  # the `emulate` extra installs it
        raise UncompilablePattern(
            f"{pattern!r} needs the 'regex' package: pip install 'sm-pytest[emulate]'"
        ) from exc
    try:
        # \p{...} needs Unicode mode; ASCII mode keeps \w \d \s as Java's, where possible.
        return regex.compile(translated, 0 if unicode_properties else regex.ASCII)
    except regex.error as exc:
        raise UncompilablePattern(f"{pattern!r}: {exc}") from exc


@functools.cache
def _checked_pattern(pattern: str) -> Any:
    """The compiled pattern, or None (logged once) for one of UNCHECKED_PATTERNS."""
    try:
        return compile_pattern(pattern)
    except UncompilablePattern as exc:
        logger.warning("service model pattern not checked (it does not compile): %s", exc)
        return None


def _translate(pattern: str) -> str:
    """Java-only syntax in Python's: surrogate pairs as code points, POSIX classes as ASCII
    sets (bare inside a character class, bracketed outside one)."""
    def code_point(match: re.Match[str]) -> str:
        high, low = int(match.group(1), 16), int(match.group(2), 16)
        return "\\U%08x" % (0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))

    text = _SURROGATE_PAIR.sub(code_point, pattern)
    out, depth, index = [], 0, 0
    while index < len(text):
        match = _POSIX_CLASS.match(text, index)
        if match:
            chars = _JAVA_POSIX[match.group(1)]
            out.append(chars if depth else f"[{chars}]")
            index = match.end()
            continue
        char = text[index]
        if char == "\\":
            out.append(text[index:index + 2])
            index += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        out.append(char)
        index += 1
    return "".join(out)


# --- S3's bucket names -------------------------------------------------------------------

_BUCKET_CHARS = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(name: str) -> str | None:
    """Why S3 refuses ``name`` for a new general purpose bucket (its documented naming
    rules), or None. S3 itself only answers InvalidBucketName, "The specified bucket is not
    valid."."""
    if not 3 <= len(name) <= 63:
        return "a bucket name must be 3 to 63 characters long"
    if not _BUCKET_CHARS.fullmatch(name):
        return ("a bucket name may hold only lower-case letters, digits, dots and hyphens, "
                "and must begin and end with a letter or digit")
    if ".." in name:
        return "a bucket name must not hold two adjacent dots"
    if _is_ip_address(name):
        return "a bucket name must not look like an IP address"
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return "a bucket name must not use a prefix or suffix that S3 reserves"
    return None


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True
