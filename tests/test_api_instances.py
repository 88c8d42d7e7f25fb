"""Deleting an instance over the API stops its processes on real SSH nodes first."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from api_server import git, running_server, tree
from platform_state import pids, two_instances, write

from reconciler.cli import main

WEB = "3f1c1d0e-7d4a-4c55-9a53-1b0c2b9d5e01"
WEB2 = "3f1c1d0e-7d4a-4c55-9a53-1b0c2b9d5e02"
OTHER = "3f1c1d0e-7d4a-4c55-9a53-1b0c2b9d5e03"


@pytest.fixture
def platform(ssh_nodes, tmp_path):
    """IN1 on two SSH nodes, IN2 on a third; one web process on each node."""
    nodes = ssh_nodes(3)
    state = tmp_path / "state"
    two_instances(state, nodes, web_port=18711)
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


def test_deleting_an_instance_stops_its_processes_then_removes_it(platform):
    state, nodes, ssh = platform
    assert WEB in pids(nodes[0].root) and WEB2 in pids(nodes[1].root)
    other = pids(nodes[2].root)
    with running_server(state, *ssh, commit=False) as server:
        answer = server.client.request("DELETE", "/1.0/instances/IN1")

    assert (answer.status, answer.raw) == (204, b"")
    assert pids(nodes[0].root) == {} and pids(nodes[1].root) == {}
    assert not Path(nodes[0].root, "etc/instance.json").exists()
    assert pids(nodes[2].root) == other  # another instance's node: untouched

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
    before_pids = pids(nodes[0].root)
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
    assert pids(nodes[0].root) == before_pids


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
    assert WEB in pids(nodes[0].root) and WEB2 in pids(nodes[1].root)
    hook.unlink()
    assert main(["plan", str(state), "--detailed-exitcode", *ssh]) == 0
