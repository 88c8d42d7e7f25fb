"""Steps the resource modules share: look up, version checks, save, update.

Handlers read through the store's index and write through `Store.change`,
which holds the store lock: everything a write checks (the object's current
version, the objects it names) is read under that lock, from disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from .. import schemas
from ..errors import BrokenObject, InvalidObject, ObjectNotFound, StaleObject
from ..references import check_references
from ..state import State, StateObject
from ..store import Change, Store
from ..yamlio import Document
from .http import PREFIX, Reply
from .routes import Api, Request
from .shapes import SHAPES, answer, check_object, check_request, file_data

# Checks and derived fields of one kind's update: (api, key, body, new data).
Prepare = Callable[[Api, str, dict[str, Any], dict[str, Any]], None]


def user_key(email: str) -> str:
    """Emails are ids in lower case: any letter case finds the same user.

    Only ASCII is lowered: stored emails are ASCII, and str.lower() would
    turn the Kelvin sign into a 'k' and find a user by a spelling that a
    create refuses.
    """
    return email.lower() if email.isascii() else email


# The longest id an error message quotes whole.
_SHOWN_ID = 100


def found(api: Api, kind: str, key: str) -> StateObject:
    """The object, or ObjectNotFound naming it."""
    return tagged(api, kind, key)[0]


def tagged(api: Api, kind: str, key: str) -> tuple[StateObject, str]:
    """The object and its ETag, or ObjectNotFound naming it."""
    try:
        return api.store.get_tagged(kind, key)
    except ObjectNotFound:
        shown = key if len(key) <= _SHOWN_ID else key[: _SHOWN_ID - 3] + "..."
        raise ObjectNotFound(f"{kind} {shown!r} does not exist") from None


def one(api: Api, request: Request, kind: str, key: str) -> Reply:
    obj, etag = tagged(api, kind, key)
    # If-None-Match compares weakly: W/"x" matches "x"; "*" matches any version.
    unwanted = [tag.removeprefix("W/") for tag in tags(request, "If-None-Match")]
    if etag and (etag in unwanted or "*" in unwanted):
        return Reply(304, None, {"ETag": etag})
    return Reply(200, answer(obj), {"ETag": etag})


def tags(request: Request, header: str) -> list[str]:
    value = request.get_header(header)
    return [tag.strip() for tag in value.split(",")] if value else []


def check_version(api: Api, request: Request, obj: StateObject) -> None:
    """Honour If-Match: refuse to change an object that changed since.

    The comparison is strong, so a weak tag (W/"...") never matches. An
    `If-None-Match: *` (change only what does not exist) is always refused.
    """
    if "*" in tags(request, "If-None-Match"):
        raise StaleObject(
            f"{obj.kind} {obj.key!r} exists, and If-None-Match: * asks that it not"
        )
    wanted = tags(request, "If-Match")
    if not wanted or "*" in wanted:
        return
    current = api.store.etag(obj.kind, obj.key)
    if current not in wanted:
        raise StaleObject(
            f"{obj.kind} {obj.key!r} has changed since the version in If-Match; "
            f"its current ETag is {current}: read it again, then retry"
        )


def refuse_changes(kind: str, body: dict[str, Any], obj: StateObject) -> None:
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


def save(
    change: Change, kind: str, key: str, data: dict[str, Any], check: bool = True
) -> None:
    """Write one object; with `check`, only if it and its references are valid.

    Cleanups (a tenant taken from its users on delete) pass `check=False`:
    they only ever remove a reference, and must not fail on another one.
    """
    if check:
        check_object(kind, key, data)
        check_links(change.store, kind, key, data)
    change.put(kind, key, data, SHAPES[kind].order if kind in SHAPES else list(data))


class _Around(State):
    """One object to be written, and the store for every object it names."""

    def __init__(self, store: Store, obj: StateObject):
        super().__init__(root=store.root)
        self.store = store
        self.add(obj)

    def get(self, kind: str, key: str) -> StateObject | None:
        own = super().get(kind, key)
        if own is not None:
            return own
        try:
            return self.store.get(kind, key)
        except (ObjectNotFound, BrokenObject):
            return None

    def exists(self, kind: str, key: str) -> bool:
        return key in self.objects[kind] or self.store.exists(kind, key)


def check_links(store: Store, kind: str, key: str, data: dict[str, Any]) -> None:
    """Refuse an object that names what does not exist, as `validate` would."""
    whole = schemas.with_defaults(kind, {schemas.ID_FIELD[kind]: key, **data})
    obj = StateObject(kind, key, whole, str(store.path(kind, key)), Document(whole))
    problems = check_references(_Around(store, obj))
    if problems:
        raise InvalidObject([(p.path, p.message) for p in problems])


def created(obj_kind: str, api: Api, key: str) -> Reply:
    """201 with the new object, its ETag, and where to find it."""
    obj = api.store.get(obj_kind, key)
    headers = {
        "ETag": api.store.etag(obj_kind, key),
        "Location": f"{PREFIX}/{obj_kind}s/{quote(key, safe='@')}",
    }
    return Reply(201, answer(obj), headers)


def updated(obj_kind: str, api: Api, key: str) -> Reply:
    obj = api.store.get(obj_kind, key)
    return Reply(200, answer(obj), {"ETag": api.store.etag(obj_kind, key)})


def update(
    api: Api,
    request: Request,
    kind: str,
    key: str,
    body: dict[str, Any],
    prepare: Prepare | None = None,
) -> Reply:
    """A partial update with `body`: fields not sent keep their values.

    A field sent as null is removed, if its kind can do without it. A field
    sent is replaced whole: an object value is not merged with the old one.
    `prepare`, given the body and the object's new data under the store
    lock, checks what the kind's schema cannot and adds derived fields.
    """
    cleared = clearable(kind, body)
    body = {name: value for name, value in body.items() if name not in cleared}
    check_request(kind, "update", body)
    with api.store.change(f"Update {kind} {key}") as change:
        obj = found(api, kind, key)
        check_version(api, request, obj)
        refuse_changes(kind, body, obj)
        data = file_data(obj)
        for name in SHAPES[kind].update:
            if name in body and name != "password":
                data[name] = body[name]
        for name in cleared:
            data.pop(name, None)
        if prepare is not None:
            prepare(api, key, body, data)
        fields = sorted(name for name in body if name in SHAPES[kind].update)
        fields += sorted(f"{name} removed" for name in cleared)
        change.message += f": {', '.join(fields)}" if fields else ""
        save(change, kind, key, data)
    return updated(kind, api, key)


def clearable(kind: str, body: dict[str, Any]) -> list[str]:
    """The fields a PUT sends as null, to remove; InvalidObject if one cannot be.

    Fields outside the update's shape are left to check_request to name.
    """
    nulls = [n for n, v in body.items() if v is None and n in SHAPES[kind].update]
    kept = [name for name in nulls if name not in SHAPES[kind].clearable]
    if kept:
        raise InvalidObject(
            [
                (f"$.{name}", f"{name} cannot be removed, only given a new value")
                for name in kept
            ]
        )
    return nulls


def add_item(
    api: Api, change: Change, owner: tuple[str, str], field: str, item: tuple[str, str]
) -> None:
    """Add an existing object's id to a list field of another, once.

    `owner` and `item` are (kind, key); both must exist.
    """
    obj = found(api, *owner)
    found(api, *item)
    data = file_data(obj)
    items = data.setdefault(field, [])
    if item[1] not in items:
        items.append(item[1])
        save(change, *owner, data)


def without_item(
    api: Api, owner: tuple[str, str], field: str, item: str, missing: str
) -> dict[str, Any]:
    """The owner's file data with `item` taken from a list field, not yet saved.

    ObjectNotFound with the message `missing` when the list does not hold it.
    A list left empty is removed, as if never written.
    """
    data = file_data(found(api, *owner))
    if item not in data.get(field, []):
        raise ObjectNotFound(missing)
    return dropped(data, field, item)


def dropped(data: dict[str, Any], field: str, item: str) -> dict[str, Any]:
    """`data` without `item` in its list `field`; a list left empty goes too."""
    data[field] = [i for i in data.get(field, []) if i != item]
    if not data[field]:
        del data[field]
    return data


def list_of(api: Api, kind: str) -> Reply:
    """Every object of a kind, as the API shows it."""
    return Reply(200, [answer(obj) for obj in api.store.all(kind)])
