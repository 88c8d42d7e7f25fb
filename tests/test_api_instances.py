"""Deleting an instance over the API stops its processes on real SSH nodes first."""

from __future__ import annotations

import sys
import xmlrpc.client
from pathlib import Path

import pytest
import yaml
from api_server import git, running_server, tree
from supervisor.xmlrpc import SupervisorTransport

from reconciler.cli import main

WEB = "3f1c1d0e-7d4a-4c55-9a53-1b0c2b9d5e01"
WEB2 = "3f1c1d0e-7d4a-4c55-9a53-1b0c2b9d5e02"
OTHER = "3f1c1d0e-7d4a-4c55-9a53-1b0c2b9d5e03"


def write(root: Path, relative: str, data: dict) -> None:
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


@pytest.fixture
def platform(ssh_nodes, tmp_path):
    """IN1 on two SSH nodes, IN2 on a third; one web process on each node."""
    nodes = ssh_nodes(3)
    state = tmp_path / "state"
    write(state, "instances/IN1.yaml", {"name": "One", "zk": "zk:2181", "redis": "r"})
    write(state, "instances/IN2.yaml", {"name": "Two", "zk": "zk:2181", "redis": "r"})
    write(state, "instances/IN1/nodes/ND1.yaml", node_yaml(nodes[0], "a"))
    write(state, "instances/IN1/nodes/ND2.yaml", node_yaml(nodes[1], "b"))
    write(state, "instances/IN2/nodes/ND1.yaml", node_yaml(nodes[2], "c"))
    write(
        state,
        "service-types/web.yaml",
        {
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
        },
    )
    for instance in ("IN1", "IN2"):
        write(
            state,
            f"instances/{instance}/services/SV1.yaml",
            {"name": "web", "type": "web", "options": {"port": 18711}},
        )
    for pid, instance, node in ((WEB, "IN1", "ND1"), (WEB2, "IN1", "ND2")):
        write(
            state,
            f"processes/{pid}.yaml",
            {"instance": instance, "service": "SV1", "node": node},
        )
    write(
        state,
        f"processes/{OTHER}.yaml",
        {"instance": "IN2", "service": "SV1", "node": "ND1"},
    )
    write(state, "tenants/t1.yaml", {"name": "T1", "instance": "IN1"})
    write(state, "tenants/t2.yaml", {"name": "T2", "instance": "IN2"})
    ssh = ["--identity", nodes[0].identity, "--known-hosts", nodes[0].known_hosts]
    assert main(["apply", str(state), *ssh]) == 0
    yield state, nodes, ssh
    ssh_nodes.remove(nodes)


def running(root: str) -> dict[str, int]:
    transport = SupervisorTransport(None, None, f"unix://{root}/run/supervisor.sock")
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    info = proxy.supervisor.getAllProcessInfo()
    return {p["name"]: p["pid"] for p in info if p["statename"] == "RUNNING"}


def test_deleting_an_instance_stops_its_processes_then_removes_it(platform):
    state, nodes, ssh = platform
    assert WEB in running(nodes[0].root) and WEB2 in running(nodes[1].root)
    other = running(nodes[2].root)
    with running_server(state, *ssh, commit=False) as server:
        answer = server.client.request("DELETE", "/1.0/instances/IN1")

    assert (answer.status, answer.raw) == (204, b"")
    assert running(nodes[0].root) == {} and running(nodes[1].root) == {}
    assert not Path(nodes[0].root, "etc/instance.json").exists()
    assert running(nodes[2].root) == other  # another instance's node: untouched

    left = set(tree(state))
    assert not any(name.startswith("instances/IN1") for name in left)
    assert f"processes/{WEB}.yaml" not in left
    assert f"processes/{OTHER}.yaml" in left and "instances/IN2.yaml" in left
    assert "instance" not in yaml.safe_load((state / "tenants/t1.yaml").read_text())
    assert yaml.safe_load((state / "tenants/t2.yaml").read_text())["instance"] == "IN2"
    # What is left is a valid state that apply finds nothing to do in.
    assert main(["apply", str(state), *ssh]) == 0


def test_an_unreachable_node_fails_the_delete_and_changes_nothing(platform):
    state, nodes, ssh = platform
    before = tree(state)
    pids = running(nodes[0].root)
    nodes[1].stop()
    try:
        with running_server(
            state, *ssh, "--connect-timeout", "3", commit=False
        ) as server:
            status, _, body = server.client.request("DELETE", "/1.0/instances/IN1")
    finally:
        nodes[1].start()

    assert status == 502
    assert "instance IN1 was not deleted: cannot reach IN1/ND2" in body["error"]
    assert tree(state) == before
    # The reachable node was not touched either: its process kept running.
    assert running(nodes[0].root) == pids


def test_a_delete_refused_after_the_stop_starts_the_processes_again(platform):
    state, nodes, ssh = platform
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "state"]):
        git(state, *command)
    hook = state / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'refused by policy' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = tree(state)

    with running_server(state, *ssh) as server:
        status, _, body = server.client.request("DELETE", "/1.0/instances/IN1")

    assert status == 500
    assert "refused by policy" in body["error"]
    assert "they were started again" in body["error"]
    assert tree(state) == before
    assert WEB in running(nodes[0].root) and WEB2 in running(nodes[1].root)
    hook.unlink()
    assert main(["plan", str(state), "--detailed-exitcode", *ssh]) == 0
