"""Instances: list, create (ids IN<n>, never reused), read, update, delete.

Deleting an instance stops its processes on its nodes first; only when every
node has answered is anything removed from the state.
"""

from __future__ import annotations

import logging
import re

from ..apply import FAILED, reconcile
from ..errors import ConnectionFailed, ReconcileError, WriteFailed
from ..render import bare, render
from ..state import StateObject
from ..store import Change
from .crud import check_version, created, found, list_of, one, save, update
from .http import Reply, json_object
from .routes import Api, Request, route
from .shapes import answer, check_request, file_data, ordered

log = logging.getLogger(__name__)


def _highest_used(api: Api) -> int:
    """The highest n of any IN<n> so far: recorded ones, and files there now."""
    used = api.store.read_ids().get("instance", 0)
    for obj in api.store.all_keys("instance"):
        match = re.fullmatch(r"IN([0-9]+)", obj)
        if match:
            used = max(used, int(match.group(1)))
    return used


def _record_used(api: Api, change: Change, number: int) -> None:
    """Remember that IN<number> was used, so that no create hands it out again."""
    ids = api.store.read_ids()
    if ids.get("instance", 0) < number:
        change.put_ids({**ids, "instance": number})


@route("GET", "/instances", "List all instances", answer="instance[]")
def list_instances(api: Api, request: Request) -> Reply:
    return list_of(api, "instance")


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
        number = _highest_used(api) + 1
        key = f"IN{number}"
        change.message = f"Create instance {key}"
        data = ordered("instance", {"id": key, **body})
        save(change, "instance", key, data)
        _record_used(api, change, number)
    return created("instance", api, key)


@route("GET", "/instances/{id}", "Retrieve an instance", answer="instance", etag=True)
def get_instance(api: Api, request: Request, id: str) -> Reply:
    return one(api, request, "instance", id)


@route(
    "PUT",
    "/instances/{id}",
    "Update an instance",
    request="instance.update",
    answer="instance",
    etag=True,
)
def update_instance(api: Api, request: Request, id: str) -> Reply:
    return update(api, request, "instance", id, json_object(request.environ))


@route(
    "DELETE",
    "/instances/{id}",
    "Delete an instance: stop its processes, then remove it, its nodes, "
    "services and processes, and detach its tenants",
    status=204,
    etag=True,
)
def delete_instance(api: Api, request: Request, id: str) -> Reply:
    stopped: list[str] = []
    try:
        with api.store.change(f"Delete instance {id}") as change:
            instance = found(api, "instance", id)
            check_version(api, request, instance)
            nodes = [n for n in api.store.all("node") if n.instance == id]
            services = [s for s in api.store.all("service") if s.instance == id]
            processes = [
                p for p in api.store.all("process") if p.data.get("instance") == id
            ]
            stopped = _stop_nodes(api, id, nodes)
            # Made by hand, or before the record existed: recorded now.
            _record_used(api, change, _highest_used(api))

            tenants = [
                t for t in api.store.all("tenant") if t.data.get("instance") == id
            ]
            for tenant in tenants:
                data = file_data(tenant)
                del data["instance"]
                save(change, "tenant", tenant.id, data, check=False)
            for obj in [*processes, *services, *nodes, instance]:
                change.remove(obj.kind, obj.key)
            for what, objs in [
                ("detached tenants", tenants),
                ("removed nodes", nodes),
                ("removed services", services),
                ("removed processes", processes),
            ]:
                if objs:
                    change.details.append(f"{what}: {', '.join(o.id for o in objs)}")
    except Exception as error:
        if stopped:
            _start_again(api, id, stopped, error)
        raise
    return Reply(204)


def _stop_nodes(api: Api, instance: str, nodes: list[StateObject]) -> list[str]:
    """Stop every process reconcile runs on these nodes, or change nothing.

    All nodes are contacted first; only when every one answered are their
    processes stopped, so that an unreachable node leaves everything as it
    was. Returns the keys of the nodes where something was stopped.
    """
    desired = [bare(node) for node in nodes]
    results = reconcile(desired, api.options, apply=False, parallel=api.parallel)
    _refuse_failures(results, f"instance {instance} was not deleted: cannot reach")
    busy = {r.key for r in results if r.plan is not None and r.plan.changed}
    todo = [d for d in desired if d.key in busy]
    results = reconcile(todo, api.options, apply=True, parallel=api.parallel)
    _refuse_failures(
        results,
        f"instance {instance} was not deleted: stopping its processes failed on",
    )
    for result in results:
        log.info("%s: processes stopped and removed", result.key)
    return [d.key for d in todo]


def _refuse_failures(results: list, message: str) -> None:
    """ConnectionFailed with `message` and each failed node's reason, if any."""
    failed = [r for r in results if r.status == FAILED]
    if failed:
        reasons = "; ".join(f"{r.key}: {r.error}" for r in failed)
        raise ConnectionFailed(f"{message} {reasons}")


def _start_again(api: Api, instance: str, keys: list[str], error: Exception) -> None:
    """After a delete failed past the stop, apply the state as it still is.

    The state was rolled back, so the stopped nodes are brought back to it;
    the error says whether that worked, and raises as a failed write.
    """
    log.warning("deleting %s failed after its processes stopped: %s", instance, error)
    if not isinstance(error, ReconcileError):
        log.error("unexpected failure", exc_info=error)
        error = WriteFailed("an unexpected error (the server's log has it)")
    try:
        desired = render(api.store.snapshot(), only=keys)
        results = reconcile(
            desired.values(), api.options, apply=True, parallel=api.parallel
        )
        reasons = "; ".join(f"{r.key}: {r.error}" for r in results if r.error)
    except ReconcileError as again:
        reasons = str(again)
    outcome = (
        f"starting them again failed ({reasons}); run reconcile apply"
        if reasons
        else "they were started again"
    )
    raise WriteFailed(
        f"instance {instance} was not deleted: {error}; its processes had been "
        f"stopped on {', '.join(keys)}, and {outcome}"
    ) from None


@route(
    "GET",
    "/instances/{id}/tenants",
    "List the tenants of an instance",
    answer="tenant[]",
)
def instance_tenants(api: Api, request: Request, id: str) -> Reply:
    found(api, "instance", id)
    tenants = api.store.all("tenant")
    return Reply(200, [answer(t) for t in tenants if t.data.get("instance") == id])
