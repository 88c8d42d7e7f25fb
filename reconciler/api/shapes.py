"""What the API shows of each kind, and what it accepts, from `schemas/`.

A file may hold more than its API object (a tenant's instance and
integrations have their own routes; a user's password hash is never shown).
Each `Shape` names the fields of the answer and of the requests; their
JSON Schemas are cut from the kind's own schema, so `schemas/` stays the
only definition of every field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry

from .. import schemas
from ..credentials import MAX_PASSWORD_LENGTH
from ..errors import InvalidObject
from ..state import StateObject
from ..yamlio import Document

PASSWORD = {
    "description": "Password of the user. Stored only as a salted argon2id hash; "
    "never returned.",
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_PASSWORD_LENGTH,
    "writeOnly": True,
}


@dataclass(frozen=True)
class Shape:
    kind: str
    answer: tuple[str, ...]  # fields of an answer, in this order
    create: tuple[str, ...]  # fields a create accepts
    required: tuple[str, ...]  # fields a create needs
    update: tuple[str, ...]  # fields a PUT may change
    fixed: tuple[str, ...] = ()  # fields a PUT may repeat, unchanged
    always: dict[str, Any] = field(default_factory=dict)  # shown when absent

    @property
    def id_field(self) -> str:
        return schemas.ID_FIELD[self.kind]

    @property
    def clearable(self) -> tuple[str, ...]:
        """Fields a PUT may remove by sending null: those the kind can lack."""
        required = set(schemas.schema(self.kind).get("required", ()))
        return tuple(
            name for name in self.update if name not in required | {"password"}
        )

    @property
    def order(self) -> list[str]:
        """The order of fields in a file: the schema's."""
        return list(schemas.schema(self.kind)["properties"])


_INSTANCE_FIELDS = ("name", "zk", "redis", "auth", "api", "events", "stats")
_INTEGRATION_PARTS = ("display", "schema", "endpoint", "listener")

SHAPES = {
    "instance": Shape(
        "instance",
        answer=("id", "name", "auth", "api", "events", "zk", "redis", "stats"),
        create=_INSTANCE_FIELDS,
        required=("name", "zk", "redis"),
        update=_INSTANCE_FIELDS,
        fixed=("id",),
    ),
    "tenant": Shape(
        "tenant",
        answer=("id", "name", "rate-limit"),
        create=("id", "name", "rate-limit"),
        required=("id", "name"),
        update=("name", "rate-limit"),
        fixed=("id",),
    ),
    "user": Shape(
        "user",
        answer=("email", "name", "client-id", "tenants"),
        create=("email", "name", "password", "tenants"),
        required=("email", "name", "password"),
        update=("name", "password", "tenants"),
        fixed=("email", "client-id"),
        always={"tenants": []},
    ),
    "integration": Shape(
        "integration",
        answer=("id", "type", *_INTEGRATION_PARTS),
        create=("id", "type", *_INTEGRATION_PARTS),
        required=(),
        update=_INTEGRATION_PARTS,
        fixed=("id", "type"),
    ),
}


@cache
def request_schema(kind: str, operation: str) -> dict[str, Any]:
    """The JSON Schema of a create or update body of one kind."""
    shape = SHAPES[kind]
    base = schemas.schema(kind)
    names = shape.create if operation == "create" else shape.update + shape.fixed
    properties = {
        name: PASSWORD if name == "password" else base["properties"][name]
        for name in names
    }
    result: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": copy.deepcopy(properties),
    }
    if operation == "create" and shape.required:
        result["required"] = list(shape.required)
    if operation == "create":
        # The kind's own "one of these fields at least" rules hold on create.
        rules = [copy.deepcopy(base["anyOf"])] if "anyOf" in base else []
        if kind == "integration":
            rules.append([{"required": ["id"]}, {"required": ["type"]}])
        if rules:
            result["allOf"] = [{"anyOf": rule} for rule in rules]
    if "$defs" in base:
        result["$defs"] = copy.deepcopy(base["$defs"])
    return result


@cache
def instance_link_schema() -> dict[str, Any]:
    """The body that puts a tenant on an instance: `{"id": "IN1"}`."""
    return {
        "type": "object",
        "required": ["id"],
        "additionalProperties": False,
        "properties": {"id": schemas.schema("instance")["properties"]["id"]},
    }


def check_instance_link(body: dict[str, Any]) -> None:
    problems = _problems(instance_link_schema(), body)
    if problems:
        raise InvalidObject(problems)


@cache
def _validator(kind: str, operation: str) -> Draft202012Validator:
    return Draft202012Validator(request_schema(kind, operation), registry=Registry())


def check_request(kind: str, operation: str, body: dict[str, Any]) -> None:
    """Refuse a body with unknown, missing or mistyped fields, naming each."""
    problems = _problems(request_schema(kind, operation), body)
    if problems:
        raise InvalidObject(problems)


def check_object(kind: str, key: str, data: dict[str, Any]) -> None:
    """Refuse an object that its kind's schema does not accept."""
    whole = schemas.with_defaults(kind, {schemas.ID_FIELD[kind]: key, **data})
    problems = _problems(kind, whole)
    if problems:
        raise InvalidObject(problems)


def _problems(schema: dict[str, Any] | str, data: dict[str, Any]) -> list:
    found = schemas.errors(schema, data, Document(data=data))
    return sorted({(schemas.json_path(path), message) for path, message in found})


def answer(obj: StateObject) -> dict[str, Any]:
    """The API's view of an object: its shape's fields, in its shape's order."""
    shape = SHAPES[obj.kind]
    raw = obj.doc.data
    shown: dict[str, Any] = {}
    id_field = shape.id_field
    for name in shape.answer:
        if name == id_field:
            shown[name] = obj.id
        elif name in raw:
            shown[name] = raw[name]
        elif name in shape.always:
            shown[name] = copy.deepcopy(shape.always[name])
    return shown


def file_data(obj: StateObject) -> dict[str, Any]:
    """The object as its file holds it, to change and write back."""
    return copy.deepcopy(obj.doc.data)


def ordered(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its fields in the schema's order, for a new file."""
    order = SHAPES[kind].order if kind in SHAPES else list(data)
    rank = {name: i for i, name in enumerate(order)}
    return dict(sorted(data.items(), key=lambda item: rank.get(item[0], len(rank))))
