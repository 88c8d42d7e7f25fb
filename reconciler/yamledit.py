"""Writing state files so that a person's comments and layout survive.

An edit loads the file with ruamel.yaml's round-trip loader, which keeps
comments, key order and quoting, changes only the values that differ from
the wish, and dumps it again. The result is always read back with the
strict reader of `yamlio`: text that would not read back as exactly the
data asked for is never written.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString
from ruamel.yaml.tokens import CommentToken
from ruamel.yaml.util import load_yaml_guess_indent

from .errors import ReconcileError
from .yamlio import YamlProblem, looks_like_yaml11, parse

# Strings written without quotes: ids and words that read back as text.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*(?!\n)")

# Where ruamel keeps the comment that follows an item on later lines.
_SEQ_SLOT, _MAP_SLOT = 0, 2


class EditError(ReconcileError):
    """An edit could not be written without changing what the file means."""


class Unstorable(EditError):
    """The data holds a value that would not read back from YAML as sent."""


def _yaml(sequence: int = 4, offset: int = 2) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=sequence, offset=offset)
    return yaml


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and not looks_like_yaml11(value):
            return value
        return DoubleQuotedScalarString(value)
    if isinstance(value, dict):
        return CommentedMap((key, _scalar(item)) for key, item in value.items())
    if isinstance(value, list):
        return CommentedSeq(_scalar(item) for item in value)
    return value


def _plain(value: Any) -> Any:
    """A round-trip value as plain dicts, lists and scalars, for comparing."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def _split_trailing(entry: list | None, slot: int) -> CommentToken | None:
    """Detach the full-line comments after an item, keeping its own end comment."""
    if not entry or entry[slot] is None:
        return None
    token = entry[slot]
    own, _, rest = token.value.partition("\n")
    if not rest:
        return None
    moved = copy.copy(token)
    moved.value = "\n" + rest
    if own:
        token.value = own + "\n"
    else:
        entry[slot] = None
    return moved


def _attach_trailing(items: dict, key: Any, slot: int, moved: CommentToken) -> None:
    entry = items.setdefault(key, [None, None, None, None])
    if entry[slot] is None:
        entry[slot] = moved
    else:
        entry[slot].value += moved.value[1:]


def _edit_seq(seq: CommentedSeq, wish: list) -> CommentedSeq | None:
    """Delete and append items in place; None when a rewrite is simpler."""
    items = seq.ca.items
    for index in reversed(range(len(seq))):
        if _plain(seq[index]) in wish:
            continue
        # Comment lines after a deleted item stay, under the item before it.
        trailing = _split_trailing(items.get(index), _SEQ_SLOT)
        del seq[index]
        if trailing and index > 0:
            _attach_trailing(items, index - 1, _SEQ_SLOT, trailing)
    kept = [_plain(item) for item in seq]
    if kept != wish[: len(kept)]:
        return None
    for value in wish[len(kept) :]:
        trailing = _split_trailing(items.get(len(seq) - 1), _SEQ_SLOT) if seq else None
        seq.append(_scalar(value))
        if trailing:
            _attach_trailing(items, len(seq) - 1, _SEQ_SLOT, trailing)
    return seq


def _split_trailing_deep(node: CommentedMap, key: Any) -> CommentToken | None:
    """The comment lines after a field's value, wherever ruamel keeps them.

    After a nested value they sit with its last item, however deep.
    """
    found: list[CommentToken] = []
    container: CommentedMap | CommentedSeq = node
    slot = _MAP_SLOT
    while True:
        token = _split_trailing(container.ca.items.get(key), slot)
        if token is not None:
            found.append(token)
        value = container[key]
        if isinstance(value, CommentedMap) and value:
            container, key, slot = value, list(value)[-1], _MAP_SLOT
        elif isinstance(value, CommentedSeq) and value:
            container, key, slot = value, len(value) - 1, _SEQ_SLOT
        else:
            break
    if not found:
        return None
    # The deepest holds the lines nearest the value.
    merged = found.pop()
    for token in reversed(found):
        merged.value += token.value[1:]
    return merged


def _attach_trailing_deep(node: CommentedMap, key: Any, moved: CommentToken) -> None:
    """Put comment lines after a field's value, below its last item if nested.

    On a field whose value is a block map or list, ruamel writes the field's
    own slot between `key:` and the items: the lines would move up.
    """
    container: CommentedMap | CommentedSeq = node
    slot = _MAP_SLOT
    while True:
        value = container[key]
        if isinstance(value, CommentedMap) and value and not value.fa.flow_style():
            container, key, slot = value, list(value)[-1], _MAP_SLOT
        elif isinstance(value, CommentedSeq) and value and not value.fa.flow_style():
            container, key, slot = value, len(value) - 1, _SEQ_SLOT
        else:
            break
    _attach_trailing(container.ca.items, key, slot, moved)


def _edit_map(node: CommentedMap, wish: dict, order: Sequence[str]) -> None:
    for key in [key for key in node if key not in wish]:
        keys = list(node)
        at = keys.index(key)
        trailing = _split_trailing_deep(node, key)
        del node[key]
        if trailing and at > 0:
            _attach_trailing_deep(node, keys[at - 1], trailing)
    for key, value in wish.items():
        if key in node:
            _edit_value(node, key, value)
            continue
        keys = list(node)
        position = len(keys)
        if key in order:
            rank = order.index(key)
            later = [
                i for i, k in enumerate(keys) if k in order and order.index(k) > rank
            ]
            position = later[0] if later else len(keys)
        if position == len(keys) and keys:
            trailing = _split_trailing_deep(node, keys[-1])
            node.insert(position, key, _scalar(value))
            if trailing:
                _attach_trailing_deep(node, key, trailing)
        else:
            node.insert(position, key, _scalar(value))


def _edit_value(node: CommentedMap, key: str, value: Any) -> None:
    old = node[key]
    if _plain(old) == value and type(_plain(old)) is type(value):
        return
    if isinstance(old, CommentedMap) and isinstance(value, dict):
        _edit_map(old, value, list(value))
    elif isinstance(old, CommentedSeq) and isinstance(value, list):
        if _edit_seq(old, value) is None:
            node[key] = _scalar(value)
    elif isinstance(old, str) and isinstance(value, str):
        node[key] = _like(old, value)
    else:
        node[key] = _scalar(value)


def _like(old: str, value: str) -> Any:
    """`value` in the style `old` was written in: quoted alike, or plain."""
    if isinstance(old, ScalarString):
        return type(old)(value)
    if _reads_plain(value):
        return value
    return _scalar(value)


def _reads_plain(value: str) -> bool:
    """Whether `value` written without quotes reads back as the same text."""
    if _PLAIN.fullmatch(value) and not looks_like_yaml11(value):
        return True
    if not value or value != value.strip() or "\n" in value:
        return False
    try:
        return parse(f"value: {value}\n").data == {"value": value}
    except (YamlProblem, UnicodeError):
        return False


def render_new(data: dict[str, Any]) -> str:
    """The text of a new file holding `data`, in the given key order."""
    out = io.StringIO()
    _yaml().dump(_scalar(data), out)
    return _checked(out.getvalue(), data)


def edited(text: str, data: dict[str, Any], order: Sequence[str]) -> str:
    """`text` changed to hold `data`, touching only the lines that must change.

    New keys go where `order` (the schema's order of fields) puts them.
    """
    try:
        _, indent, block_seq_indent = load_yaml_guess_indent(text)
        if indent is None:  # no list yet: new ones as render_new writes them
            yaml = _yaml()
        else:
            yaml = _yaml(sequence=max(indent, 2), offset=block_seq_indent or 0)
        doc = yaml.load(text)
    except YAMLError as error:
        raise EditError(f"the file cannot be edited: {_located(error)}") from None
    if not isinstance(doc, CommentedMap):
        raise EditError("the file does not hold a mapping of fields")
    before = {key: _plain(value) for key, value in doc.items()}
    lines = {key: doc.lc.key(key)[0] for key in doc}
    _edit_map(doc, copy.deepcopy(data), order)
    out = io.StringIO()
    yaml.dump(doc, out)
    result = _checked(out.getvalue(), data)
    unchanged = {
        key
        for key, value in data.items()
        if key in before and _same(before[key], value)
    }
    if unchanged:
        kept = _with_own_lines(text, lines, result, yaml, unchanged)
        with contextlib.suppress(Unstorable):
            result = _checked(kept, data)
    # ruamel writes \n; a file a person keeps with \r\n keeps them.
    return re.sub(r"(?<!\r)\n", "\r\n", result) if "\r\n" in text else result


def _same(old: Any, new: Any) -> bool:
    """Equal as data, with the same types: 1 and 1.0, or 1 and true, differ."""
    if type(old) is not type(new):
        return False
    if isinstance(old, dict):
        return old.keys() == new.keys() and all(_same(old[k], new[k]) for k in old)
    if isinstance(old, list):
        return len(old) == len(new) and all(map(_same, old, new))
    return old == new


def _with_own_lines(
    text: str, lines: dict[Any, int], result: str, yaml: YAML, unchanged: set[str]
) -> str:
    """`result` with the lines `text` had for each field in `unchanged`.

    ruamel writes every value again in its own way (a flow list's spacing,
    say); a field the edit did not touch is put back as the person wrote it.
    Comment lines after a value come from `result`, where the edit may have
    moved them.
    """
    try:
        new_doc = yaml.load(result)
    except YAMLError:
        return result
    old_parts = _fields(text.splitlines(keepends=True), lines)
    new_lines = result.splitlines(keepends=True)
    header, new_parts = _split_header(new_lines, new_doc)
    pieces = [header]
    for key, (own, after) in new_parts.items():
        if key in unchanged and key in old_parts:
            own = old_parts[key][0]
            own += "" if own.endswith("\n") else "\n"
        pieces.append(own + after)
    return "".join(pieces)


def _split_header(
    lines: list[str], doc: CommentedMap
) -> tuple[str, dict[Any, tuple[str, str]]]:
    starts = {key: doc.lc.key(key)[0] for key in doc}
    first = min(starts.values(), default=len(lines))
    return "".join(lines[:first]), _fields(lines, starts)


def _fields(lines: list[str], starts: dict[Any, int]) -> dict[Any, tuple[str, str]]:
    """Each top-level field's own lines, and the comment lines after them."""
    order = sorted(starts, key=starts.__getitem__)
    found = {}
    for i, key in enumerate(order):
        end = starts[order[i + 1]] if i + 1 < len(order) else len(lines)
        block = lines[starts[key] : end]
        cut = len(block)
        while cut > 1 and (not block[cut - 1].strip() or _is_comment(block[cut - 1])):
            cut -= 1
        found[key] = ("".join(block[:cut]), "".join(block[cut:]))
    return found


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _located(error: YAMLError) -> str:
    """Where and why ruamel refused a file, never quoting the file's text.

    ruamel's own message shows the offending lines, which may hold secrets.
    """
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or type(error).__name__
    # Keep a quoted single character ('\t'), drop any longer quoted text.
    problem = re.sub(r"'[^']{3,}'", "'...'", str(problem))
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"{where}{problem}; rewrite that line by hand"


def _checked(text: str, data: dict[str, Any]) -> str:
    try:
        back = parse(text).data
    except YamlProblem as error:
        raise Unstorable(
            f"the edited file would not read back (line {error.line}: {error.message})"
        ) from None
    if back != data:
        raise Unstorable("the edited file would not read back as the data written")
    return text
