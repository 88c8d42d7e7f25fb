"""Connections to real sshd nodes: the agent over SSH, and every way in failing."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

from reconciler.connections import ConnectOptions, connect
from reconciler.errors import ConnectionFailed, HostKeyError, NodeCommandError

SUPERVISORD_CONF = """\
[unix_http_server]
file={root}/run/supervisor.sock
[supervisord]
logfile={root}/log/supervisord.log
pidfile={root}/run/supervisord.pid
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[include]
files = programs/*.conf
"""


@pytest.fixture(scope="module")
def ssh_node(ssh_nodes):
    (node,) = ssh_nodes(1)
    yield node
    ssh_nodes.remove([node])


def node_dict(node, **changes) -> dict:
    fields = {
        "ip-address": node.address,
        "port": node.port,
        "username": node.user,
        "python": sys.executable,
    }
    return {**fields, **changes}


def options(node, **changes) -> ConnectOptions:
    fields = {"identity": node.identity, "known_hosts": node.known_hosts}
    return ConnectOptions(**{**fields, "connect_timeout": 5.0, **changes})


def host_key_line(node) -> str:
    key = Path(node.known_hosts).read_text().splitlines()
    return next(line for line in key if line.startswith(f"[{node.address}]:"))


def test_the_agent_answers_facts_over_ssh_and_the_call_is_logged_without_payload(
    ssh_node, caplog
):
    caplog.set_level(logging.DEBUG, logger="reconciler.connections")
    connection = connect("IN1/ND1", node_dict(ssh_node), options(ssh_node))
    try:
        answer = connection.call(
            {"op": "facts", "root": ssh_node.root, "expect": {"etc/a.json": "0" * 64}}
        )
    finally:
        connection.close()

    assert answer["ok"] is True
    assert answer["files"] == {"etc/a.json": None}
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("IN1/ND1: agent facts took ") for m in messages)
    assert not any("etc/a.json" in m or "def main" in m for m in messages)


def test_an_apply_that_starts_supervisord_over_ssh_returns_promptly(ssh_node):
    # The daemon must not hold the channel open: the call returns once the
    # agent is done, not when supervisord ends.
    root = ssh_node.root
    program = (
        f"[program:web]\ncommand={sys.executable} -m http.server 0 --bind 127.0.0.1\n"
        f"directory={root}\nstartsecs=1\n"
    )
    files = {
        "supervisor/supervisord.conf": SUPERVISORD_CONF.format(root=root).encode(),
        "supervisor/programs/web.conf": program.encode(),
    }
    request = {
        "op": "apply",
        "root": root,
        "python": sys.executable,
        "write": [
            {"path": path, "content_b64": base64.b64encode(data).decode()}
            for path, data in files.items()
        ],
        "processes": [{"id": "web", "action": "start"}],
        "desired_running": ["web"],
        "manifest": {
            "version": 1,
            "files": {p: hashlib.sha256(d).hexdigest() for p, d in files.items()},
            "processes": {},
        },
    }
    connection = connect("IN1/ND1", node_dict(ssh_node), options(ssh_node))
    started = time.monotonic()
    try:
        answer = connection.call(request)
        elapsed = time.monotonic() - started
    finally:
        connection.close()
        stop_supervisord(root)

    assert answer["processes"]["web"]["state"] == "RUNNING"
    assert elapsed < 15


def stop_supervisord(root: str) -> None:
    try:
        pid = int(Path(root, "run", "supervisord.pid").read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.05)


def test_a_closed_port_gives_connection_failed_naming_the_node_and_address():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    node = {"ip-address": "127.0.0.1", "port": port, "username": "ops"}

    with pytest.raises(ConnectionFailed) as raised:
        connect("IN1/ND1", node, ConnectOptions(connect_timeout=2.0))

    assert str(raised.value) == (f"IN1/ND1 (ops@127.0.0.1:{port}): connection refused")


def test_a_port_that_never_speaks_ssh_gives_a_one_line_connection_failed():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        node = {"ip-address": "127.0.0.1", "port": port, "username": "ops"}

        with pytest.raises(ConnectionFailed) as raised:
            connect("IN1/ND2", node, ConnectOptions(connect_timeout=0.5))

    message = str(raised.value)
    assert message.startswith(f"IN1/ND2 (ops@127.0.0.1:{port}): ")
    assert "\n" not in message
    assert not isinstance(raised.value, HostKeyError)


def test_an_unknown_host_key_is_refused(ssh_node, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")

    with pytest.raises(HostKeyError, match="host key unknown") as raised:
        connect(
            "IN1/ND1",
            node_dict(ssh_node),
            options(ssh_node, known_hosts=str(known_hosts)),
        )

    assert f"IN1/ND1 ({ssh_node.user}@{ssh_node.address}:{ssh_node.port})" in str(
        raised.value
    )
    assert known_hosts.read_text() == ""


def test_a_new_host_key_is_recorded_when_new_keys_are_accepted(ssh_node, tmp_path):
    known_hosts = tmp_path / "ssh" / "known_hosts"

    first = connect(
        "IN1/ND1",
        node_dict(ssh_node),
        options(ssh_node, known_hosts=str(known_hosts), accept_new_host_keys=True),
    )
    first.close()
    again = connect(
        "IN1/ND1", node_dict(ssh_node), options(ssh_node, known_hosts=str(known_hosts))
    )
    again.close()

    assert known_hosts.read_text().split()[:3] == host_key_line(ssh_node).split()[:3]


def test_a_changed_host_key_is_refused_even_when_new_keys_are_accepted(
    ssh_node, tmp_path
):
    other = tmp_path / "other_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True
    )
    key_type, key = other.with_suffix(".pub").read_text().split()[:2]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{ssh_node.address}]:{ssh_node.port} {key_type} {key}\n")

    with pytest.raises(HostKeyError, match="host key differs"):
        connect(
            "IN1/ND1",
            node_dict(ssh_node),
            options(ssh_node, known_hosts=str(known_hosts), accept_new_host_keys=True),
        )

    assert len(known_hosts.read_text().splitlines()) == 1


def test_a_key_the_node_does_not_authorize_fails_without_showing_the_password(
    ssh_node, tmp_path
):
    stranger = tmp_path / "stranger"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True
    )
    node = node_dict(ssh_node, password="hunter2-secret", identity=str(stranger))

    with pytest.raises(ConnectionFailed) as raised:
        connect("IN1/ND1", node, options(ssh_node))

    assert str(raised.value).endswith(": authentication failed")
    assert "hunter2" not in str(raised.value)


def test_a_password_from_an_unset_environment_variable_is_refused(
    ssh_node, monkeypatch
):
    monkeypatch.delenv("RCN_TEST_NODE_PASSWORD", raising=False)
    node = node_dict(ssh_node, password={"env": "RCN_TEST_NODE_PASSWORD"})

    with pytest.raises(ConnectionFailed, match="RCN_TEST_NODE_PASSWORD"):
        connect("IN1/ND1", node, options(ssh_node))


def test_a_node_python_that_gives_no_answer_is_a_node_command_error(ssh_node):
    connection = connect(
        "IN1/ND1", node_dict(ssh_node, python="/bin/false"), options(ssh_node)
    )
    try:
        with pytest.raises(NodeCommandError, match="no JSON answer"):
            connection.call({"op": "facts", "root": ssh_node.root})
    finally:
        connection.close()


def test_a_local_node_runs_the_agent_as_a_child_process(tmp_path):
    connection = connect("IN1/ND9", {"connection": "local"}, ConnectOptions())

    answer = connection.call({"op": "facts", "root": str(tmp_path)})

    assert answer["manifest"] is None


def test_the_users_ssh_config_is_not_read(ssh_node, tmp_path, monkeypatch):
    ssh_dir = tmp_path / ".ssh"
    ssh_dir.mkdir()
    (ssh_dir / "config").write_text("Host *\n  ProxyCommand /bin/false\n")
    monkeypatch.setenv("HOME", str(tmp_path))

    connection = connect("IN1/ND1", node_dict(ssh_node), options(ssh_node))
    connection.close()


def test_an_agent_call_that_outlasts_the_command_timeout_is_a_node_command_error(
    ssh_node, tmp_path
):
    slow_python = tmp_path / "slow-python"
    slow_python.write_text(f'#!/bin/sh\nsleep 3\nexec {sys.executable} "$@"\n')
    slow_python.chmod(0o755)
    node = node_dict(ssh_node, python=str(slow_python))
    connection = connect("IN1/ND1", node, options(ssh_node, command_timeout=0.5))
    started = time.monotonic()
    try:
        with pytest.raises(NodeCommandError, match="did not finish in 0.5 s"):
            connection.call({"op": "facts", "root": ssh_node.root})
    finally:
        connection.close()

    assert time.monotonic() - started < 5


class _StallingServer(paramiko.ServerInterface):
    """Lets anyone in, then never answers the request to run a command."""

    def __init__(self, release: threading.Event):
        self.release = release

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel, command) -> bool:
        self.release.wait(30)
        return False


def test_a_node_that_stalls_after_login_fails_within_the_timeouts(ssh_node, tmp_path):
    host_key = paramiko.Ed25519Key.from_private_key_file(
        str(ssh_node.server_dir / "ssh_host_ed25519_key")
    )
    listener = socket.socket()
    listener.bind(("127.0.0.9", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    release = threading.Event()
    transports = []

    def serve() -> None:
        sock, _ = listener.accept()
        transport = paramiko.Transport(sock)
        transport.add_server_key(host_key)
        transports.append(transport)
        transport.start_server(server=_StallingServer(release))

    threading.Thread(target=serve, daemon=True).start()
    known = tmp_path / "known_hosts"
    known.write_text(
        f"[127.0.0.9]:{port} {host_key.get_name()} {host_key.get_base64()}\n"
    )
    node = {"ip-address": "127.0.0.9", "port": port, "username": ssh_node.user}
    opts = ConnectOptions(
        identity=ssh_node.identity,
        known_hosts=str(known),
        connect_timeout=1,
        command_timeout=2,
    )
    started = time.monotonic()
    try:
        connection = connect("IN1/ND9", node, opts)
        with pytest.raises(ConnectionFailed, match="no answer to facts within 3"):
            connection.call({"op": "facts", "root": "/tmp/x"})
        connection.close()
    finally:
        release.set()
        listener.close()
        for transport in transports:
            transport.close()
    assert time.monotonic() - started < 10
