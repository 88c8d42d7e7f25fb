"""`reconcile serve` as a process: how it starts, and how it stops."""

from __future__ import annotations

import http.client
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from api_server import ROOT, demo_state, running_server


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_server_cleanly_with_status_0(tmp_path, sig):
    with running_server(demo_state(tmp_path)) as server:
        api = server.client
        assert api.request("GET", "/1.0/tenants").status == 200

        # An idle keep-alive connection must not hold the stop up.
        idle = http.client.HTTPConnection(api.host, api.port, timeout=10)
        idle.request("GET", "/1.0/instances")
        assert idle.getresponse().read()

        assert server.stop(sig) == 0
        idle.close()
        log = "".join(server.stderr)
        assert f"Stopped on {sig.name}." in log
        assert "Traceback" not in log
        with pytest.raises(OSError):
            socket.create_connection((api.host, api.port), timeout=2).close()


def test_a_port_already_taken_is_a_clear_error_with_status_1(tmp_path: Path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler.cli", "serve"]
            + [str(demo_state(tmp_path)), "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        taken.close()
    assert done.returncode == 1
    assert f"Error: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_state_folder_that_does_not_exist_is_a_usage_error(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "serve", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "does not exist" in done.stderr


def test_an_empty_folder_is_served_with_a_warning(tmp_path: Path):
    with running_server(tmp_path, commit=False) as server:
        assert server.client.request("GET", "/1.0/tenants").body == []
        assert server.stop() == 0
    assert "holds no state folders" in "".join(server.stderr)


def test_invalid_files_at_start_are_named_in_a_warning(tmp_path: Path):
    state = demo_state(tmp_path)
    (state / "tenants" / "globex.yaml").write_text("id: globex\nname: [unclosed\n")
    with running_server(state) as server:
        assert server.client.request("GET", "/1.0/tenants/acme").status == 200
        assert server.stop() == 0
    log = "".join(server.stderr)
    assert "1 problem in the state files" in log
    assert re.search(r"first: tenants/globex\.yaml:\d+: ", log), log
