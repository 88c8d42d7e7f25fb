"""Integrations: definitions of third-party endpoints and listeners."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidObject, ObjectExists, ObjectInUse
from ..references import declared_params
from .crud import check_version, created, found, list_of, one, save, update
from .http import Reply, json_object
from .routes import Api, Request, route
from .shapes import check_request, ordered


@route("GET", "/integrations", "List all integrations", answer="integration[]")
def list_integrations(api: Api, request: Request) -> Reply:
    return list_of(api, "integration")


@route(
    "POST",
    "/integrations",
    "Create an integration",
    status=201,
    request="integration.create",
    answer="integration",
)
def create_integration(api: Api, request: Request) -> Reply:
    body = json_object(request.environ)
    check_request("integration", "create", body)
    key = body.get("id", body.get("type"))
    if body.setdefault("type", key) != body.setdefault("id", key):
        raise InvalidObject([("$.type", "type must equal id")])
    with api.store.change(f"Create integration {key}") as change:
        if api.store.exists("integration", key):
            raise ObjectExists(f"integration {key!r} already exists")
        save(change, "integration", key, ordered("integration", body))
    return created("integration", api, key)


@route(
    "GET",
    "/integrations/{id}",
    "Retrieve an integration",
    answer="integration",
    etag=True,
)
def get_integration(api: Api, request: Request, id: str) -> Reply:
    return one(api, request, "integration", id)


@route(
    "PUT",
    "/integrations/{id}",
    "Update an integration",
    request="integration.update",
    answer="integration",
    etag=True,
)
def update_integration(api: Api, request: Request, id: str) -> Reply:
    return update(
        api,
        request,
        "integration",
        id,
        json_object(request.environ),
        _check_params_still_declared,
    )


def _check_params_still_declared(
    api: Api, key: str, body: dict[str, Any], data: dict[str, Any]
) -> None:
    """An update may not drop a param that tenants give values for."""
    declared = declared_params(data)
    problems = []
    for tenant in api.store.all("tenant"):
        given = tenant.data.get("integration-params", {}).get(key, {})
        for name in sorted(set(given) - declared):
            problems.append(
                (
                    "$",
                    f"tenant {tenant.id!r} gives a value for param {name!r}, "
                    "which this definition would no longer declare",
                )
            )
    if problems:
        raise InvalidObject(problems)


@route(
    "DELETE",
    "/integrations/{id}",
    "Delete an integration that no tenant uses",
    status=204,
    etag=True,
)
def delete_integration(api: Api, request: Request, id: str) -> Reply:
    with api.store.change(f"Delete integration {id}") as change:
        integration = found(api, "integration", id)
        check_version(api, request, integration)
        users = [
            t.id
            for t in api.store.all("tenant")
            if id in t.data.get("integrations", [])
        ]
        if users:
            raise ObjectInUse(
                f"integration {id!r} is used by tenants {', '.join(users)}; "
                "take it from them first",
                details={"tenants": users},
            )
        change.remove("integration", id)
    return Reply(204)
