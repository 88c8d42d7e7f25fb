"""Loading the state repository: files, kinds, schemas, then references.

The layout is fixed (see "The state repository" in README.md): one object
per file, the file name is the object's id, nodes and services live under
their instance. Every problem found is collected; `load` raises one
StateError carrying all of them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import schemas
from .errors import Problem, ReconcileError, StateError
from .references import check_references
from .yamlio import Document, YamlProblem, read

log = logging.getLogger(__name__)

# Top-level folders and the kind of object each holds.
FOLDERS = {
    "instances": "instance",
    "tenants": "tenant",
    "users": "user",
    "integrations": "integration",
    "processes": "process",
    "service-types": "service-type",
}
# Folders under instances/<id>/.
NESTED_FOLDERS = {"nodes": "node", "services": "service"}

SUFFIX = ".yaml"


class StateNotFound(ReconcileError):
    """The path given as the state repository is not a readable folder."""


@dataclass
class StateObject:
    """One object of the state, as read from its file, defaults filled in."""

    kind: str
    id: str
    data: dict[str, Any]
    file: str
    doc: Document
    instance: str | None = None

    @property
    def key(self) -> str:
        """The object's address: its id, or `IN1/ND1` for nested kinds."""
        return f"{self.instance}/{self.id}" if self.instance else self.id

    def line(self, *path: str | int) -> int:
        return self.doc.line_of(tuple(path))


@dataclass
class State:
    """The whole desired platform, keyed by kind then by object key."""

    root: Path
    objects: dict[str, dict[str, StateObject]] = field(
        default_factory=lambda: {kind: {} for kind in schemas.KINDS}
    )

    def of(self, kind: str) -> dict[str, StateObject]:
        return self.objects[kind]

    # Objects whose file exists but is invalid: references to them are not
    # reported again as missing.
    broken: set[tuple[str, str]] = field(default_factory=set)

    def get(self, kind: str, key: str) -> StateObject | None:
        return self.objects[kind].get(key)

    def exists(self, kind: str, key: str) -> bool:
        return key in self.objects[kind] or (kind, key) in self.broken

    def add(self, obj: StateObject) -> None:
        self.objects[obj.kind][obj.key] = obj


class _Reader:
    def __init__(self, root: Path):
        self.root = root
        self.state = State(root=root)
        self.problems: list[Problem] = []

    def problem(self, file: str, line: int, path: str, message: str) -> None:
        self.problems.append(Problem(file, line, path, message))

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def linked(self, entry: Path) -> bool:
        """Report a symbolic link in the state: links are never followed."""
        if not entry.is_symlink():
            return False
        self.problem(
            self.rel(entry),
            1,
            "$",
            "a symbolic link; the state is read from regular files and folders only",
        )
        return True

    def walk(self) -> None:
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.name in FOLDERS and self.linked(entry):
                continue
            if not entry.is_dir():
                continue  # README files and the like beside the state
            kind = FOLDERS.get(entry.name)
            if kind is None:
                known = ", ".join(sorted(FOLDERS))
                self.problem(
                    f"{entry.name}/",
                    1,
                    "$",
                    f"unknown folder {entry.name!r}; state folders are: {known}",
                )
                continue
            self.read_folder(entry, kind, instance=None)

    def read_folder(self, folder: Path, kind: str, instance: str | None) -> None:
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                if entry.suffix == SUFFIX:
                    self.problem(
                        self.rel(entry),
                        1,
                        "$",
                        "hidden files are not read; rename it without the leading dot",
                    )
                continue
            if self.linked(entry):
                continue
            if kind == "instance" and entry.is_dir():
                self.read_instance_folder(entry)
            elif entry.suffix == ".md" and entry.is_file():
                continue  # notes for people, beside the objects
            elif entry.is_dir() or entry.suffix != SUFFIX:
                what = "folder" if entry.is_dir() else "file"
                self.problem(
                    self.rel(entry) + ("/" if entry.is_dir() else ""),
                    1,
                    "$",
                    f"unexpected {what} in {self.rel(folder)}/: it holds one "
                    f"{kind} per '<id>{SUFFIX}' file",
                )
            else:
                self.read_object(entry, kind, instance)

    def read_instance_folder(self, folder: Path) -> None:
        instance = folder.name
        if not re.fullmatch(schemas.id_pattern("instance"), instance):
            self.problem(
                self.rel(folder) + "/",
                1,
                "$",
                f"{instance!r} is not an instance id; folders under instances/ "
                "are named after their instance",
            )
            return
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or self.linked(entry):
                continue
            kind = NESTED_FOLDERS.get(entry.name)
            if kind is None or not entry.is_dir():
                self.problem(
                    self.rel(entry),
                    1,
                    "$",
                    f"unexpected entry in {self.rel(folder)}/: only nodes/ and "
                    "services/ belong there",
                )
                continue
            self.read_folder(entry, kind, instance)

    def read_object(self, path: Path, kind: str, instance: str | None) -> None:
        name = path.name[: -len(SUFFIX)]
        key = f"{instance}/{name}" if instance else name
        obj, problems = read_object(self.root, path, kind, instance)
        self.problems.extend(problems)
        if obj is None:
            self.state.broken.add((kind, key))
        else:
            self.state.add(obj)


def read_object(
    root: Path, path: Path, kind: str, instance: str | None
) -> tuple[StateObject | None, list[Problem]]:
    """Read one object's file and check it against its kind's schema.

    Returns the object, or None and the problems that make it invalid.
    """
    file = path.relative_to(root).as_posix()
    name = path.name[: -len(SUFFIX)]
    try:
        doc = read(path)
    except YamlProblem as error:
        where = schemas.json_path(error.path)
        return None, [Problem(file, error.line, where, error.message)]
    if doc.data is None:
        return None, [
            Problem(file, 1, "$", f"the file is empty; it should hold one {kind}")
        ]
    if not isinstance(doc.data, dict):
        message = f"expected a mapping of fields, got {schemas.describe(doc.data)}"
        return None, [Problem(file, 1, "$", message)]

    id_field = schemas.ID_FIELD[kind]
    data = dict(doc.data)
    given = data.setdefault(id_field, name)
    if given != name:
        return None, [
            Problem(
                file,
                doc.line_of((id_field,)),
                f"$.{id_field}",
                f"{id_field} {given!r} differs from the file name {path.name!r}; "
                "rename the file or fix the id",
            )
        ]

    data = schemas.with_defaults(kind, data)
    problems = [
        Problem(file, doc.line_of(json_path), schemas.json_path(json_path), message)
        for json_path, message in schemas.errors(kind, data, doc)
    ]
    if problems:
        return None, problems
    return StateObject(kind, name, data, file, doc, instance), []


def load(root: Path | str) -> State:
    """Read, validate and cross-check the state; raise StateError if invalid."""
    root = Path(root)
    if not root.is_dir():
        raise StateNotFound(f"state directory '{root}' does not exist")
    if not any((root / folder).is_dir() for folder in FOLDERS):
        folders = ", ".join(f"{name}/" for name in sorted(FOLDERS))
        raise StateNotFound(f"'{root}' holds no state: none of {folders} is there")
    reader = _Reader(root)
    try:
        reader.walk()
    except OSError as error:
        raise StateNotFound(
            f"cannot read '{error.filename}': {error.strerror}"
        ) from None
    # Nested objects whose instance file is missing are reported once each.
    for kind in NESTED_FOLDERS.values():
        for obj in reader.state.of(kind).values():
            if not reader.state.exists("instance", obj.instance):
                reader.problem(
                    obj.file,
                    1,
                    "$",
                    f"instance {obj.instance!r} does not exist "
                    f"(no instances/{obj.instance}{SUFFIX})",
                )
    reader.problems.extend(check_references(reader.state))
    if reader.problems:
        raise StateError(reader.problems)
    counts = {kind: len(objs) for kind, objs in reader.state.objects.items() if objs}
    log.info("state loaded from %s: %s", root, counts)
    return reader.state
