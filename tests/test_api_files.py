"""The files stay the source of truth: what the API writes, and what it reads.

Writes through a real server land as one git commit each, with a message that
says what changed, and a PUT changes only the lines it must. Edits made to the
files behind the server's back show in the very next answer.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from api_server import ApiServer, commit_count, demo_state, git, running_server, tree


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_server(demo_state(tmp_path, commit=True)) as running:
        yield running


def last_commit(state: Path) -> tuple[str, list[str]]:
    """The subject of HEAD and the files it touched."""
    subject = git(state, "log", "-1", "--format=%s").strip()
    files = git(state, "show", "--name-only", "--format=", "HEAD").split()
    return subject, files


def test_each_write_is_one_commit_that_says_what_changed(server: ApiServer) -> None:
    api, state = server.client, server.state
    writes = [
        (
            "POST",
            "/1.0/tenants",
            {"id": "tenant1", "name": "T"},
            ["tenants/tenant1.yaml"],
        ),
        ("PUT", "/1.0/tenants/tenant1", {"rate-limit": 5}, ["tenants/tenant1.yaml"]),
        (
            "POST",
            "/1.0/users/bob@example.com/tenants/tenant1",
            None,
            ["users/bob@example.com.yaml"],
        ),
        (
            "POST",
            "/1.0/tenants/tenant1/integrations/echo",
            None,
            ["tenants/tenant1.yaml"],
        ),
        (
            "DELETE",
            "/1.0/tenants/tenant1",
            None,
            ["tenants/tenant1.yaml", "users/bob@example.com.yaml"],
        ),
    ]
    for method, path, body, files in writes:
        before = commit_count(state)
        answer = api.request(method, path, body)
        assert answer.status in (200, 201, 204), (path, answer.body)
        assert commit_count(state) == before + 1, path
        subject, touched = last_commit(state)
        assert "tenant1" in subject, subject
        assert sorted(touched) == files
        assert git(state, "status", "--porcelain") == ""

    # A rejected write makes no commit and leaves no file behind.
    before, files = commit_count(state), tree(state)
    assert (
        api.request("POST", "/1.0/tenants", {"id": "acme", "name": "x"}).status == 409
    )
    assert api.request("PUT", "/1.0/tenants/acme", {"rate-limit": "x"}).status == 400
    assert (commit_count(state), tree(state)) == (before, files)


def test_put_changes_only_the_lines_it_must(server: ApiServer) -> None:
    path = server.state / "tenants" / "acme.yaml"
    before = path.read_text()

    answer = server.client.request("PUT", "/1.0/tenants/acme", {"name": "Acme Inc."})
    assert answer.status == 200

    after = path.read_text()
    changed = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), n=0)
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert changed == ['-name: "Acme Corporation"', '+name: "Acme Inc."']
    # The comments a person wrote survive, and so does the key order.
    assert "# Literal values so that the demo runs" in after
    assert after.splitlines()[0] == "id: acme"


def test_a_grant_adds_one_line_and_keeps_the_comment(server: ApiServer) -> None:
    path = server.state / "users" / "alice@example.com.yaml"
    before = path.read_text()
    api = server.client
    assert (
        api.request("POST", "/1.0/tenants", {"id": "tenant1", "name": "T"}).status
        == 201
    )

    assert (
        api.request("POST", "/1.0/users/alice@example.com/tenants/tenant1").status
        == 201
    )

    after = path.read_text()
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert added == ["  - tenant1"]
    assert "# scrypt hash of the password" in after
    # The old hash was not touched: the demo's password still works for alice.
    assert before.splitlines()[-1] == after.splitlines()[-1]


def test_edits_on_disk_show_in_the_next_answer(server: ApiServer) -> None:
    api, state = server.client, server.state
    assert api.request("GET", "/1.0/tenants/globex").body["name"] == "Globex"
    first_tag = api.request("GET", "/1.0/tenants/globex").headers["ETag"]

    # A hand edit, as a person or `git pull` would make it.
    path = state / "tenants" / "globex.yaml"
    path.write_text(path.read_text().replace('name: "Globex"', 'name: "Globex Corp"'))
    answer = api.request("GET", "/1.0/tenants/globex")
    assert answer.body["name"] == "Globex Corp"
    assert answer.headers["ETag"] != first_tag
    assert {"id": "globex", "name": "Globex Corp"} in api.request(
        "GET", "/1.0/tenants"
    ).body

    # A stale If-Match is refused after the edit behind the server's back.
    answer = api.request(
        "PUT", "/1.0/tenants/globex", {"rate-limit": 5}, headers={"If-Match": first_tag}
    )
    assert answer.status == 412
    assert "error" in answer.body

    # A new file appears, a removed one disappears.
    (state / "tenants" / "initech.yaml").write_text("id: initech\nname: Initech\n")
    assert api.request("GET", "/1.0/tenants/initech").body == {
        "id": "initech",
        "name": "Initech",
    }
    os.remove(state / "users" / "carol@example.org.yaml")
    assert api.request("GET", "/1.0/users/carol@example.org").status == 404
    emails = [user["email"] for user in api.request("GET", "/1.0/users").body]
    assert emails == ["alice@example.com", "bob@example.com"]


def test_a_broken_file_on_disk_is_named_in_a_json_error(server: ApiServer) -> None:
    path = server.state / "tenants" / "globex.yaml"
    path.write_text("id: globex\nname: [unclosed\n")

    answer = server.client.request("GET", "/1.0/tenants/globex")
    assert answer.status == 500
    assert "tenants/globex.yaml" in answer.body["error"]
    listing = server.client.request("GET", "/1.0/tenants")
    assert listing.status == 500
    assert "tenants/globex.yaml" in listing.body["error"]

    # Fixed by hand, it serves again.
    path.write_text("id: globex\nname: Globex\n")
    assert server.client.request("GET", "/1.0/tenants/globex").status == 200


def test_a_failing_commit_hook_rolls_the_write_back(server: ApiServer) -> None:
    state = server.state
    hook = state / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'refused by policy' >&2\nexit 1\n")
    hook.chmod(0o755)
    before, files = commit_count(state), tree(state)

    answer = server.client.request(
        "POST", "/1.0/tenants", {"id": "tenant1", "name": "T"}
    )

    assert answer.status == 500
    assert "refused by policy" in answer.body["error"]
    assert (commit_count(state), tree(state)) == (before, files)
    assert git(state, "status", "--porcelain") == ""


def test_a_write_is_refused_while_its_file_names_what_does_not_exist(
    server: ApiServer,
) -> None:
    state = server.state
    path = state / "tenants" / "globex.yaml"
    # By hand, a typo in the instance's id.
    path.write_text(path.read_text().replace("instance: IN1\n", "instance: IN9\n"))
    git(state, "commit", "--quiet", "--all", "--message", "A hand edit")
    before, files = commit_count(state), tree(state)

    answer = server.client.request("PUT", "/1.0/tenants/globex", {"name": "G2"})

    assert answer.status == 400
    assert "$.instance: instance 'IN9' does not exist" in answer.body["error"]
    assert (commit_count(state), tree(state)) == (before, files)

    # Once the file is mended, the same write goes through.
    path.write_text(path.read_text().replace("instance: IN9\n", "instance: IN1\n"))
    answer = server.client.request("PUT", "/1.0/tenants/globex", {"name": "G2"})
    assert answer.status == 200, answer.body


def test_a_write_keeps_the_mode_a_person_gave_the_file(server: ApiServer) -> None:
    path = server.state / "tenants" / "acme.yaml"
    path.chmod(0o600)  # it holds the pusher secret
    answer = server.client.request("PUT", "/1.0/tenants/acme", {"rate-limit": 6})
    assert answer.status == 200, answer.body
    assert path.stat().st_mode & 0o777 == 0o600


def test_etags_are_keyed_per_state_and_agree_between_servers(server: ApiServer):
    tag = server.client.request("GET", "/1.0/tenants/acme").headers["ETag"]
    with running_server(server.state) as second:
        assert second.client.request("GET", "/1.0/tenants/acme").headers["ETag"] == tag

    # Not a plain hash of the content: that would test a guessed secret.
    data = yaml.safe_load((server.state / "tenants" / "acme.yaml").read_text())
    text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    assert hashlib.sha256(text.encode()).hexdigest()[:32] not in tag
    key = server.state / ".git" / ".reconcile-etag.key"
    assert key.stat().st_mode & 0o777 == 0o600
