"""Two servers and many clients on one git-backed state: no write is lost."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"


def git(state: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=state,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def serve(state: Path) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "reconciler.cli", "serve", str(state)]
    server = subprocess.Popen(
        [*command, "--port", "0"], stderr=subprocess.PIPE, text=True
    )
    for line in server.stderr:
        if line.startswith("Serving http://"):
            return server, int(line.split(":")[2].split("/")[0])
    raise AssertionError(f"the server did not start (exit {server.wait()})")


def call(port: int, method: str, path: str, body: dict | None = None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    data = json.dumps(body) if body is not None else None
    connection.request(method, path, body=data, headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status


def test_concurrent_writes_through_two_servers_all_land_one_commit_each(tmp_path):
    state = tmp_path / "state"
    shutil.copytree(DEMO, state)
    git(state, "init", "-q")
    git(state, "add", "-A")
    git(state, "commit", "-qm", "demo")
    tenants = [f"t{i:02d}" for i in range(16)]
    servers = [serve(state), serve(state)]
    try:
        ports = [port for _, port in servers]
        with ThreadPoolExecutor(max_workers=8) as pool:
            created = list(
                pool.map(
                    lambda i: call(
                        ports[i % 2],
                        "POST",
                        "/1.0/tenants",
                        {"id": tenants[i], "name": f"Tenant {i}"},
                    ),
                    range(len(tenants)),
                )
            )
            # Every grant edits the same user file: a lost update would show.
            granted = list(
                pool.map(
                    lambda i: call(
                        ports[i % 2],
                        "POST",
                        f"/1.0/users/bob@example.com/tenants/{tenants[i]}",
                    ),
                    range(len(tenants)),
                )
            )
    finally:
        for server, _ in servers:
            server.terminate()
            assert server.wait(timeout=15) == 0

    assert created == [201] * len(tenants)
    assert granted == [201] * len(tenants)
    bob = yaml.safe_load((state / "users/bob@example.com.yaml").read_text())
    assert sorted(bob["tenants"]) == sorted(["acme", *tenants])
    assert int(git(state, "rev-list", "--count", "HEAD")) == 1 + 2 * len(tenants)
    assert git(state, "status", "--porcelain") == ""
