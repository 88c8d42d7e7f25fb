"""Strict, safe reading of one YAML state file.

PyYAML composes the document (never constructs arbitrary objects); this
module then turns the node graph into plain data by its own rules:

- only `true`/`false` are booleans, only plain decimal numbers are numbers;
- a plain scalar that YAML 1.1 would silently turn into something else
  (`no`, `on`, `0755`, `1:20`, `2024-01-01`, `.inf`) is an error that asks to
  quote the value, whatever the field;
- explicit tags other than `!!str` are refused, so are merge keys;
- a key given twice is an error naming both lines;
- aliases and the size of the expanded document are bounded.

Every value keeps the line it came from, so that errors can point at it.
"""

from __future__ import annotations

import math
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1024 * 1024
MAX_ALIASES = 100
MAX_NODES = 100_000
MAX_NUMBER_DIGITS = 100

JsonPath = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"
_PLAIN_TAG = "tag:cxengage:plain"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_YAML_TYPES = {"binary", "bool", "float", "int", "map", "null", "omap", "pairs"}
_YAML_TYPES |= {"seq", "set", "timestamp", "value", "yaml"}

_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}


class YamlProblem(Exception):
    """A file that cannot be read as state, with the line it went wrong on."""

    def __init__(self, line: int, message: str, path: JsonPath = ()):
        super().__init__(message)
        self.line = line
        self.message = message
        self.path = path


@dataclass
class Document:
    """The data of one file and the line of every value and key in it."""

    data: Any
    lines: dict[JsonPath, int] = field(default_factory=dict)
    # The source text of plain scalars that became numbers, for messages
    # such as "quote this value" when a string was meant.
    plain_text: dict[JsonPath, str] = field(default_factory=dict)

    def line_of(self, path: JsonPath) -> int:
        """The line of the value at `path`, or of its nearest ancestor."""
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)


# libyaml's parser when PyYAML was built with it: several times faster.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type, misc]
    """A composer that leaves plain scalars unresolved, for our own rules."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN_TAG
        return super().resolve(kind, value, implicit)


def looks_like_yaml11(text: str) -> bool:
    """True when YAML 1.1 would read this plain scalar as a non-string."""
    resolved = yaml.SafeLoader.resolve(
        yaml.SafeLoader, yaml.ScalarNode, text, (True, False)
    )
    return resolved != _STR_TAG


class _Converter:
    def __init__(self) -> None:
        self.doc = Document(data=None)
        self.count = 0
        # An alias is the same node met again; counting those bounds them.
        self.seen: set[int] = set()
        self.aliases = 0

    def convert(self, node: yaml.Node, path: JsonPath) -> Any:
        self.count += 1
        if id(node) in self.seen:
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise YamlProblem(
                    node.start_mark.line + 1,
                    f"more than {MAX_ALIASES} aliases; write the values out",
                    path,
                )
        else:
            self.seen.add(id(node))
        if self.count > MAX_NODES:
            raise YamlProblem(
                node.start_mark.line + 1,
                f"the document expands to more than {MAX_NODES} values",
            )
        self.doc.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise self._tag_error(node, path)
            return [
                self.convert(item, path + (i,)) for i, item in enumerate(node.value)
            ]
        return self._scalar(node, path)

    def _tag_error(self, node: yaml.Node, path: JsonPath) -> YamlProblem:
        # Only YAML's own types are named: an unquoted value that starts with
        # "!" (a password, say) is read as a tag, and must not be repeated.
        name = node.tag.removeprefix("tag:yaml.org,2002:")
        shown = f"the tag !!{name}" if name in _YAML_TYPES else "a tag"
        return YamlProblem(
            node.start_mark.line + 1,
            f"{shown} is not allowed; state files hold plain data (quote a value "
            "that starts with '!')",
            path,
        )

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            raise self._tag_error(node, path)
        result: dict[str, Any] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge" or (
                key_node.tag == _PLAIN_TAG and key_node.value == "<<"
            ):
                raise YamlProblem(line, "merge keys (<<) are not supported", path)
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in (
                _PLAIN_TAG,
                _STR_TAG,
            ):
                raise YamlProblem(line, "keys must be plain strings", path)
            key = key_node.value
            if key in key_lines:
                raise YamlProblem(
                    line,
                    f"duplicate key {key!r} (first on line {key_lines[key]})",
                    path,
                )
            key_lines[key] = line
            self.doc.lines[path + (key,)] = line
            result[key] = self.convert(value_node, path + (key,))
        return result

    def _scalar(self, node: yaml.ScalarNode, path: JsonPath) -> Any:
        if node.tag == _STR_TAG:
            return node.value
        if node.tag != _PLAIN_TAG:
            raise self._tag_error(node, path)
        text = node.value
        if text in _NULL:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if _INT.fullmatch(text) or _FLOAT.fullmatch(text):
            self.doc.plain_text[path] = text
            number = float(text) if not _INT.fullmatch(text) else None
            if len(text) > MAX_NUMBER_DIGITS or (
                number is not None and not math.isfinite(number)
            ):
                raise YamlProblem(
                    node.start_mark.line + 1,
                    "the number is too large; quote it if it is meant as text",
                    path,
                )
            return int(text) if number is None else number
        if looks_like_yaml11(text):
            raise YamlProblem(
                node.start_mark.line + 1,
                "this value is ambiguous in YAML (it may be read as a boolean, "
                "number or date); quote this value if it is text, or write "
                "true or false for a boolean",
                path,
            )
        return text


def parse(text: str) -> Document:
    """Parse one YAML document strictly; raise YamlProblem on any fault."""
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlProblem(line, f"invalid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        # The reader's errors (control characters) carry a position only.
        line = text[: getattr(error, "position", 0)].count("\n") + 1
        reason = getattr(error, "reason", None) or str(error).splitlines()[0]
        raise YamlProblem(line, f"invalid YAML: {reason}") from None
    except RecursionError:
        raise YamlProblem(1, "the document is nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    converter = _Converter()
    if node is not None:
        try:
            converter.doc.data = converter.convert(node, ())
        except RecursionError:
            raise YamlProblem(
                1, "the document is nested too deeply, or an alias contains itself"
            ) from None
    return converter.doc


def read(path: Path) -> Document:
    """Read and parse one state file, refusing oversized or non-UTF-8 files."""
    try:
        # Never follow a link nor open a FIFO or device: a state file is a
        # regular file, read with a cap whatever its size claims to be.
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a file"
            raise YamlProblem(1, f"{what}; state files must be regular files")
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise YamlProblem(1, f"cannot read the file: {error.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise YamlProblem(
            1, f"the file is over {MAX_FILE_BYTES} bytes, the limit for a state file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise YamlProblem(line, "the file is not valid UTF-8") from None
    return parse(text)
