"""The OpenAPI 3.1 document of the API, built from the routes and `schemas/`.

Nothing here is written by hand twice: paths come from the route table,
object schemas from the kinds' JSON Schemas (cut to the API's shapes), so
the document cannot drift from what the server does.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

from .. import __version__, schemas
from .http import MAX_BODY, PREFIX, Reply, Route
from .platform import ROUTES
from .routes import Api, Request, route
from .shapes import SHAPES, instance_link_schema, request_schema

_TITLES = {kind: kind.title() for kind in SHAPES}

_ERRORS = {
    400: "A missing, unknown or invalid field, or malformed JSON",
    404: "No such object, or no such route",
    405: "The method is not allowed on this path",
    409: "The id is taken, or the object is still in use",
    412: "If-Match names a version that is no longer current",
    413: f"The body is over {MAX_BODY} bytes",
    415: "The body is not application/json in UTF-8",
    500: "The state on disk is invalid, or a write failed; nothing was changed",
    502: "A node could not be reached; nothing was changed",
}

_LINKS = {
    "tenant-instance": ("tenant", "instance"),
    "tenant-integration": ("tenant", "integration"),
    "user-tenant": ("user", "tenant"),
}


def _hoist(schema: dict[str, Any], prefix: str, into: dict[str, Any]) -> dict:
    """Move a schema's $defs into components, rewriting references to them."""

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: (
                    re.sub(r"^#/\$defs/", f"#/components/schemas/{prefix}-", item)
                    if key == "$ref" and isinstance(item, str)
                    else rewrite(item)
                )
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [rewrite(item) for item in value]
        return value

    schema = copy.deepcopy(schema)
    for name, definition in schema.pop("$defs", {}).items():
        into[f"{prefix}-{name}"] = rewrite(definition)
    return rewrite(schema)


def _answer_schema(kind: str) -> dict[str, Any]:
    shape = SHAPES[kind]
    base = schemas.schema(kind)
    properties = {
        name: copy.deepcopy(base["properties"][name]) for name in shape.answer
    }
    return {
        "title": base.get("title", kind),
        "description": base.get("description", ""),
        "type": "object",
        "properties": properties,
        "required": [shape.id_field],
        "$defs": copy.deepcopy(base.get("$defs", {})),
    }


def _components() -> dict[str, Any]:
    found: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "What was wrong."}
            },
        }
    }
    for kind in SHAPES:
        title = _TITLES[kind]
        found[title] = _hoist(_answer_schema(kind), title, found)
        found[f"{title}Create"] = _hoist(request_schema(kind, "create"), title, found)
        update = _nullable(kind, request_schema(kind, "update"))
        found[f"{title}Update"] = _hoist(update, title, found)
    found["InstanceLink"] = instance_link_schema()
    for name, (left, right) in _LINKS.items():
        found[_camel(name)] = {
            "type": "object",
            "required": [left, right],
            "properties": {left: {"type": "string"}, right: {"type": "string"}},
        }
    return found


def _nullable(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An update's schema, where null removes a field the kind can do without."""
    result = copy.deepcopy(schema)
    for name, prop in result["properties"].items():
        if name in SHAPES[kind].clearable:
            result["properties"][name] = {
                "anyOf": [prop, {"type": "null", "description": "removes the field"}]
            }
    result["description"] = (
        "Fields not sent keep their values; a field sent replaces its value "
        "whole; null removes an optional field."
    )
    return result


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("-"))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer_ref(answer: str) -> dict[str, Any]:
    if answer.endswith("[]"):
        item = answer[:-2]
        if item in ("email", "id"):
            return {"type": "array", "items": {"type": "string"}}
        return {"type": "array", "items": _ref(_TITLES[item])}
    if answer in _LINKS:
        return _ref(_camel(answer))
    if answer == "openapi":
        return {"type": "object"}
    return _ref(_TITLES[answer])


def _request_ref(request: str) -> dict[str, Any]:
    if request == "instance-link":
        return _ref("InstanceLink")
    kind, operation = request.split(".")
    return _ref(f"{_TITLES[kind]}{operation.title()}")


def _may_answer(route_: Route, status: int) -> bool:
    """Whether an error status can come from this route."""
    writes = route_.method != "GET"
    return {
        400: writes,
        409: writes,
        412: writes and route_.etag,
        413: route_.request is not None,
        415: route_.request is not None,
        502: route_.method == "DELETE" and route_.path == f"{PREFIX}/instances/{{id}}",
    }.get(status, True)


def _operation(route_: Route) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route_.path)
    ]
    if route_.etag and route_.method == "GET":
        parameters.append(
            {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}
        )
    if route_.etag and route_.method in ("PUT", "DELETE"):
        parameters.append(
            {"name": "If-Match", "in": "header", "schema": {"type": "string"}}
        )
    success: dict[str, Any] = {"description": route_.summary}
    if route_.answer is not None:
        success["content"] = {
            "application/json": {"schema": _answer_ref(route_.answer)}
        }
    if route_.etag and route_.method != "DELETE":
        success["headers"] = {"ETag": {"schema": {"type": "string"}}}
    if route_.request is not None and route_.request.endswith(".create"):
        success["headers"] = {
            "ETag": {"schema": {"type": "string"}},
            "Location": {"schema": {"type": "string"}},
        }
    responses: dict[str, Any] = {str(route_.status): success}
    if route_.etag and route_.method == "GET":
        responses["304"] = {
            "description": "If-None-Match names the current version",
            "headers": {"ETag": {"schema": {"type": "string"}}},
        }
    for status, description in _ERRORS.items():
        if not _may_answer(route_, status):
            continue
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    operation: dict[str, Any] = {
        "operationId": route_.handler.__name__,
        "summary": route_.summary,
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if route_.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _request_ref(route_.request)}},
        }
    return operation


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    for route_ in ROUTES:
        paths.setdefault(route_.path, {})[route_.method.lower()] = _operation(route_)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CxEngage Platform API",
            "version": __version__,
            "description": "Administration of a CxEngage platform: instances, "
            "tenants, users and integrations, kept as YAML state files. No "
            "authentication: serve it on a trusted network only.",
        },
        "servers": [{"url": "/"}],
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {"schemas": _components()},
    }


@route("GET", "/openapi.json", "This API's OpenAPI 3.1 document", answer="openapi")
def get_openapi(api: Api, request: Request) -> Reply:
    return Reply(200, document())


__all__ = ["PREFIX", "document"]
