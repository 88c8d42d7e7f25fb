"""Tenants: their own routes, their users, their instance, their integrations."""

from __future__ import annotations

from ..errors import ObjectExists, ObjectNotFound
from .crud import (
    add_item,
    check_version,
    created,
    dropped,
    found,
    list_of,
    one,
    save,
    update,
    without_item,
)
from .http import Reply, json_object
from .routes import Api, Request, route
from .shapes import check_instance_link, check_request, file_data, ordered


@route("GET", "/tenants", "List all tenants", answer="tenant[]")
def list_tenants(api: Api, request: Request) -> Reply:
    return list_of(api, "tenant")


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
        save(change, "tenant", key, ordered("tenant", body))
    return created("tenant", api, key)


@route("GET", "/tenants/{id}", "Retrieve a tenant", answer="tenant", etag=True)
def get_tenant(api: Api, request: Request, id: str) -> Reply:
    return one(api, request, "tenant", id)


@route(
    "PUT",
    "/tenants/{id}",
    "Update a tenant",
    request="tenant.update",
    answer="tenant",
    etag=True,
)
def update_tenant(api: Api, request: Request, id: str) -> Reply:
    return update(api, request, "tenant", id, json_object(request.environ))


@route(
    "DELETE",
    "/tenants/{id}",
    "Delete a tenant, and remove it from its users",
    status=204,
    etag=True,
)
def delete_tenant(api: Api, request: Request, id: str) -> Reply:
    with api.store.change(f"Delete tenant {id}") as change:
        tenant = found(api, "tenant", id)
        check_version(api, request, tenant)
        users = [u for u in api.store.all("user") if id in u.data.get("tenants", [])]
        for user in users:
            data = dropped(file_data(user), "tenants", id)
            save(change, "user", user.id, data, check=False)
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
    found(api, "tenant", id)
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
    tenant = found(api, "tenant", id)
    instance = tenant.data.get("instance")
    if instance is None:
        raise ObjectNotFound(f"tenant {id!r} is not on any instance")
    return one(api, request, "instance", instance)


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
    check_instance_link(body)
    instance = body["id"]
    with api.store.change(f"Add tenant {id} to instance {instance}") as change:
        tenant = found(api, "tenant", id)
        found(api, "instance", instance)
        data = file_data(tenant)
        if data.get("instance") != instance:
            if "instance" in data:
                change.message += f" (moved from {data['instance']})"
            data["instance"] = instance
            save(change, "tenant", id, data)
    return Reply(201, {"tenant": id, "instance": instance})


@route(
    "DELETE",
    "/tenants/{id}/instance",
    "Remove a tenant from its instance",
    status=204,
)
def unset_tenant_instance(api: Api, request: Request, id: str) -> Reply:
    with api.store.change(f"Remove tenant {id} from its instance") as change:
        tenant = found(api, "tenant", id)
        data = file_data(tenant)
        if "instance" not in data:
            raise ObjectNotFound(f"tenant {id!r} is not on any instance")
        change.message = f"Remove tenant {id} from instance {data['instance']}"
        del data["instance"]
        save(change, "tenant", id, data)
    return Reply(204)


@route(
    "GET",
    "/tenants/{id}/integrations",
    "List the integrations of a tenant (their ids)",
    answer="id[]",
)
def tenant_integrations(api: Api, request: Request, id: str) -> Reply:
    return Reply(200, list(found(api, "tenant", id).data.get("integrations", [])))


@route(
    "POST",
    "/tenants/{tid}/integrations/{id}",
    "Give a tenant an integration",
    status=201,
    answer="tenant-integration",
)
def add_tenant_integration(api: Api, request: Request, tid: str, id: str) -> Reply:
    with api.store.change(f"Give tenant {tid} integration {id}") as change:
        add_item(api, change, ("tenant", tid), "integrations", ("integration", id))
    return Reply(201, {"tenant": tid, "integration": id})


@route(
    "DELETE",
    "/tenants/{tid}/integrations/{id}",
    "Take an integration (and the tenant's params for it) from a tenant",
    status=204,
)
def remove_tenant_integration(api: Api, request: Request, tid: str, id: str) -> Reply:
    with api.store.change(f"Take integration {id} from tenant {tid}") as change:
        missing = f"tenant {tid!r} has no integration {id!r}"
        data = without_item(api, ("tenant", tid), "integrations", id, missing)
        params = data.get("integration-params", {})
        if id in params:
            del params[id]
            change.details.append(f"its params for {id} are removed too")
            if not params:
                del data["integration-params"]
        save(change, "tenant", tid, data)
    return Reply(204)
