"""`reconcile plan` and `apply` against real sshd nodes with real supervisord.

Layout used here: instance IN1 has nodes ND1 and ND2, instance IN2 has ND1;
each is an sshd on its own loopback address. Service SV1 (`web`) reads the
tenant files, SV2 (`echo`) reads only the users file.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from platform_state import node_yaml, pids, two_instances, write

from reconciler.cli import main

WEB = "11111111-1111-4111-8111-111111111111"
ECHO = "22222222-2222-4222-8222-222222222222"
WEB2 = "33333333-3333-4333-8333-333333333333"
OTHER = "44444444-4444-4444-8444-444444444444"

ECHO_PROGRAM = (
    "import socketserver, sys; "
    "S = socketserver.TCPServer; S.allow_reuse_address = True; "
    "S((sys.argv[1], int(sys.argv[2])), socketserver.StreamRequestHandler)"
    ".serve_forever()"
)


@pytest.fixture
def cluster(ssh_nodes, tmp_path):
    nodes = ssh_nodes(3)
    state = tmp_path / "state"
    two_instances(state, nodes, web_port=18701)
    write(
        state,
        "service-types/echo.yaml",
        {
            "command": ["{python}", "-c", ECHO_PROGRAM, "{address}", "{options.port}"],
            "reads": ["etc/users.json"],
        },
    )
    for instance in ("IN1", "IN2"):
        write(
            state,
            f"instances/{instance}/services/SV2.yaml",
            {"name": "echo", "type": "echo", "options": {"port": 18702}},
        )
    for pid, instance, service, node in (
        (WEB, "IN1", "SV1", "ND1"),
        (ECHO, "IN1", "SV2", "ND1"),
        (WEB2, "IN1", "SV1", "ND2"),
        (OTHER, "IN2", "SV1", "ND1"),
    ):
        write(
            state,
            f"processes/{pid}.yaml",
            {"instance": instance, "service": service, "node": node},
        )
    write(state, "tenants/t1.yaml", {"name": "T1", "instance": "IN1"})
    write(state, "tenants/t2.yaml", {"name": "T2", "instance": "IN1"})
    write(state, "tenants/t3.yaml", {"name": "T3", "instance": "IN2"})
    write(state, "users/ann@example.com.yaml", {"name": "Ann", "tenants": ["t1"]})
    yield state, nodes
    ssh_nodes.remove(nodes)


def run(capsys, *argv: str, nodes=None) -> tuple[int, str]:
    node = nodes[0]
    args = [*argv, "--identity", node.identity, "--known-hosts", node.known_hosts]
    code = main(args)
    out = capsys.readouterr()
    return code, out.out + out.err


def mtimes(root: str) -> dict[str, int]:
    found = {}
    for base in ("etc", "supervisor", ".reconcile"):
        for path in Path(root, base).rglob("*"):
            if path.is_file():
                found[str(path.relative_to(root))] = path.stat().st_mtime_ns
    return found


def test_apply_from_empty_converges_and_a_second_apply_does_nothing(cluster, capsys):
    state, nodes = cluster
    code, out = run(capsys, "apply", str(state), nodes=nodes)
    assert code == 0, out
    assert "Applied:" in out

    # The web process on IN1/ND1 serves its node's rendered configuration.
    listing = (
        urllib.request.urlopen(f"http://{nodes[0].address}:18701/tenants/", timeout=5)
        .read()
        .decode()
    )
    assert "t1.json" in listing and "t3.json" not in listing
    assert set(pids(nodes[0].root)) == {WEB, ECHO}
    assert set(pids(nodes[2].root)) == {OTHER}
    users = json.loads(Path(nodes[0].root, "etc/users.json").read_text())
    assert [u["email"] for u in users] == ["ann@example.com"]

    before = [mtimes(n.root) for n in nodes]
    running = [pids(n.root) for n in nodes]
    code, out = run(capsys, "apply", str(state), nodes=nodes)
    assert code == 0, out
    assert "Nothing to do: 3 of 3 nodes match the state." in out
    assert [mtimes(n.root) for n in nodes] == before
    assert [pids(n.root) for n in nodes] == running


def test_a_changed_tenant_rewrites_one_file_and_restarts_only_its_readers(
    cluster, capsys
):
    state, nodes = cluster
    assert run(capsys, "apply", str(state), nodes=nodes)[0] == 0
    before = [mtimes(n.root) for n in nodes]
    running = [pids(n.root) for n in nodes]

    write(state, "tenants/t1.yaml", {"name": "T1", "instance": "IN1", "rate-limit": 7})
    code, out = run(capsys, "plan", str(state), "--detailed-exitcode", nodes=nodes)
    assert code == 2, out
    assert '+  "rate-limit": 7' in out

    code, out = run(capsys, "apply", str(state), nodes=nodes)
    assert code == 0, out
    after = [mtimes(n.root) for n in nodes]
    changed = [
        sorted(p for p in a if a[p] != b.get(p) and not p.startswith(".reconcile"))
        for a, b in zip(after, before, strict=True)
    ]
    assert changed == [["etc/tenants/t1.json"], ["etc/tenants/t1.json"], []]
    now = [pids(n.root) for n in nodes]
    assert now[0][ECHO] == running[0][ECHO]  # echo reads no tenant file
    assert now[0][WEB] != running[0][WEB]
    assert now[1][WEB2] != running[1][WEB2]
    assert now[2] == running[2]  # IN2 holds no IN1 tenant
    assert (
        json.loads(Path(nodes[0].root, "etc/tenants/t1.json").read_text())["rate-limit"]
        == 7
    )


def test_a_deleted_tenant_is_pruned_from_its_nodes(cluster, capsys):
    state, nodes = cluster
    assert run(capsys, "apply", str(state), nodes=nodes)[0] == 0
    (state / "tenants/t2.yaml").unlink()
    code, out = run(capsys, "apply", str(state), nodes=nodes)
    assert code == 0, out
    assert "- etc/tenants/t2.json  (no longer desired)" in out
    for node in nodes[:2]:
        assert not Path(node.root, "etc/tenants/t2.json").exists()
        assert Path(node.root, "etc/tenants/t1.json").exists()
        manifest = json.loads(Path(node.root, ".reconcile/manifest.json").read_text())
        assert "etc/tenants/t2.json" not in manifest["files"]


def test_a_file_edited_on_a_node_is_drift_that_apply_repairs(cluster, capsys):
    state, nodes = cluster
    assert run(capsys, "apply", str(state), nodes=nodes)[0] == 0
    tenant = Path(nodes[0].root, "etc/tenants/t1.json")
    rendered = tenant.read_text()
    tenant.write_text(rendered.replace('"T1"', '"hand edit"'))
    unmanaged = Path(nodes[0].root, "etc/notes.txt")
    unmanaged.write_text("mine")

    code, out = run(capsys, "plan", str(state), "--detailed-exitcode", nodes=nodes)
    assert code == 2, out
    assert "etc/tenants/t1.json  (drift: edited on the node)" in out
    assert '-  "name": "hand edit",' in out

    code, out = run(capsys, "apply", str(state), nodes=nodes)
    assert code == 0, out
    assert tenant.read_text() == rendered
    assert unmanaged.read_text() == "mine"  # outside the manifest: untouched
    code, out = run(capsys, "plan", str(state), "--detailed-exitcode", nodes=nodes)
    assert code == 0, out


def test_processes_are_back_after_their_supervisor_was_killed(cluster, capsys):
    state, nodes = cluster
    assert run(capsys, "apply", str(state), nodes=nodes)[0] == 0
    root = nodes[0].root
    old = pids(root)
    daemon = int(Path(root, "run/supervisord.pid").read_text())
    os.kill(daemon, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{daemon}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    code, out = run(capsys, "plan", str(state), nodes=nodes)
    assert f"> start process {WEB} [SV1]: not running" in out
    code, out = run(capsys, "apply", str(state), nodes=nodes)
    assert code == 0, out
    new = pids(root)
    assert set(new) == {WEB, ECHO}
    assert not set(new.values()) & set(old.values())


def test_a_dead_node_fails_alone_while_the_others_converge(cluster, capsys):
    state, nodes = cluster
    nodes[1].stop()
    try:
        code, out = run(
            capsys, "apply", str(state), "--connect-timeout", "3", nodes=nodes
        )
        assert code == 1, out
        dead = nodes[1]
        where = f"{dead.user}@{dead.address}:{dead.port}"
        assert f"IN1/ND2 (b): FAILED: {where}: connection refused" in out
        assert "Failed: IN1/ND2." in out
        assert set(pids(nodes[0].root)) == {WEB, ECHO}
        assert set(pids(nodes[2].root)) == {OTHER}
    finally:
        nodes[1].start()
    code, out = run(capsys, "apply", str(state), nodes=nodes)
    assert code == 0, out
    assert set(pids(nodes[1].root)) == {WEB2}


def test_a_disabled_node_is_skipped_and_said_so(cluster, capsys):
    state, nodes = cluster
    data = node_yaml(nodes[1], "b") | {"status": False}
    write(state, "instances/IN1/nodes/ND2.yaml", data)
    code, out = run(capsys, "apply", str(state), nodes=nodes)
    assert code == 0, out
    assert "IN1/ND2 (b): skipped (status: false)" in out
    assert not Path(nodes[1].root, "etc").exists()


def test_only_the_named_node_is_touched(cluster, capsys):
    state, nodes = cluster
    code, out = run(capsys, "apply", str(state), "--node", "IN2/ND1", nodes=nodes)
    assert code == 0, out
    assert Path(nodes[2].root, "etc/instance.json").exists()
    assert not Path(nodes[0].root, "etc").exists()


def test_values_with_shell_syntax_arrive_literally(cluster, capsys, tmp_path):
    state, nodes = cluster
    marker = tmp_path / "pwned"
    nasty = f'it\'s a "test"; touch {marker} $(touch {marker}) `touch {marker}` %(x)s'
    write(
        state,
        "service-types/argv.yaml",
        {
            "command": [
                "{python}",
                "-c",
                "import json, sys, time; "
                "open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:])); "
                "time.sleep(3600)",
                "{root}/argv.json",
                "{options.text}",
            ],
        },
    )
    write(
        state,
        "instances/IN2/services/SV3.yaml",
        {"name": "argv", "type": "argv", "options": {"text": nasty}},
    )
    pid = "55555555-5555-4555-8555-555555555555"
    write(
        state,
        f"processes/{pid}.yaml",
        {"instance": "IN2", "service": "SV3", "node": "ND1"},
    )
    code, out = run(capsys, "apply", str(state), "--node", "IN2/ND1", nodes=nodes)
    assert code == 0, out
    assert json.loads(Path(nodes[2].root, "argv.json").read_text()) == [nasty]
    assert not marker.exists()


def test_an_unknown_host_key_is_refused_unless_new_keys_are_accepted(
    cluster, capsys, tmp_path
):
    state, nodes = cluster
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    args = ["plan", str(state), "--node", "IN2/ND1", "--identity", nodes[0].identity]
    code = main([*args, "--known-hosts", str(empty)])
    out = capsys.readouterr()
    assert code == 1
    assert "IN2/ND1 (c): FAILED:" in out.out
    assert "host key" in out.out

    code = main([*args, "--known-hosts", str(empty), "--accept-new-host-keys"])
    capsys.readouterr()
    assert code == 0
    assert f"[{nodes[2].address}]:{nodes[2].port}" in empty.read_text()

    # A changed key is refused even with accept-new.
    other_key = Path(nodes[0].known_hosts).read_text().splitlines()[0].split(" ", 1)[1]
    empty.write_text(f"[{nodes[2].address}]:{nodes[2].port} {other_key}\n")
    code = main([*args, "--known-hosts", str(empty), "--accept-new-host-keys"])
    out = capsys.readouterr()
    assert code == 1
    assert "host key" in out.out


def test_invalid_state_touches_no_node(cluster, capsys):
    state, nodes = cluster
    write(state, "tenants/t1.yaml", {"name": "T1", "instance": "IN7"})
    code, out = run(capsys, "apply", str(state), nodes=nodes)
    assert code == 1
    assert "no node was touched" in out
    assert "tenants/t1.yaml:2: $.instance: instance 'IN7' does not exist" in out
    assert all(not Path(n.root, "etc").exists() for n in nodes)
