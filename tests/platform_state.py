"""A platform state on real sshd nodes, shared by the end-to-end tests.

IN1 has nodes ND1 and ND2, IN2 has ND1; each node is one of the fixture's
sshd servers. Both instances have service SV1 of type `web`, a Python HTTP
server that reads the tenant files. Processes and tenants are the tests' own.
"""

from __future__ import annotations

import sys
import xmlrpc.client
from pathlib import Path

import yaml
from supervisor.xmlrpc import SupervisorTransport

WEB_TYPE = {
    "command": [
        "{python}",
        "-m",
        "http.server",
        "{options.port}",
        "--bind",
        "{address}",
        "--directory",
        "{etc}",
    ],
    "reads": ["etc/tenants/*.json", "etc/services/{service}.json"],
}


def write(root: Path, relative: str, data: dict) -> None:
    """One object's file, as a person would write it."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def node_yaml(node, name: str) -> dict:
    return {
        "name": name,
        "ip-address": node.address,
        "port": node.port,
        "username": node.user,
        "root": node.root,
        "python": sys.executable,
    }


def two_instances(state: Path, nodes: list, web_port: int) -> None:
    """IN1 on nodes[0] and nodes[1], IN2 on nodes[2], each with a web SV1."""
    write(state, "instances/IN1.yaml", {"name": "One", "zk": "zk:2181", "redis": "r"})
    write(state, "instances/IN2.yaml", {"name": "Two", "zk": "zk:2181", "redis": "r"})
    write(state, "instances/IN1/nodes/ND1.yaml", node_yaml(nodes[0], "a"))
    write(state, "instances/IN1/nodes/ND2.yaml", node_yaml(nodes[1], "b"))
    write(state, "instances/IN2/nodes/ND1.yaml", node_yaml(nodes[2], "c"))
    write(state, "service-types/web.yaml", WEB_TYPE)
    for instance in ("IN1", "IN2"):
        write(
            state,
            f"instances/{instance}/services/SV1.yaml",
            {"name": "web", "type": "web", "options": {"port": web_port}},
        )


def supervisor(root: str) -> xmlrpc.client.ServerProxy:
    """The node root's supervisord, over its socket."""
    transport = SupervisorTransport(None, None, f"unix://{root}/run/supervisor.sock")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def pids(root: str) -> dict[str, int]:
    """The pid of every RUNNING program of the root's supervisord, by name."""
    info = supervisor(root).supervisor.getAllProcessInfo()
    return {p["name"]: p["pid"] for p in info if p["statename"] == "RUNNING"}
