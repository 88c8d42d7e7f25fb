"""The platform's `/1.0` routes: instances, tenants, users, integrations.

Handlers read through the store's index and write through `Store.change`,
which holds the store lock: everything a write checks (the object's current
version, the objects it names) is read under that lock, from disk.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bottle

from .. import credentials
from ..apply import FAILED, reconcile
from ..connections import ConnectOptions
from ..errors import (
    ConnectionFailed,
    InvalidObject,
    ObjectExists,
    ObjectInUse,
    ObjectNotFound,
    StaleObject,
)
from ..references import declared_params
from ..render import bare
from ..state import StateObject
from ..store import Change, Store
from .http import PREFIX, Reply, Route, json_object
from .shapes import SHAPES, answer, check_object, check_request, file_data, ordered

log = logging.getLogger(__name__)

Request = bottle.BaseRequest


@dataclass
class Api:
    """What every handler works with."""

    store: Store
    options: ConnectOptions
    parallel: int = 10


ROUTES: list[Route] = []


def route(method: str, path: str, summary: str, **kwargs: Any) -> Callable:
    def register(handler: Callable[..., Reply]) -> Callable[..., Reply]:
        ROUTES.append(Route(method, PREFIX + path, handler, summary, **kwargs))
        return handler

    return register


# -- shared steps


def _user_key(email: str) -> str:
    """Emails are ids in lower case: any spelling finds the same user."""
    return email.strip().lower()


def _found(api: Api, kind: str, key: str) -> StateObject:
    try:
        return api.store.get(kind, key)
    except ObjectNotFound:
        label = "user" if kind == "user" else kind
        raise ObjectNotFound(f"{label} {key!r} does not exist") from None


def _one(api: Api, request: Request, kind: str, key: str) -> Reply:
    obj = _found(api, kind, key)
    etag = api.store.etag(kind, obj.key)
    # If-None-Match compares weakly: W/"x" matches "x"; "*" matches any version.
    unwanted = [tag.removeprefix("W/") for tag in _tags(request, "If-None-Match")]
    if etag and (etag in unwanted or "*" in unwanted):
        return Reply(304, None, {"ETag": etag})
    return Reply(200, answer(obj), {"ETag": etag})


def _tags(request: Request, header: str) -> list[str]:
    value = request.get_header(header)
    return [tag.strip() for tag in value.split(",")] if value else []


def _check_version(api: Api, request: Request, obj: StateObject) -> None:
    """Honour If-Match: refuse to change an object that changed since.

    The comparison is strong, so a weak tag (W/"...") never matches.
    """
    wanted = _tags(request, "If-Match")
    if not wanted or "*" in wanted:
        return
    current = api.store.etag(obj.kind, obj.key)
    if current not in wanted:
        raise StaleObject(
            f"{obj.kind} {obj.key!r} has changed since the version in If-Match; "
            f"its current ETag is {current}: read it again, then retry"
        )


def _refuse_changes(kind: str, body: dict[str, Any], obj: StateObject) -> None:
    """Fields such as an id may be sent back unchanged, never changed."""
    current = answer(obj)
    for name in SHAPES[kind].fixed:
        if name in body and body[name] != current.get(name):
            raise InvalidObject(
                [
                    (
                        f"$.{name}",
                        f"{name} cannot be changed (it is {current.get(name)!r})",
                    )
                ]
            )


def _save(
    change: Change, kind: str, key: str, data: dict[str, Any], check: bool = True
) -> None:
    if check:
        check_object(kind, key, data)
    change.put(kind, key, data, SHAPES[kind].order if kind in SHAPES else list(data))


def _missing_refs(api: Api, kind: str, keys: list[str], field: str) -> None:
    problems = [
        (f"$.{field}[{i}]", f"{kind} {key!r} does not exist")
        for i, key in enumerate(keys)
        if not api.store.exists(kind, key)
    ]
    if problems:
        raise InvalidObject(problems)


def _created(obj_kind: str, api: Api, key: str) -> Reply:
    obj = api.store.get(obj_kind, key)
    return Reply(201, answer(obj), {"ETag": api.store.etag(obj_kind, key)})


def _updated(obj_kind: str, api: Api, key: str) -> Reply:
    obj = api.store.get(obj_kind, key)
    return Reply(200, answer(obj), {"ETag": api.store.etag(obj_kind, key)})


def _update(api: Api, request: Request, kind: str, key: str, **extra: Any) -> Reply:
    """A partial update: fields not sent keep their values."""
    body = json_object(request.environ)
    if kind == "user" and isinstance(body.get("email"), str):
        body["email"] = body["email"].lower()  # sent back in another letter case
    check_request(kind, "update", body)
    with api.store.change(f"Update {kind} {key}") as change:
        obj = _found(api, kind, key)
        _check_version(api, request, obj)
        _refuse_changes(kind, body, obj)
        data = file_data(obj)
        for name in SHAPES[kind].update:
            if name in body and name != "password":
                data[name] = body[name]
        if kind == "user":
            if "tenants" in body:
                _missing_refs(api, "tenant", body["tenants"], "tenants")
            if "password" in body:
                data["password-hash"] = credentials.hash_password(body["password"])
        if kind == "integration":
            _check_params_still_declared(api, key, data)
        fields = sorted(name for name in body if name in SHAPES[kind].update)
        change.message += f": {', '.join(fields)}" if fields else ""
        _save(change, kind, key, data)
    return _updated(kind, api, key)


def _list(api: Api, kind: str) -> Reply:
    return Reply(200, [answer(obj) for obj in api.store.all(kind)])


# -- instances


def _next_instance_id(api: Api) -> tuple[str, int]:
    """IN<n> above every id used so far, deleted ones included."""
    used = api.store.read_ids().get("instance", 0)
    for obj in api.store.all_keys("instance"):
        match = re.fullmatch(r"IN([0-9]+)", obj)
        if match:
            used = max(used, int(match.group(1)))
    return f"IN{used + 1}", used + 1


@route("GET", "/instances", "List all instances", answer="instance[]")
def list_instances(api: Api, request: Request) -> Reply:
    return _list(api, "instance")


@route(
    "POST",
    "/instances",
    "Create an instance",
    status=201,
    request="instance.create",
    answer="instance",
)
def create_instance(api: Api, request: Request) -> Reply:
    body = json_object(request.environ)
    check_request("instance", "create", body)
    with api.store.change("Create instance") as change:
        key, number = _next_instance_id(api)
        change.message = f"Create instance {key}"
        data = ordered("instance", {"id": key, **body})
        _save(change, "instance", key, data)
        change.put_ids({**api.store.read_ids(), "instance": number})
    return _created("instance", api, key)


@route("GET", "/instances/{id}", "Retrieve an instance", answer="instance", etag=True)
def get_instance(api: Api, request: Request, id: str) -> Reply:
    return _one(api, request, "instance", id)


@route(
    "PUT",
    "/instances/{id}",
    "Update an instance",
    request="instance.update",
    answer="instance",
    etag=True,
)
def update_instance(api: Api, request: Request, id: str) -> Reply:
    return _update(api, request, "instance", id)


@route(
    "DELETE",
    "/instances/{id}",
    "Delete an instance: stop its processes, then remove it, its nodes, "
    "services and processes, and detach its tenants",
    status=204,
    etag=True,
)
def delete_instance(api: Api, request: Request, id: str) -> Reply:
    with api.store.change(f"Delete instance {id}") as change:
        instance = _found(api, "instance", id)
        _check_version(api, request, instance)
        nodes = [n for n in api.store.all("node") if n.instance == id]
        services = [s for s in api.store.all("service") if s.instance == id]
        processes = [
            p for p in api.store.all("process") if p.data.get("instance") == id
        ]
        _stop_nodes(api, id, nodes)

        tenants = [t for t in api.store.all("tenant") if t.data.get("instance") == id]
        for tenant in tenants:
            data = file_data(tenant)
            del data["instance"]
            _save(change, "tenant", tenant.id, data, check=False)
        for obj in [*processes, *services, *nodes, instance]:
            change.remove(obj.kind, obj.key)
        change.details += [
            f"detached tenants: {', '.join(t.id for t in tenants) or 'none'}",
            f"removed nodes: {', '.join(n.id for n in nodes) or 'none'}",
            f"removed services: {', '.join(s.id for s in services) or 'none'}",
            f"removed processes: {', '.join(p.id for p in processes) or 'none'}",
        ]
    return Reply(204)


def _stop_nodes(api: Api, instance: str, nodes: list[StateObject]) -> None:
    """Stop every process reconcile runs on these nodes, or change nothing.

    All nodes are contacted first; only when every one answered are their
    processes stopped, so that an unreachable node leaves everything as it
    was.
    """
    desired = [bare(node) for node in nodes]
    results = reconcile(desired, api.options, apply=False, parallel=api.parallel)
    failed = [r for r in results if r.status == FAILED]
    if failed:
        reasons = "; ".join(f"{r.key}: {r.error}" for r in failed)
        raise ConnectionFailed(
            f"instance {instance} was not deleted: cannot reach {reasons}"
        )
    busy = {r.key for r in results if r.plan is not None and r.plan.changed}
    todo = [d for d in desired if d.key in busy]
    results = reconcile(todo, api.options, apply=True, parallel=api.parallel)
    failed = [r for r in results if r.status == FAILED]
    if failed:
        reasons = "; ".join(f"{r.key}: {r.error}" for r in failed)
        raise ConnectionFailed(
            f"instance {instance} was not deleted: stopping its processes "
            f"failed on {reasons}"
        )
    for result in results:
        log.info("%s: processes stopped and removed", result.key)


@route(
    "GET",
    "/instances/{id}/tenants",
    "List the tenants of an instance",
    answer="tenant[]",
)
def instance_tenants(api: Api, request: Request, id: str) -> Reply:
    _found(api, "instance", id)
    tenants = api.store.all("tenant")
    return Reply(200, [answer(t) for t in tenants if t.data.get("instance") == id])


# -- tenants


@route("GET", "/tenants", "List all tenants", answer="tenant[]")
def list_tenants(api: Api, request: Request) -> Reply:
    return _list(api, "tenant")


@route(
    "POST",
    "/tenants",
    "Create a tenant",
    status=201,
    request="tenant.create",
    answer="tenant",
)
def create_tenant(api: Api, request: Request) -> Reply:
    body = json_object(request.environ)
    check_request("tenant", "create", body)
    key = body["id"]
    with api.store.change(f"Create tenant {key}") as change:
        if api.store.exists("tenant", key):
            raise ObjectExists(f"tenant {key!r} already exists")
        _save(change, "tenant", key, ordered("tenant", body))
    return _created("tenant", api, key)


@route("GET", "/tenants/{id}", "Retrieve a tenant", answer="tenant", etag=True)
def get_tenant(api: Api, request: Request, id: str) -> Reply:
    return _one(api, request, "tenant", id)


@route(
    "PUT",
    "/tenants/{id}",
    "Update a tenant",
    request="tenant.update",
    answer="tenant",
    etag=True,
)
def update_tenant(api: Api, request: Request, id: str) -> Reply:
    return _update(api, request, "tenant", id)


@route(
    "DELETE",
    "/tenants/{id}",
    "Delete a tenant, and remove it from its users",
    status=204,
    etag=True,
)
def delete_tenant(api: Api, request: Request, id: str) -> Reply:
    with api.store.change(f"Delete tenant {id}") as change:
        tenant = _found(api, "tenant", id)
        _check_version(api, request, tenant)
        users = [u for u in api.store.all("user") if id in u.data.get("tenants", [])]
        for user in users:
            data = file_data(user)
            data["tenants"] = [t for t in data["tenants"] if t != id]
            _save(change, "user", user.id, data, check=False)
        change.remove("tenant", id)
        if users:
            change.details.append(
                "removed from users: " + ", ".join(u.id for u in users)
            )
    return Reply(204)


@route(
    "GET",
    "/tenants/{id}/users",
    "List the users of a tenant (their emails)",
    answer="email[]",
)
def tenant_users(api: Api, request: Request, id: str) -> Reply:
    _found(api, "tenant", id)
    users = api.store.all("user")
    return Reply(200, [u.id for u in users if id in u.data.get("tenants", [])])


@route(
    "GET",
    "/tenants/{id}/instance",
    "Retrieve the instance of a tenant",
    answer="instance",
    etag=True,
)
def tenant_instance(api: Api, request: Request, id: str) -> Reply:
    tenant = _found(api, "tenant", id)
    instance = tenant.data.get("instance")
    if instance is None:
        raise ObjectNotFound(f"tenant {id!r} is not on any instance")
    return _one(api, request, "instance", instance)


@route(
    "POST",
    "/tenants/{id}/instance",
    "Add a tenant to an instance (replacing its current one)",
    status=201,
    request="instance-link",
    answer="tenant-instance",
)
def set_tenant_instance(api: Api, request: Request, id: str) -> Reply:
    body = json_object(request.environ)
    if set(body) != {"id"} or not isinstance(body["id"], str):
        unknown = sorted(set(body) - {"id"})
        if unknown:
            raise InvalidObject([(f"$.{unknown[0]}", f"unknown field {unknown[0]!r}")])
        raise InvalidObject([("$.id", "missing required field 'id' (an instance id)")])
    instance = body["id"]
    with api.store.change(f"Add tenant {id} to instance {instance}") as change:
        tenant = _found(api, "tenant", id)
        _found(api, "instance", instance)
        data = file_data(tenant)
        if data.get("instance") != instance:
            data["instance"] = instance
            _save(change, "tenant", id, data)
    return Reply(201, {"tenant": id, "instance": instance})


@route(
    "DELETE",
    "/tenants/{id}/instance",
    "Remove a tenant from its instance",
    status=204,
)
def unset_tenant_instance(api: Api, request: Request, id: str) -> Reply:
    with api.store.change(f"Remove tenant {id} from its instance") as change:
        tenant = _found(api, "tenant", id)
        data = file_data(tenant)
        if "instance" not in data:
            raise ObjectNotFound(f"tenant {id!r} is not on any instance")
        change.message = f"Remove tenant {id} from instance {data['instance']}"
        del data["instance"]
        _save(change, "tenant", id, data)
    return Reply(204)


@route(
    "GET",
    "/tenants/{id}/integrations",
    "List the integrations of a tenant (their ids)",
    answer="id[]",
)
def tenant_integrations(api: Api, request: Request, id: str) -> Reply:
    return Reply(200, list(_found(api, "tenant", id).data.get("integrations", [])))


@route(
    "POST",
    "/tenants/{tid}/integrations/{id}",
    "Give a tenant an integration",
    status=201,
    answer="tenant-integration",
)
def add_tenant_integration(api: Api, request: Request, tid: str, id: str) -> Reply:
    with api.store.change(f"Give tenant {tid} integration {id}") as change:
        tenant = _found(api, "tenant", tid)
        _found(api, "integration", id)
        data = file_data(tenant)
        used = data.setdefault("integrations", [])
        if id not in used:
            used.append(id)
            _save(change, "tenant", tid, data)
    return Reply(201, {"tenant": tid, "integration": id})


@route(
    "DELETE",
    "/tenants/{tid}/integrations/{id}",
    "Take an integration (and the tenant's params for it) from a tenant",
    status=204,
)
def remove_tenant_integration(api: Api, request: Request, tid: str, id: str) -> Reply:
    with api.store.change(f"Take integration {id} from tenant {tid}") as change:
        tenant = _found(api, "tenant", tid)
        data = file_data(tenant)
        if id not in data.get("integrations", []):
            raise ObjectNotFound(f"tenant {tid!r} has no integration {id!r}")
        data["integrations"] = [i for i in data["integrations"] if i != id]
        params = data.get("integration-params", {})
        if id in params:
            del params[id]
            change.details.append(f"its params for {id} are removed too")
            if not params:
                del data["integration-params"]
        _save(change, "tenant", tid, data)
    return Reply(204)


# -- users


@route("GET", "/users", "List all users", answer="user[]")
def list_users(api: Api, request: Request) -> Reply:
    return _list(api, "user")


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
        if tenants is not None:
            _missing_refs(api, "tenant", tenants, "tenants")
        data: dict[str, Any] = {
            "email": key,
            "name": body["name"],
            "client-id": credentials.new_client_id(),
        }
        if tenants is not None:
            data["tenants"] = tenants
        data["password-hash"] = credentials.hash_password(body["password"])
        _save(change, "user", key, data)
    return _created("user", api, key)


@route("GET", "/users/{email}", "Retrieve a user", answer="user", etag=True)
def get_user(api: Api, request: Request, email: str) -> Reply:
    return _one(api, request, "user", _user_key(email))


@route(
    "PUT",
    "/users/{email}",
    "Update a user",
    request="user.update",
    answer="user",
    etag=True,
)
def update_user(api: Api, request: Request, email: str) -> Reply:
    return _update(api, request, "user", _user_key(email))


@route("DELETE", "/users/{email}", "Delete a user", status=204, etag=True)
def delete_user(api: Api, request: Request, email: str) -> Reply:
    key = _user_key(email)
    with api.store.change(f"Delete user {key}") as change:
        user = _found(api, "user", key)
        _check_version(api, request, user)
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
    key = _user_key(email)
    with api.store.change(f"Give user {key} access to tenant {id}") as change:
        user = _found(api, "user", key)
        _found(api, "tenant", id)
        data = file_data(user)
        tenants = data.setdefault("tenants", [])
        if id not in tenants:
            tenants.append(id)
            _save(change, "user", key, data)
    return Reply(201, {"user": key, "tenant": id})


@route(
    "DELETE",
    "/users/{email}/tenants/{id}",
    "Take a user's access to a tenant",
    status=204,
)
def remove_user_tenant(api: Api, request: Request, email: str, id: str) -> Reply:
    key = _user_key(email)
    with api.store.change(f"Take user {key}'s access to tenant {id}") as change:
        user = _found(api, "user", key)
        data = file_data(user)
        if id not in data.get("tenants", []):
            raise ObjectNotFound(f"user {key!r} has no access to tenant {id!r}")
        data["tenants"] = [t for t in data["tenants"] if t != id]
        _save(change, "user", key, data)
    return Reply(204)


# -- integrations


@route("GET", "/integrations", "List all integrations", answer="integration[]")
def list_integrations(api: Api, request: Request) -> Reply:
    return _list(api, "integration")


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
        _save(change, "integration", key, ordered("integration", body))
    return _created("integration", api, key)


@route(
    "GET",
    "/integrations/{id}",
    "Retrieve an integration",
    answer="integration",
    etag=True,
)
def get_integration(api: Api, request: Request, id: str) -> Reply:
    return _one(api, request, "integration", id)


@route(
    "PUT",
    "/integrations/{id}",
    "Update an integration",
    request="integration.update",
    answer="integration",
    etag=True,
)
def update_integration(api: Api, request: Request, id: str) -> Reply:
    return _update(api, request, "integration", id)


def _check_params_still_declared(api: Api, key: str, data: dict[str, Any]) -> None:
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
        integration = _found(api, "integration", id)
        _check_version(api, request, integration)
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
