"""Partial updates and links over real HTTP: what a PUT or a link call leaves.

A field sent replaces its value whole, null removes an optional field, a
list emptied by the API leaves the file, a body sent where none is read is
refused, and each commit says what it did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from api_server import ApiServer, commit_count, demo_state, git, running_server
from test_api_errors import assert_error, assert_refused

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_server(demo_state(tmp_path, commit=True)) as running:
        yield running


def on_disk(server: ApiServer, folder: str, name: str) -> dict:
    return yaml.safe_load((server.state / folder / f"{name}.yaml").read_text())


def last_commit(server: ApiServer) -> str:
    return git(server.state, "log", "-1", "--format=%B").strip()


def test_null_removes_an_optional_field_and_the_commit_says_so(server):
    answer = server.client.request("PUT", "/1.0/tenants/acme", {"rate-limit": None})
    assert answer.status == 200, answer.raw
    assert "rate-limit" not in answer.body
    assert "rate-limit" not in on_disk(server, "tenants", "acme")
    assert last_commit(server) == "Update tenant acme: rate-limit removed"


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        ("/1.0/tenants/acme", {"name": None}, "$.name: name cannot be removed"),
        (
            "/1.0/users/alice@example.com",
            {"password": None},
            "$.password: password cannot be removed",
        ),
    ],
)
def test_null_for_a_required_field_is_refused(server, path, body, named):
    assert_refused(server, "PUT", path, 400, (named,), body=body)


def test_removing_the_last_of_two_parts_of_an_integration_is_refused(server):
    echo = server.client.request("GET", "/1.0/integrations/echo").body
    assert "endpoint" in echo and "listener" not in echo
    assert_refused(
        server,
        "PUT",
        "/1.0/integrations/echo",
        400,
        ("needs at least one of the fields 'endpoint', 'listener'",),
        body={"endpoint": None},
    )


def test_a_nested_object_sent_is_replaced_whole(server):
    before = server.client.request("GET", "/1.0/instances/IN1").body
    assert len(before["stats"]) > 1, before
    answer = server.client.request(
        "PUT", "/1.0/instances/IN1", {"stats": {"type": "statsd"}}
    )
    assert answer.status == 200, answer.raw
    assert answer.body["stats"] == {"type": "statsd"}
    assert answer.body["name"] == before["name"]  # fields not sent stay


def test_a_body_sent_to_a_route_that_reads_none_is_refused(server):
    assert_refused(
        server,
        "POST",
        "/1.0/tenants/globex/integrations/echo",
        400,
        ("takes no body",),
        body={"params": {"x": 1}},
    )
    # An empty object, which some clients always send, is no body.
    answer = server.client.request("POST", "/1.0/tenants/globex/integrations/echo", {})
    assert answer.status == 201, answer.raw


def test_a_json_body_with_a_byte_order_mark_is_read(server):
    raw = b'\xef\xbb\xbf{"id": "bom", "name": "Byte Order"}'
    answer = server.client.request("POST", "/1.0/tenants", headers=JSON, raw=raw)
    assert answer.status == 201, answer.raw
    assert answer.body["name"] == "Byte Order"


def test_a_list_emptied_by_the_api_leaves_the_file(server):
    user = on_disk(server, "users", "carol@example.org")
    assert user["tenants"], user
    for tenant in user["tenants"]:
        answer = server.client.request(
            "DELETE", f"/1.0/users/carol@example.org/tenants/{tenant}"
        )
        assert answer.status == 204, answer.raw
    assert "tenants" not in on_disk(server, "users", "carol@example.org")
    shown = server.client.request("GET", "/1.0/users/carol@example.org").body
    assert shown["tenants"] == []


def test_a_repeated_tenant_is_named_once_in_plain_words(server):
    answer = server.client.request(
        "PUT", "/1.0/users/alice@example.com", {"tenants": ["acme", "acme"]}
    )
    error = assert_error(answer, 400, '$.tenants: "acme" is listed twice')
    assert "[" not in error


def test_moving_a_tenant_says_where_from(server):
    created = server.client.request(
        "POST", "/1.0/instances", {"name": "Second", "zk": "z:2181", "redis": "r"}
    )
    assert created.status == 201, created.raw
    new = created.body["id"]
    commits = commit_count(server.state)
    answer = server.client.request("POST", "/1.0/tenants/acme/instance", {"id": new})
    assert answer.status == 201, answer.raw
    assert commit_count(server.state) == commits + 1
    assert last_commit(server) == f"Add tenant acme to instance {new} (moved from IN1)"


def test_redact_must_name_a_param_of_the_integration(server):
    body = {
        "id": "leaky",
        "display": "Leaky",
        "endpoint": {
            "name": "leaky",
            "type": "leaky",
            "params": ["token"],
            "redact": ["tokn"],
        },
    }
    assert_refused(
        server,
        "POST",
        "/1.0/integrations",
        400,
        ("$.endpoint.redact[0]", "'tokn'", "token"),
        body=body,
    )


def test_an_instance_made_by_hand_and_deleted_never_has_its_id_again(server):
    (server.state / "instances" / "IN7.yaml").write_text(
        "name: By hand\nzk: z:2181\nredis: r\n"
    )
    assert server.client.request("DELETE", "/1.0/instances/IN7").status == 204
    body = {"name": "After", "zk": "z:2181", "redis": "r"}
    created = server.client.request("POST", "/1.0/instances", body)
    assert created.status == 201, created.raw
    assert created.body["id"] == "IN8"
