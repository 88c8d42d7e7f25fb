"""The `{name}` templates of service types: argv and the files a type reads.

Only a fixed set of names exists, plus `{options.NAME}`; `{{` and `}}` are
literal braces. Nothing here evaluates attribute or index access, so a
template can reach no value it was not given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

COMMAND_NAMES = frozenset(
    {
        "python",
        "root",
        "etc",
        "config",
        "service",
        "process",
        "instance",
        "node",
        "address",
    }
)
READS_NAMES = frozenset({"service"})
OPTION_PREFIX = "options."

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class TemplateError(ValueError):
    """A template names something that does not exist, or is malformed."""


def names(template: str) -> list[str]:
    """The names a template uses, in order; raise TemplateError if malformed."""
    found = []
    for match in _TOKEN.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None:
            raise TemplateError(
                f"unbalanced {token!r} in {template!r}; write {token * 2} for a "
                "literal brace"
            )
        found.append(match.group(1))
    return found


def unknown_names(template: str, allowed: frozenset[str]) -> list[str]:
    """Names in `template` that are neither allowed nor `options.NAME`."""
    return [
        name
        for name in names(template)
        if name not in allowed
        and not (name.startswith(OPTION_PREFIX) and len(name) > len(OPTION_PREFIX))
    ]


def expand(template: str, values: Mapping[str, str]) -> str:
    """Fill a template; every name must be in `values`."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        if name is None or name not in values:
            raise TemplateError(f"no value for {token!r} in {template!r}")
        return values[name]

    return _TOKEN.sub(replace, template)


def option_text(value: object) -> str:
    """How an option value appears on a command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(
        "only strings, numbers and booleans can be put on a command line"
    )
