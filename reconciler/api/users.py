"""Users, keyed by email in lower case, and their access to tenants."""

from __future__ import annotations

from typing import Any

from .. import credentials
from ..errors import ObjectExists
from .crud import (
    add_item,
    check_version,
    created,
    found,
    list_of,
    one,
    save,
    update,
    user_key,
    without_item,
)
from .http import Reply, json_object
from .routes import Api, Request, route
from .shapes import check_request


@route("GET", "/users", "List all users", answer="user[]")
def list_users(api: Api, request: Request) -> Reply:
    return list_of(api, "user")


@route(
    "POST",
    "/users",
    "Create a user",
    status=201,
    request="user.create",
    answer="user",
)
def create_user(api: Api, request: Request) -> Reply:
    body = json_object(request.environ)
    if isinstance(body.get("email"), str):
        body["email"] = credentials.normalized_email(body["email"])
    check_request("user", "create", body)
    key = body["email"]
    tenants = body.get("tenants")
    with api.store.change(f"Create user {key}") as change:
        if api.store.exists("user", key):
            raise ObjectExists(f"user {key!r} already exists")
        data: dict[str, Any] = {
            "email": key,
            "name": body["name"],
            "client-id": credentials.new_client_id(),
        }
        if tenants is not None:
            data["tenants"] = tenants
        data["password-hash"] = credentials.hash_password(body["password"])
        save(change, "user", key, data)
    return created("user", api, key)


@route("GET", "/users/{email}", "Retrieve a user", answer="user", etag=True)
def get_user(api: Api, request: Request, email: str) -> Reply:
    return one(api, request, "user", user_key(email))


@route(
    "PUT",
    "/users/{email}",
    "Update a user",
    request="user.update",
    answer="user",
    etag=True,
)
def update_user(api: Api, request: Request, email: str) -> Reply:
    body = json_object(request.environ)
    if isinstance(body.get("email"), str):
        body["email"] = body["email"].lower()  # sent back in another letter case
    return update(api, request, "user", user_key(email), body, _prepare_update)


def _prepare_update(
    api: Api, key: str, body: dict[str, Any], data: dict[str, Any]
) -> None:
    if "password" in body:
        data["password-hash"] = credentials.hash_password(body["password"])


@route("DELETE", "/users/{email}", "Delete a user", status=204, etag=True)
def delete_user(api: Api, request: Request, email: str) -> Reply:
    key = user_key(email)
    with api.store.change(f"Delete user {key}") as change:
        user = found(api, "user", key)
        check_version(api, request, user)
        change.remove("user", key)
    return Reply(204)


@route(
    "POST",
    "/users/{email}/tenants/{id}",
    "Give a user access to a tenant",
    status=201,
    answer="user-tenant",
)
def add_user_tenant(api: Api, request: Request, email: str, id: str) -> Reply:
    key = user_key(email)
    with api.store.change(f"Give user {key} access to tenant {id}") as change:
        add_item(api, change, ("user", key), "tenants", ("tenant", id))
    return Reply(201, {"user": key, "tenant": id})


@route(
    "DELETE",
    "/users/{email}/tenants/{id}",
    "Take a user's access to a tenant",
    status=204,
)
def remove_user_tenant(api: Api, request: Request, email: str, id: str) -> Reply:
    key = user_key(email)
    with api.store.change(f"Take user {key}'s access to tenant {id}") as change:
        missing = f"user {key!r} has no access to tenant {id!r}"
        data = without_item(api, ("user", key), "tenants", id, missing)
        save(change, "user", key, data)
    return Reply(204)
