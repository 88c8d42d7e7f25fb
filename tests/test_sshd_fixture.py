"""The sshd fixture itself: real servers, checked host keys, clean teardown."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sshd import SshNodeFactory, pids_under


def run_ssh(node, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        node.ssh_argv(*command),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def refuses_connections(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture(scope="module")
def three_nodes(ssh_nodes: SshNodeFactory):
    nodes = ssh_nodes(3)
    yield nodes
    ssh_nodes.remove(nodes)


def test_each_node_has_its_own_loopback_address_port_and_short_root(three_nodes):
    addresses = {node.address for node in three_nodes}
    roots = {node.root for node in three_nodes}

    assert len(addresses) == 3 and len(roots) == 3
    for node in three_nodes:
        assert node.address.startswith("127.0.0.")
        assert Path(node.root).is_dir()
        assert len(node.root) < 40


def test_known_hosts_lists_every_started_node_with_its_port(three_nodes):
    lines = Path(three_nodes[0].known_hosts).read_text().splitlines()

    for node in three_nodes:
        assert any(
            line.startswith(f"[{node.address}]:{node.port} ssh-ed25519 ")
            for line in lines
        )


def test_the_real_ssh_client_logs_in_with_strict_host_key_checking(three_nodes):
    for node in three_nodes:
        result = run_ssh(node, "echo", "hello")

        assert result.returncode == 0, result.stderr
        assert result.stdout == "hello\n"


def test_a_host_key_not_in_known_hosts_is_refused(three_nodes, tmp_path):
    node = three_nodes[0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    argv = [
        f"UserKnownHostsFile={empty}" if arg.startswith("UserKnownHostsFile=") else arg
        for arg in node.ssh_argv("true")
    ]

    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)

    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_the_users_home_is_a_private_empty_directory(private_home):
    assert os.environ["HOME"] == private_home
    assert os.listdir(Path(private_home) / ".ssh") == []
    assert "SSH_AUTH_SOCK" not in os.environ


def test_a_stopped_node_refuses_connections_and_answers_again_after_start(
    ssh_nodes,
):
    [node] = ssh_nodes(1)

    node.stop()
    assert refuses_connections(node.address, node.port)

    node.start()
    assert run_ssh(node, "echo", "back").stdout == "back\n"
    ssh_nodes.remove([node])


def test_removing_a_node_ends_the_supervisord_and_processes_left_under_its_root(
    ssh_nodes,
):
    [node] = ssh_nodes(1)
    run_dir = Path(node.root) / "run"
    run_dir.mkdir()

    # Stand-ins for what a test may leave behind: a daemon whose pid file
    # says supervisord, and a stray process working inside the root.
    fake_supervisord = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", "supervisord"],
        start_new_session=True,
    )
    (run_dir / "supervisord.pid").write_text(f"{fake_supervisord.pid}\n")
    stray = subprocess.Popen(["sleep", "300"], cwd=node.root, start_new_session=True)
    assert stray.pid in pids_under(node.root)
    assert fake_supervisord.pid not in pids_under(node.root)

    ssh_nodes.remove([node])

    assert fake_supervisord.wait(timeout=10) is not None
    assert stray.wait(timeout=10) is not None
    assert not Path(node.root).exists()
    assert refuses_connections(node.address, node.port)


def test_a_node_that_cannot_start_raises_with_the_sshd_log(ssh_nodes):
    [node] = ssh_nodes(1)
    config = node.server_dir / "sshd_config"
    node.stop()
    config.write_text(config.read_text() + "NoSuchOption yes\n")

    with pytest.raises(RuntimeError, match="NoSuchOption"):
        node.start()
    ssh_nodes.remove([node])
