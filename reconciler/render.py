"""From the platform state to what each node should hold.

For every node: the rendered configuration files (JSON, under `etc/`), the
process manager's files, and the processes with their argv and the files
they read. Rendering is pure: it reads the environment only for secrets
written as `{env: NAME}`, and touches no node.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import sys
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import schemas, templates
from .errors import Problem, StateError
from .references import secret_params
from .state import State, StateObject
from .supervisors import MANAGERS, definition_files

log = logging.getLogger(__name__)

SENSITIVE = "(sensitive)"
# Masked values carry a short tag keyed with this run's random key: a diff
# shows that a secret changed (the tags differ) without anything that could
# be checked against a guess once the run is over.
_TAG_KEY = os.urandom(32)


def _tagged(value: Any) -> str:
    digest = hmac.new(_TAG_KEY, json.dumps(value).encode(), hashlib.sha256)
    return f"(sensitive {digest.hexdigest()[:6]})"


# Keys whose values are secrets wherever they appear in a rendered file.
SECRET_KEYS = frozenset({"password", "password-hash"})


@dataclass(frozen=True)
class DesiredProcess:
    id: str
    service: str
    argv: tuple[str, ...]
    running: bool
    definitions: tuple[str, ...]
    reads: tuple[str, ...]


@dataclass
class DesiredNode:
    key: str
    node: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    processes: dict[str, DesiredProcess] = field(default_factory=dict)
    # integration id -> param names whose values must never be shown
    secret_params: dict[str, frozenset[str]] = field(default_factory=dict)
    # Files holding secret values: written readable by their owner only.
    private: set[str] = field(default_factory=set)
    # argv files -> the positions that hold a secret option's value
    secret_items: dict[str, frozenset[int]] = field(default_factory=dict)
    # Secret values themselves, to scrub from text we cannot parse (a
    # process's log in an error).
    secret_values: set[str] = field(default_factory=set)
    _hashes: dict[str, str] = field(default_factory=dict, repr=False)

    def sha(self, path: str) -> str:
        """The SHA-256 of one desired file, computed once."""
        digest = self._hashes.get(path)
        if digest is None:
            digest = self._hashes[path] = sha256(self.files[path])
        return digest

    @property
    def hashes(self) -> dict[str, str]:
        return {path: self.sha(path) for path in self.files}

    @property
    def root(self) -> str:
        return self.node["root"]

    @property
    def manager(self) -> str:
        return self.node["manager"]

    @property
    def enabled(self) -> bool:
        return self.node.get("status", True)

    def inputs(self, process_id: str) -> str:
        """A hash of everything a process was started from."""
        process = self.processes[process_id]
        digest = hashlib.sha256()
        for path in (*process.definitions, *process.reads):
            digest.update(path.encode() + b"\0" + self.sha(path).encode())
        return digest.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def node_python(node: dict[str, Any]) -> str:
    """The interpreter the agent and `{python}` use on a node."""
    if "python" in node:
        return node["python"]
    return sys.executable if node.get("connection") == "local" else "python3"


@dataclass
class _Shared:
    """What every node of one instance holds alike, rendered once."""

    files: dict[str, bytes] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    private: set[str] = field(default_factory=set)
    secret_values: set[str] = field(default_factory=set)


class _Renderer:
    def __init__(self, state: State, environ: dict[str, str] | None):
        self.state = state
        self.environ = environ
        self.shared: dict[str, _Shared] = {}
        self.secret_params = {
            integration.id: frozenset(secret_params(integration.data))
            for integration in state.of("integration").values()
        }
        self.problems: list[Problem] = []

    def secret(self, owner: StateObject, path: tuple, value: Any) -> Any:
        """A literal, or the value of the environment variable it names."""
        if not isinstance(value, dict):
            return value
        name = value["env"]
        if self.environ is None:
            return f"(from environment variable {name})"
        if not self.environ.get(name):
            self.problems.append(
                Problem(
                    owner.file,
                    owner.doc.line_of(path),
                    schemas.json_path(path),
                    f"environment variable {name} is not set or empty; export it "
                    "before running reconcile",
                )
            )
            return ""
        return self.environ[name]

    def tenant(self, tenant: StateObject) -> dict[str, Any]:
        data = {k: v for k, v in tenant.data.items() if k != "integration-params"}
        params = {}
        for integration, values in tenant.data.get("integration-params", {}).items():
            params[integration] = {
                name: self.secret(tenant, ("integration-params", integration, name), v)
                for name, v in values.items()
            }
        if params:
            data["integration-params"] = params
        return data

    def instance_files(self, instance: str) -> _Shared:
        """The files every node of an instance shares, rendered once."""
        if instance in self.shared:
            return self.shared[instance]
        state = self.state
        files: dict[str, Any] = {
            "etc/instance.json": state.of("instance")[instance].data
        }
        tenants = sorted(
            (
                t
                for t in state.of("tenant").values()
                if t.data.get("instance") == instance
            ),
            key=lambda t: t.id,
        )
        tenant_ids = {t.id for t in tenants}
        integrations: set[str] = set()
        shared = _Shared()
        for tenant in tenants:
            rendered = self.tenant(tenant)
            files[f"etc/tenants/{tenant.id}.json"] = rendered
            integrations.update(tenant.data.get("integrations", []))
            for integration, params in rendered.get("integration-params", {}).items():
                secret = self.secret_params.get(integration, frozenset())
                shared.secret_values.update(
                    str(value) for name, value in params.items() if name in secret
                )
                shared.private.add(f"etc/tenants/{tenant.id}.json")
        for integration in sorted(integrations):
            definition = state.of("integration")[integration].data
            files[f"etc/integrations/{integration}.json"] = definition

        users = []
        for user in sorted(state.of("user").values(), key=lambda u: u.id):
            common = [t for t in user.data.get("tenants", []) if t in tenant_ids]
            if common:
                users.append(
                    {k: v for k, v in user.data.items() if k != "tenants"}
                    | {"tenants": common}
                )
                if "password-hash" in user.data:
                    shared.secret_values.add(user.data["password-hash"])
        files["etc/users.json"] = users
        shared.private.add("etc/users.json")

        shared.files = {path: to_json(value) for path, value in files.items()}
        shared.hashes = {path: sha256(data) for path, data in shared.files.items()}
        self.shared[instance] = shared
        return shared

    def node(self, node: StateObject) -> DesiredNode:
        state = self.state
        instance = node.instance
        desired = DesiredNode(key=node.key, node=dict(node.data))
        desired.node.setdefault("python", node_python(node.data))
        shared = self.instance_files(instance)
        desired.files = dict(shared.files)
        desired._hashes.update(shared.hashes)
        desired.private = set(shared.private)
        desired.secret_values = set(shared.secret_values)
        # Every definition, used here or not: a node may still hold params of
        # an integration this state no longer gives it.
        desired.secret_params = self.secret_params

        processes = sorted(
            (
                p
                for p in state.of("process").values()
                if p.data["instance"] == instance and p.data["node"] == node.id
            ),
            key=lambda p: p.id,
        )
        for process in processes:
            service = state.of("service")[f"{instance}/{process.data['service']}"]
            path = f"etc/services/{service.id}.json"
            desired.files[path] = to_json(
                {
                    key: service.data[key]
                    for key in ("id", "name", "type", "log-level", "options")
                    if key in service.data
                }
            )
            if SECRET_KEYS & set(service.data.get("options", {})):
                desired.private.add(path)

        for path, text in MANAGERS[desired.manager].base_files(desired.root).items():
            desired.files[path] = text.encode()
        for process in processes:
            self.process(desired, process)
        return desired

    def process(self, desired: DesiredNode, process: StateObject) -> None:
        data = process.data
        service = self.state.of("service")[f"{data['instance']}/{data['service']}"]
        service_type = self.state.of("service-type")[service.data["type"]]
        root = desired.root
        values = {
            "python": desired.node["python"],
            "root": root,
            "etc": f"{root}/etc",
            "config": f"{root}/etc/services/{service.id}.json",
            "service": service.id,
            "process": process.id,
            "instance": data["instance"],
            "node": data["node"],
            "address": desired.node.get("ip-address", "127.0.0.1"),
        }
        for name, value in service.data.get("options", {}).items():
            try:
                values[templates.OPTION_PREFIX + name] = templates.option_text(value)
            except templates.TemplateError:
                continue  # an option of another shape cannot be on the argv
        argv = []
        for i, template in enumerate(service_type.data["command"]):
            try:
                argv.append(templates.expand(template, values))
            except templates.TemplateError as error:
                self.problems.append(
                    Problem(
                        service.file,
                        service.line("options"),
                        "$.options",
                        f"{error} (service type {service_type.id!r}, command[{i}])",
                    )
                )
                return
        reads = _matching(
            (
                templates.expand(t, {"service": service.id})
                for t in service_type.data.get("reads", [])
            ),
            desired.files,
        )
        if any("\0" in arg for arg in argv):
            self.problems.append(
                Problem(
                    service.file,
                    service.line("options"),
                    "$.options",
                    "a value on the command line holds a NUL character, which no "
                    "argv can carry",
                )
            )
            return
        definitions = definition_files(
            desired.manager,
            root,
            desired.node["python"],
            process.id,
            argv,
            data["running"],
        )
        for path, text in definitions.items():
            desired.files[path] = text.encode()
        secret_items = frozenset(
            i
            for i, template in enumerate(service_type.data["command"])
            if any(
                name.removeprefix(templates.OPTION_PREFIX) in SECRET_KEYS
                for name in templates.names(template)
                if name.startswith(templates.OPTION_PREFIX)
            )
        )
        if secret_items:
            desired.secret_values.update(argv[i] for i in secret_items)
            argv_path = next(p for p in definitions if p.endswith(".argv.json"))
            desired.secret_items[argv_path] = secret_items
            desired.private.add(argv_path)
        desired.processes[process.id] = DesiredProcess(
            id=process.id,
            service=service.id,
            argv=tuple(argv),
            running=data["running"],
            definitions=tuple(sorted(definitions)),
            reads=reads,
        )


def _glob(pattern: str) -> re.Pattern[str]:
    """`*` and `?` within one path segment, as the service-type docs say."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts))


def _matching(patterns: Iterable[str], files: dict[str, bytes]) -> tuple[str, ...]:
    found = set()
    for pattern in patterns:
        regex = _glob(pattern)
        found.update(path for path in files if regex.fullmatch(path))
    return tuple(sorted(found))


def render(
    state: State,
    environ: dict[str, str] | None = None,
    secrets: bool = True,
    only: Collection[str] | None = None,
) -> dict[str, DesiredNode]:
    """Desired files and processes of every node (or of `only`), keyed `IN1/ND1`.

    Secrets written as `{env: NAME}` come from `environ` (default: this
    process's environment). With `secrets=False` they are left unresolved,
    as `validate` does: a state can be checked where its secrets are not.
    """
    if not secrets:
        environ = None
    elif environ is None:
        environ = dict(os.environ)
    renderer = _Renderer(state, environ)
    nodes = {
        key: renderer.node(node)
        for key, node in sorted(state.of("node").items())
        if only is None or key in only
    }
    if renderer.problems:
        raise StateError(renderer.problems)
    return nodes


def masked(desired: DesiredNode, path: str, content: str) -> str:
    """A rendered file's text with every secret value replaced.

    Text that is not the JSON we render is withheld whole: it may hold a
    secret we cannot locate.
    """
    if not path.endswith(".json"):
        return content
    try:
        value = json.loads(content)
    except ValueError:
        return "(content withheld: not valid JSON, it may hold secrets)\n"
    secret_items = desired.secret_items.get(path, frozenset())
    if secret_items and isinstance(value, list):
        value = [_tagged(v) if i in secret_items else v for i, v in enumerate(value)]
    return to_json(_mask(value, desired.secret_params, ())).decode()


def _mask(value: Any, secrets: dict[str, frozenset[str]], path: tuple) -> Any:
    if isinstance(value, list):
        return [_mask(item, secrets, path) for item in value]
    if not isinstance(value, dict):
        return value
    result = {}
    for key, item in value.items():
        # Params of an integration we no longer know are all treated as secret.
        inside_params = len(path) == 2 and path[0] == "integration-params"
        secret = key in SECRET_KEYS or (
            inside_params and key in secrets.get(path[1], {key})
        )
        result[key] = _tagged(item) if secret else _mask(item, secrets, path + (key,))
    return result


def scrubbed(desired: DesiredNode, text: str) -> str:
    """Text from a node (a log, an error) with every known secret replaced."""
    for value in sorted(desired.secret_values, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, SENSITIVE)
    return text


def bare(node: StateObject) -> DesiredNode:
    """A node that should run nothing: only its process manager's own files.

    Applying it stops and removes every process reconcile started there and
    deletes the configuration it wrote, as before the node leaves the state.
    """
    desired = DesiredNode(key=node.key, node=dict(node.data))
    desired.node.setdefault("python", node_python(node.data))
    for path, text in MANAGERS[desired.manager].base_files(desired.root).items():
        desired.files[path] = text.encode()
    return desired
