"""Refusals found by trying to break the API: each leaves the state as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_server import ApiServer, commit_count, demo_state, git, running_server
from test_api_errors import (
    assert_error,
    assert_refused,
    raw_exchange,
    raw_status_and_error,
)

from reconciler.api.http import MAX_DEPTH


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_server(demo_state(tmp_path, commit=True)) as running:
        yield running


def nested(depth: int) -> dict:
    value: dict = {"type": "statsd"}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_a_body_nested_too_deeply_is_a_400_not_a_crash(server):
    body = {"name": "Deep", "zk": "z:2181", "redis": "r", "stats": nested(200)}
    assert_refused(
        server, "POST", "/1.0/instances", 400, (f"{MAX_DEPTH} levels",), body=body
    )


@pytest.mark.parametrize(
    "path",
    ["/1.0/tenants/%FFacme", "/1.0/users/%FFalice@example.com", "/1.0/tenants/ac%C0me"],
)
def test_a_path_that_is_not_utf8_finds_nothing(server, path):
    for method in ("GET", "DELETE"):
        assert_refused(server, method, path, 400, ("not UTF-8",))
    assert server.client.request("GET", "/1.0/tenants/acme").status == 200


def test_a_refused_first_write_to_a_folder_leaves_no_folder(server):
    git(server.state, "rm", "-rq", "users")
    git(server.state, "commit", "-qm", "no users")
    hook = server.state / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    commits = commit_count(server.state)
    body = {"email": "dan@example.com", "name": "Dan", "password": "pw-of-dan"}
    answer = server.client.request("POST", "/1.0/users", body)
    assert_error(answer, 500, "git commit")
    assert not (server.state / "users").exists()
    assert commit_count(server.state) == commits


def test_a_body_with_a_bom_and_bad_utf8_after_it_is_still_refused(server):
    raw = b'\xef\xbb\xbf{"id": "x", "name": "\xff"}'
    headers = {"Content-Type": "application/json"}
    answer = server.client.request("POST", "/1.0/tenants", headers=headers, raw=raw)
    assert_error(answer, 400, "UTF-8")


def test_a_chunked_body_on_a_get_is_read_not_taken_for_a_request(server):
    first = (
        b"GET /1.0/tenants/globex HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    second = b"GET /1.0/tenants/acme HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answered = raw_exchange(server, first + second)
    assert answered.count(b"HTTP/1.1 200 OK") == 2, answered
    assert b'"id": "acme"' in answered


@pytest.mark.parametrize("body", [b"{ }", b"\xef\xbb\xbf{}", b"\n{}\n"])
def test_an_empty_object_counts_as_no_body(server, body):
    headers = {"Content-Type": "application/json"}
    answer = server.client.request(
        "POST", "/1.0/tenants/globex/integrations/echo", headers=headers, raw=body
    )
    assert answer.status == 201, answer.raw


@pytest.mark.parametrize("length", [b"+2", b"1_0", b"0x2"])
def test_a_content_length_that_is_not_plain_digits_is_refused(server, length):
    request = (
        b"POST /1.0/tenants HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + length + b"\r\n\r\n{}"
    )
    status, error = raw_status_and_error(raw_exchange(server, request))
    assert status == 400
    assert "Content-Length" in error
