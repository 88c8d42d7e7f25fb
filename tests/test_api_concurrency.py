"""Two servers and many clients on one git-backed state: no write is lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import yaml
from api_server import commit_count, demo_state, git, running_server


def test_concurrent_writes_through_two_servers_all_land_one_commit_each(tmp_path):
    state = demo_state(tmp_path, commit=True)
    tenants = [f"t{i:02d}" for i in range(16)]
    with running_server(state) as first, running_server(state) as second:
        clients = [first.client, second.client]

        def create(i: int) -> int:
            body = {"id": tenants[i], "name": f"Tenant {i}"}
            return clients[i % 2].request("POST", "/1.0/tenants", body).status

        def grant(i: int) -> int:
            path = f"/1.0/users/bob@example.com/tenants/{tenants[i]}"
            return clients[i % 2].request("POST", path).status

        with ThreadPoolExecutor(max_workers=8) as pool:
            created = list(pool.map(create, range(len(tenants))))
            # Every grant edits the same user file: a lost update would show.
            granted = list(pool.map(grant, range(len(tenants))))

    assert created == [201] * len(tenants)
    assert granted == [201] * len(tenants)
    bob = yaml.safe_load((state / "users/bob@example.com.yaml").read_text())
    assert sorted(bob["tenants"]) == sorted(["acme", *tenants])
    assert commit_count(state) == 1 + 2 * len(tenants)
    assert git(state, "status", "--porcelain") == ""
