"""Cross-object checks: every id an object names must exist, in the right place.

Runs on the objects that passed their schema; each broken reference becomes a
problem located at the field that holds it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from . import schemas, templates
from .errors import Problem
from .yamlio import JsonPath

if TYPE_CHECKING:
    from .state import State, StateObject


def _at(obj: StateObject, path: JsonPath, message: str) -> Problem:
    return Problem(obj.file, obj.doc.line_of(path), schemas.json_path(path), message)


def _nodes(state: State) -> Iterator[Problem]:
    """Two nodes with one root on one machine would undo each other's work."""
    seen: dict[tuple, StateObject] = {}
    for node in sorted(state.of("node").values(), key=lambda n: n.file):
        data = node.data
        if data.get("connection") == "local":
            where: tuple = ("local", data["root"])
        else:
            where = ("ssh", data.get("ip-address"), data.get("port"), data["root"])
        if where in seen:
            yield _at(
                node,
                ("root",),
                f"{seen[where].file} already manages root {data['root']!r} on the "
                "same machine; give each node its own root",
            )
        seen.setdefault(where, node)


def check_references(state: State) -> list[Problem]:
    problems: list[Problem] = []
    for check in (
        _nodes,
        _tenants,
        _users,
        _integrations,
        _services,
        _service_types,
        _processes,
    ):
        problems.extend(check(state))
    return problems


def _missing(kind: str, key: str) -> str:
    where = {
        "instance": f"instances/{key}.yaml",
        "tenant": f"tenants/{key}.yaml",
        "integration": f"integrations/{key}.yaml",
        "service-type": f"service-types/{key}.yaml",
    }.get(kind)
    hint = f" (no {where})" if where else ""
    return f"{kind} {key!r} does not exist{hint}"


def _tenants(state: State) -> Iterator[Problem]:
    for tenant in state.of("tenant").values():
        data = tenant.data
        instance = data.get("instance")
        if instance is not None and not state.exists("instance", instance):
            yield _at(tenant, ("instance",), _missing("instance", instance))
        used = data.get("integrations", [])
        for i, integration in enumerate(used):
            if not state.exists("integration", integration):
                yield _at(
                    tenant, ("integrations", i), _missing("integration", integration)
                )
        for integration, params in data.get("integration-params", {}).items():
            path: JsonPath = ("integration-params", integration)
            if integration not in used:
                yield _at(
                    tenant,
                    path,
                    f"integration {integration!r} is not in this tenant's "
                    "integrations; add it there or remove its params",
                )
                continue
            definition = state.get("integration", integration)
            if definition is None:
                continue
            declared = declared_params(definition.data)
            for name in params:
                if name not in declared:
                    known = ", ".join(sorted(declared)) or "none"
                    yield _at(
                        tenant,
                        path + (name,),
                        f"integration {integration!r} has no param {name!r}; "
                        f"its params: {known}",
                    )


def declared_params(integration: dict) -> set[str]:
    """Every param name an integration definition mentions."""
    names = {field["param"] for field in integration.get("schema", [])}
    for part in ("endpoint", "listener"):
        section = integration.get(part) or {}
        names.update(section.get("params", []))
        names.update(section.get("static-params", []))
        names.update(field["param"] for field in section.get("schema", []))
    return names


def secret_params(integration: dict) -> set[str]:
    """Params whose values are secrets: typed password, or redacted."""
    names = {
        field["param"]
        for part in (integration, integration.get("listener") or {})
        for field in part.get("schema", [])
        if field.get("type") == "password"
    }
    names.update((integration.get("endpoint") or {}).get("redact", []))
    return names


def _users(state: State) -> Iterator[Problem]:
    for user in state.of("user").values():
        for i, tenant in enumerate(user.data.get("tenants", [])):
            if not state.exists("tenant", tenant):
                yield _at(user, ("tenants", i), _missing("tenant", tenant))


def _integrations(state: State) -> Iterator[Problem]:
    for integration in state.of("integration").values():
        kind = integration.data.get("type", integration.id)
        if kind != integration.id:
            yield _at(
                integration,
                ("type",),
                f"type {kind!r} must equal the integration's id {integration.id!r}",
            )
        # A misspelt name here would leave the real param unredacted.
        declared = declared_params(integration.data)
        redacted = (integration.data.get("endpoint") or {}).get("redact", [])
        for i, name in enumerate(redacted):
            if name not in declared:
                yield _at(
                    integration,
                    ("endpoint", "redact", i),
                    f"redact names {name!r}, which is not one of its params: "
                    + (", ".join(sorted(declared)) or "it has none"),
                )


def _services(state: State) -> Iterator[Problem]:
    for service in state.of("service").values():
        options = service.data.get("options", {})
        downstream = options.get("downstream")
        if downstream is not None:
            if not state.exists("service", f"{service.instance}/{downstream}"):
                yield _at(
                    service,
                    ("options", "downstream"),
                    f"service {downstream!r} does not exist in instance "
                    f"{service.instance} (no instances/{service.instance}/services/"
                    f"{downstream}.yaml)",
                )
        kind = service.data["type"]
        service_type = state.get("service-type", kind)
        if service_type is None:
            if not state.exists("service-type", kind):
                yield _at(service, ("type",), _missing("service-type", kind))
            continue
        options_schema = service_type.data.get("options", {})
        if not _valid_schema(options_schema):
            continue  # reported on the service type itself
        for path, message in schemas.errors(
            options_schema, options, service.doc, ("options",)
        ):
            yield _at(service, path, f"{message} (required by service type {kind!r})")
        for name in _option_names(service_type):
            if name not in options:
                yield _at(
                    service,
                    ("options",),
                    f"missing option {name!r}: the command of service type "
                    f"{kind!r} ({service_type.file}) uses {{options.{name}}}",
                )


def _valid_schema(schema: dict) -> bool:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return False
    return True


def _option_names(service_type: StateObject) -> list[str]:
    found = []
    for template in service_type.data["command"]:
        try:
            used = templates.names(template)
        except templates.TemplateError:
            continue  # reported on the service type itself
        for name in used:
            if name.startswith(templates.OPTION_PREFIX):
                found.append(name[len(templates.OPTION_PREFIX) :])
    return found


def _service_types(state: State) -> Iterator[Problem]:
    for service_type in state.of("service-type").values():
        fields = (
            ("command", templates.COMMAND_NAMES),
            ("reads", templates.READS_NAMES),
        )
        for field_name, allowed in fields:
            for i, template in enumerate(service_type.data.get(field_name, [])):
                path = (field_name, i)
                try:
                    unknown = templates.unknown_names(template, allowed)
                except templates.TemplateError as error:
                    yield _at(service_type, path, str(error))
                    continue
                if field_name == "reads":
                    unknown += [n for n in templates.names(template) if "." in n]
                for name in unknown:
                    names = ", ".join(sorted(allowed))
                    yield _at(
                        service_type,
                        path,
                        f"unknown placeholder {{{name}}}; allowed here: {names}"
                        + (", options.NAME" if field_name == "command" else ""),
                    )
        try:
            Draft202012Validator.check_schema(service_type.data.get("options", {}))
        except SchemaError as error:
            yield _at(
                service_type, ("options",), f"not a valid JSON Schema: {error.message}"
            )


def _processes(state: State) -> Iterator[Problem]:
    placed: dict[tuple[str, str, str], StateObject] = {}
    for process in sorted(state.of("process").values(), key=lambda p: p.file):
        data = process.data
        where = (data["instance"], data["service"], data["node"])
        if where in placed:
            yield _at(
                process,
                ("node",),
                f"service {data['service']} already has a process on node "
                f"{data['node']} ({placed[where].file}); its processes would "
                "share options such as ports",
            )
        placed.setdefault(where, process)
    for process in state.of("process").values():
        data = process.data
        instance = data["instance"]
        if not state.exists("instance", instance):
            yield _at(process, ("instance",), _missing("instance", instance))
            continue
        for kind, folder in (("service", "services"), ("node", "nodes")):
            key = f"{instance}/{data[kind]}"
            if not state.exists(kind, key):
                elsewhere = [
                    obj.instance
                    for obj in state.of(kind).values()
                    if obj.id == data[kind]
                ]
                hint = (
                    f"; it belongs to instance {elsewhere[0]}, not {instance}"
                    if elsewhere
                    else f" (no instances/{instance}/{folder}/{data[kind]}.yaml)"
                )
                yield _at(
                    process,
                    (kind,),
                    f"{kind} {data[kind]!r} does not exist in instance "
                    f"{instance}{hint}",
                )
