"""The JSON Schemas of the state's kinds, and their errors as problems.

The files in `schemas/` are the only definition of the objects; this module
finds them (next to the package in a source tree, inside it when installed),
builds one validator per kind, fills defaults and words errors.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable

from .yamlio import Document, JsonPath

KINDS = (
    "instance",
    "tenant",
    "user",
    "integration",
    "node",
    "service",
    "process",
    "service-type",
)

# The attribute that holds the id of each kind.
ID_FIELD = {kind: "id" for kind in KINDS} | {"user": "email"}

# Fields whose values are secrets: messages about them never quote them.
SECRET_FIELDS = frozenset({"password", "password-hash", "integration-params"})

_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def _schema_dir() -> Path | resources.abc.Traversable:
    source_tree = Path(__file__).resolve().parent.parent / "schemas"
    if (source_tree / "node.json").is_file():
        return source_tree
    return resources.files("reconciler.schemas")


@cache
def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind, as a dictionary."""
    text = (_schema_dir() / f"{kind}.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(schema(kind), registry=Registry())


def id_pattern(kind: str) -> str:
    return schema(kind)["properties"][ID_FIELD[kind]]["pattern"]


def with_defaults(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """A copy of `data` with the schema's top-level defaults filled in."""
    result = dict(data)
    for name, prop in schema(kind).get("properties", {}).items():
        if name not in result and "default" in prop:
            result[name] = copy.deepcopy(prop["default"])
    return result


def json_path(path: JsonPath) -> str:
    """`("a", 0, "b")` as `$.a[0].b`."""
    text = "$"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def describe(value: Any, secret: bool = False) -> str:
    """`a string "abc"`: a value's JSON type and, unless secret, a short view."""
    if value is None:
        return "null"
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    if secret or isinstance(value, dict | list):
        return kind
    return f"{kind} {_short(value)}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _hint(error: ValidationError) -> str:
    """The schema's own description of a field, as the fix to a refusal."""
    description = error.parent.schema.get("description") if error.parent else None
    return description or error.schema.get("description") or "see its schema"


def is_secret(path: JsonPath) -> bool:
    """Values at these paths are never shown in a message."""
    return any(part in SECRET_FIELDS for part in path if isinstance(part, str))


def errors(
    schema_: dict[str, Any] | str, data: Any, doc: Document, base: JsonPath = ()
) -> Iterator[tuple[JsonPath, str]]:
    """Every schema error of `data` as (path, message), messages made plain.

    `schema_` is a kind's name or a schema of its own (a service type's
    options); `base` prefixes paths when `data` sits inside a larger file.
    """
    if isinstance(schema_, str):
        checker = validator(schema_)
    else:
        # An empty registry: a $ref is never fetched from anywhere.
        checker = Draft202012Validator(schema_, registry=Registry())
    try:
        found = list(checker.iter_errors(data))
    except Unresolvable as error:
        yield base, f"the schema's $ref cannot be resolved here: {error}"
        return
    except RecursionError:
        yield base, "the schema refers to itself without end"
        return
    except re.error as error:
        yield base, f"the schema holds an invalid regular expression: {error}"
        return
    for error in found:
        yield from _explain(error, doc, base)


def _explain(
    error: ValidationError, doc: Document, base: JsonPath
) -> Iterator[tuple[JsonPath, str]]:
    path = base + tuple(error.absolute_path)
    value = error.instance
    secret = is_secret(path)
    shown = "the value" if secret else _short(value)
    if error.validator == "additionalProperties" and isinstance(value, dict):
        known = sorted(error.schema.get("properties", {}))
        for key in value:
            if key not in known:
                hint = f"; known fields: {', '.join(known)}" if known else ""
                yield path + (key,), f"unknown field {key!r}{hint}"
        return
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        yield path, f"missing required field {missing!r}"
        return
    if error.validator == "type":
        expected = error.validator_value
        names = expected if isinstance(expected, list) else [expected]
        message = f"expected {' or '.join(names)}, got {describe(value, secret)}"
        text = doc.plain_text.get(path)
        if "string" in names and text is not None and not secret:
            message += f"; quote this value: '{text}'"
        yield path, message
        return
    if error.validator in ("anyOf", "oneOf") and secret:
        yield path, "the value matches none of the allowed forms"
        return
    if error.validator in ("anyOf", "oneOf") and error.context:
        wanted = [s.validator_value for s in error.context if s.validator == "required"]
        if len(wanted) == len(error.context):
            # Each alternative only asks for fields: say which to give.
            names = sorted({name for fields in wanted for name in fields})
            listed = ", ".join(repr(name) for name in names)
            yield path, f"needs at least one of the fields {listed}"
            return
        # Name the alternatives' own complaints rather than the whole value.
        reasons = sorted(
            {message for sub in error.context for _, message in _explain(sub, doc, ())}
        )
        yield path, "matches none of the allowed forms: " + "; ".join(reasons)
        return
    if error.validator == "uniqueItems" and isinstance(value, list):
        for index, item in enumerate(value):
            if item in value[:index]:
                shown = "a value" if secret else _short(item)
                yield path, f"{shown} is listed twice"
                return
    if error.validator == "pattern":
        pattern = str(error.validator_value).removesuffix("(?!\\n)")
        field = next((p for p in reversed(path) if isinstance(p, str)), "value")
        yield path, f"{shown} is not a valid {field}: it must match {pattern}"
        return
    if error.validator == "not":
        field = next((p for p in reversed(path) if isinstance(p, str)), "value")
        yield path, f"{shown} is not a valid {field}; {_hint(error)}"
        return
    bound = _bound(error, "the value" if secret else shown)
    if bound is not None:
        yield path, bound
        return
    if secret:
        yield (
            path,
            f"the value does not satisfy the schema's {error.validator!r}",
        )
        return
    yield path, error.message


def _bound(error: ValidationError, shown: str) -> str | None:
    """A plain message for a number or length out of its bounds."""
    limit = error.validator_value
    if error.validator == "minLength":
        if limit == 1:
            return f"{shown} must not be empty"
        return f"{shown} is too short: it must be at least {limit} characters"
    if error.validator == "maxLength":
        return f"{shown} is too long: it must be at most {limit} characters"
    numbers = {
        "minimum": ("small", "at least"),
        "exclusiveMinimum": ("small", "greater than"),
        "maximum": ("large", "at most"),
        "exclusiveMaximum": ("large", "less than"),
    }
    if error.validator in numbers:
        size, relation = numbers[str(error.validator)]
        return f"{shown} is too {size}: it must be {relation} {limit}"
    return None
