"""Read YAML safely and remember where every value came from.

Experiment files are written by hand, so errors must point at a line. PyYAML's composer
gives a node graph with marks; we build plain Python values from it ourselves so that we can
(a) keep a line for every key path, (b) refuse anything but plain YAML tags, (c) bound the
work an alias bomb or a huge file can cause, and (d) reject duplicate keys, which YAML would
silently let the last one win.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1024 * 1024
# Far more than any experiment file needs, far less than an alias bomb expands to.
MAX_VALUES = 100_000

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:merge",
    "tag:yaml.org,2002:timestamp",
}

KeyPath = tuple[Any, ...]


class YamlError(Exception):
    """A problem in a YAML file, already phrased for the user, with its line."""

    def __init__(self, path: Path | str, line: int | None, message: str):
        self.path = Path(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line else str(self.path)
        super().__init__(f"{where}: {message}")


@dataclass
class Located:
    """A YAML document as plain Python values, plus the 1-based line of each key path."""

    path: Path
    value: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, key_path: KeyPath) -> int | None:
        # Fall back to the nearest enclosing value that has a line.
        key_path = tuple(key_path)
        while key_path not in self.lines and key_path:
            key_path = key_path[:-1]
        return self.lines.get(key_path)

    def error(self, key_path: KeyPath, message: str) -> YamlError:
        return YamlError(self.path, self.line_of(key_path), message)


class _Builder:
    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self.lines: dict[KeyPath, int] = {}
        self.constructor = yaml.SafeLoader("")
        self.checked: set[int] = set()

    def fail(self, node: yaml.Node, message: str) -> YamlError:
        return YamlError(self.path, node.start_mark.line + 1, message)

    def build(self, node: yaml.Node, key_path: KeyPath) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise self.fail(
                node,
                f"the document expands to more than {MAX_VALUES} values (too many aliases?);"
                " write the values out or split the file",
            )
        self.lines.setdefault(key_path, node.start_mark.line + 1)
        if node.tag not in _PLAIN_TAGS:
            raise self.fail(
                node,
                f"tag {node.tag!r} is not allowed: experiment files hold plain YAML values"
                " only (strings, numbers, booleans, lists, mappings)",
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, key_path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*key_path, i)) for i, item in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.fail(node, f"cannot read this value: {exc}") from None

    def _mapping(self, node: yaml.MappingNode, key_path: KeyPath) -> dict:
        if id(node) not in self.checked:
            # Check before merge keys are flattened into the node, and only once, because an
            # aliased node is visited again after flattening.
            self.checked.add(id(node))
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(key_node, "mapping keys must be plain strings or numbers")
                if key_node.value in seen:
                    raise self.fail(key_node, f"duplicate key {key_node.value!r}: keep one of them")
                seen.add(key_node.value)
            try:
                self.constructor.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
            except yaml.YAMLError as exc:
                raise self.fail(node, f"cannot merge this mapping: {exc}") from None
        result: dict = {}
        for key_node, value_node in node.value:
            key = self.build(key_node, (*key_path, "<key>"))
            child_path = (*key_path, key)
            self.lines[child_path] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, child_path)
        return result


def load(path: Path | str) -> Located:
    """Load one YAML document from `path`, bounded and with line marks.

    Each version of a file is parsed once per process: a base config serves every experiment
    that names it, and --sm settings find line numbers without parsing again. The Located
    returned is shared, so callers read it and never change it.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise YamlError(path, None, f"cannot read the file: {exc.strerror}") from None
    if stat.st_size > MAX_FILE_BYTES:
        raise YamlError(
            path,
            None,
            f"the file is {stat.st_size} bytes; experiment and config files are limited to"
            f" {MAX_FILE_BYTES} bytes",
        )
    return _load_version(path, stat.st_ino, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _load_version(path: Path, inode: int, mtime_ns: int, size: int) -> Located:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise YamlError(path, None, "the file is not UTF-8 text") from None
    return loads(text, path)


def loads(text: str, path: Path | str = "<string>") -> Located:
    path = Path(path)
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise YamlError(path, line, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(path, None, f"YAML syntax error: {exc}") from None
    except RecursionError:
        raise YamlError(path, None, "the YAML is nested too deeply") from None
    if len(nodes) > 1:
        raise YamlError(
            path, nodes[1].start_mark.line + 1, "the file holds several YAML documents; keep one"
        )
    if not nodes:
        return Located(path, None)
    builder = _Builder(path)
    try:
        value = builder.build(nodes[0], ())
    except RecursionError:
        raise YamlError(path, None, "the YAML is nested too deeply") from None
    return Located(path, value, builder.lines)

