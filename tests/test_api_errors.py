"""The /1.0 API refuses what it cannot do, over real HTTP, and says why.

Every refusal is a JSON object whose `error` names what was wrong (the field,
the id, the method, the path) and never holds a traceback; a refused write
changes no file and makes no commit. Users' passwords and hashes, and
tenants' integration secrets, never leave the server.

Most tests share one server over one copy of examples/demo: they only read,
are refused, or create objects of their own. A test that needs the demo as
it ships (or may break the state) gets a server of its own.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from api_server import (
    Answer,
    ApiServer,
    commit_count,
    demo_state,
    git,
    running_server,
    tree,
)
from argon2 import PasswordHasher

from reconciler.api.http import MAX_BODY

JSON = {"Content-Type": "application/json"}
PASSWORD = "butter-secret-1"
SECRET = "demo-secret-value"  # the acme tenant's pusher secret, in the demo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One server for the module, over a git copy of the demo."""
    state = demo_state(tmp_path_factory.mktemp("api-errors"), commit=True)
    with running_server(state) as running:
        yield running


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ApiServer]:
    """A server of the test's own, over a pristine git copy of the demo."""
    with running_server(demo_state(tmp_path, commit=True)) as running:
        yield running


# -- helpers


def files(server: ApiServer) -> dict[str, bytes]:
    """Every file of the state and beside it: an id that escaped shows here."""
    return tree(server.state.parent)


def assert_error(answer: Answer, status: int, *names: str) -> str:
    """The answer is `status` with a JSON error that names each of `names`."""
    assert answer.status == status, (answer.status, answer.raw)
    assert answer.headers.get_content_type() == "application/json", answer.headers
    assert isinstance(answer.body, dict), answer.raw
    error = answer.body.get("error")
    assert isinstance(error, str) and error, answer.body
    assert "Traceback" not in error and 'File "' not in error, error
    for name in names:
        assert name in error, f"{name!r} is not named in {error!r}"
    return error


def assert_refused(
    server: ApiServer,
    method: str,
    path: str,
    status: int,
    names: tuple[str, ...] = (),
    **request: Any,
) -> Answer:
    """The request is refused with a JSON error, and no file or commit changes."""
    before, commits = files(server), commit_count(server.state)
    answer = server.client.request(method, path, **request)
    assert_error(answer, status, *names)
    assert files(server) == before, "a refused write changed files"
    assert commit_count(server.state) == commits, "a refused write made a commit"
    return answer


def new_tenant(**fields: Any) -> dict[str, Any]:
    """A create body for a tenant no test makes, with `fields` on top."""
    return {"id": "t-new", "name": "New Tenant", **fields}


def new_user(**fields: Any) -> dict[str, Any]:
    """A create body for a user no test makes, with `fields` on top."""
    return {
        "email": "new@example.com",
        "name": "New User",
        "password": PASSWORD,
        **fields,
    }


def raw_json(value: Any) -> bytes:
    """`value` as JSON in UTF-8, non-ASCII characters as they are."""
    return json.dumps(value, ensure_ascii=False).encode()


def stderr_so_far(server: ApiServer) -> str:
    """Everything the server wrote on stderr up to a request made now."""
    marker = f"/1.0/stderr-marker-{uuid.uuid4().hex}"
    server.client.request("GET", marker)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = "".join(server.stderr)
        if marker in text:
            return text
        time.sleep(0.02)
    raise AssertionError("the server did not log the marker request on stderr")


def create_user(server: ApiServer, email: str, **fields: Any) -> dict[str, Any]:
    body = {"email": email, "name": "Test User", "password": PASSWORD, **fields}
    answer = server.client.request("POST", "/1.0/users", body)
    assert answer.status == 201, answer.raw
    return answer.body


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# -- routes and methods


@pytest.mark.parametrize(
    "path",
    [
        "/1.0/nope",
        "/1.0/tenants/acme/nope",
        "/1.0/instances/IN1/nodes",
        "/nope",
        "/",
        "/2.0/tenants",
    ],
)
def test_unknown_route_is_404_naming_the_path(server, path):
    assert_error(server.client.request("GET", path), 404, path)


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("/1.0/tenants/nope", "'nope'"),
        ("/1.0/users/nobody@example.com", "'nobody@example.com'"),
        ("/1.0/integrations/nope", "'nope'"),
        ("/1.0/instances/IN99", "'IN99'"),
        ("/1.0/tenants/nope/users", "'nope'"),
    ],
)
def test_unknown_object_is_404_naming_its_id(server, path, what):
    assert_error(server.client.request("GET", path), 404, what)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/1.0/tenants/acme", {"GET", "PUT", "DELETE"}),
        ("DELETE", "/1.0/tenants", {"GET", "POST"}),
        ("PUT", "/1.0/users", {"GET", "POST"}),
        ("POST", "/1.0/integrations/echo", {"GET", "PUT", "DELETE"}),
    ],
)
def test_wrong_method_is_405_naming_it_with_an_allow_header(
    server, method, path, allowed
):
    answer = assert_refused(server, method, path, 405, (method, path))
    assert set(answer.headers["Allow"].split(",")) == allowed


# -- request bodies


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"{bad", "malformed JSON at line 1 column 2"),
        (b'{"id": "t-json", "name": "n",}', "malformed JSON"),
        (b'{"id": "t-json", "name": "n", "name": "m"}', "'name' is given twice"),
        (b'{"id": "t-json", "name": "n", "rate-limit": NaN}', "NaN"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"", "JSON object"),
    ],
    ids=["syntax", "trailing-comma", "duplicate-key", "nan", "not-utf8", "empty"],
)
def test_malformed_json_is_400(server, raw, named):
    assert_refused(server, "POST", "/1.0/tenants", 400, (named,), raw=raw, headers=JSON)
    assert_refused(
        server, "PUT", "/1.0/tenants/acme", 400, (named,), raw=raw, headers=JSON
    )


@pytest.mark.parametrize("body", [["acme"], "acme", 42, None, True])
def test_json_body_that_is_not_an_object_is_400(server, body):
    raw = json.dumps(body).encode()
    named = ("must be a JSON object",)
    assert_refused(server, "POST", "/1.0/tenants", 400, named, raw=raw, headers=JSON)
    assert_refused(
        server, "PUT", "/1.0/users/alice@example.com", 400, named, raw=raw, headers=JSON
    )


ENDPOINT = {"name": "fresh", "type": "fresh"}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/1.0/tenants", new_tenant(colour="red"), "colour"),
        ("PUT", "/1.0/tenants/acme", {"instance": "IN1"}, "instance"),
        ("POST", "/1.0/users", new_user(**{"password-hash": "$x$"}), "password-hash"),
        ("PUT", "/1.0/users/alice@example.com", {"client_id": "x"}, "client_id"),
        (
            "POST",
            "/1.0/instances",
            {"name": "n", "zk": "zk:2181", "redis": "r", "zookeeper": "z"},
            "zookeeper",
        ),
        (
            "POST",
            "/1.0/integrations",
            {"id": "fresh", "endpoint": ENDPOINT, "extra": 1},
            "extra",
        ),
        ("POST", "/1.0/tenants/acme/instance", {"id": "IN1", "force": True}, "force"),
    ],
)
def test_unknown_field_is_400_naming_it(server, method, path, body, field):
    assert_refused(server, method, path, 400, (f"'{field}'",), body=body)


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/1.0/tenants", new_tenant(**{"rate-limit": "250"}), "rate-limit"),
        ("PUT", "/1.0/tenants/acme", {"rate-limit": "250"}, "rate-limit"),
        ("PUT", "/1.0/tenants/acme", {"rate-limit": True}, "rate-limit"),
        ("POST", "/1.0/tenants", new_tenant(name=None), "name"),
        ("POST", "/1.0/users", new_user(tenants="acme"), "tenants"),
        ("PUT", "/1.0/users/alice@example.com", {"tenants": "acme"}, "tenants"),
        ("POST", "/1.0/users", new_user(email=5), "email"),
        ("POST", "/1.0/instances", {"name": "n", "zk": 2181, "redis": "r"}, "zk"),
        ("PUT", "/1.0/instances/IN1", {"stats": "graphite"}, "stats"),
    ],
)
def test_mistyped_field_is_400_naming_it(server, method, path, body, field):
    assert_refused(server, method, path, 400, (f"$.{field}",), body=body)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/1.0/tenants", {"id": "t-new"}, "name"),
        ("/1.0/tenants", {"name": "No Id"}, "id"),
        ("/1.0/instances", {"name": "n", "redis": "redis://r:6379"}, "zk"),
        ("/1.0/users", {"email": "new@example.com", "name": "New User"}, "password"),
        ("/1.0/users", {"name": "n", "password": PASSWORD}, "email"),
        ("/1.0/tenants/acme/instance", {}, "id"),
    ],
)
def test_missing_required_field_is_400_naming_it(server, path, body, field):
    assert_refused(server, "POST", path, 400, (f"'{field}'",), body=body)


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        ("/1.0/tenants", {"id": "acme", "name": "Another Acme"}, "'acme'"),
        ("/1.0/integrations", {"id": "echo", "endpoint": ENDPOINT}, "'echo'"),
        (
            "/1.0/users",
            {"email": "ALICE@example.com", "name": "A", "password": PASSWORD},
            "'alice@example.com'",
        ),
        (
            "/1.0/users",
            {"email": "Alice@EXAMPLE.com", "name": "A", "password": PASSWORD},
            "'alice@example.com'",
        ),
    ],
)
def test_duplicate_id_is_409_naming_it(server, path, body, key):
    assert_refused(server, "POST", path, 409, (key, "already exists"), body=body)


def test_body_over_the_limit_is_413(server):
    head, tail = b'{"id": "t-big", "name": "', b'"}'
    raw = head + b"x" * (MAX_BODY + 1 - len(head) - len(tail)) + tail
    assert len(raw) == MAX_BODY + 1
    assert_refused(
        server, "POST", "/1.0/tenants", 413, (str(MAX_BODY),), raw=raw, headers=JSON
    )


def test_chunked_body_over_the_limit_is_413(server):
    """No Content-Length to check up front: the limit holds while reading."""
    chunks = [b'{"id": "t-big", "name": "', *[b"x" * 65536] * 17, b'"}']
    assert sum(map(len, chunks)) > MAX_BODY
    before = files(server)
    connection = http.client.HTTPConnection(
        server.client.host, server.client.port, timeout=30
    )
    try:
        try:
            connection.request(
                "POST",
                "/1.0/tenants",
                body=iter(chunks),
                headers={**JSON, "Transfer-Encoding": "chunked"},
                encode_chunked=True,
            )
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything
        response = connection.getresponse()
        content = response.read()
    finally:
        connection.close()
    assert response.status == 413, content
    assert str(MAX_BODY) in json.loads(content)["error"]
    assert files(server) == before


def raw_exchange(server: ApiServer, data: bytes, close: bool = True) -> bytes:
    """Send `data` as it is on a socket; everything the server answers."""
    with socket.create_connection(
        (server.client.host, server.client.port), timeout=30
    ) as connection:
        connection.sendall(data)
        if close:
            connection.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def raw_status_and_error(received: bytes) -> tuple[int, str]:
    """The status and error of the one answer in `received`."""
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert b"application/json" in head, head
    return status, json.loads(body)["error"]  # a second answer would fail here


POST = b"POST /1.0/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status", "named"),
    [
        pytest.param(
            POST + b"Transfer-Encoding: chunked\r\n\r\nffffffffff\r\n" + b"x" * 1000,
            413,
            str(MAX_BODY),
            id="one-chunk-announcing-a-terabyte",
        ),
        pytest.param(
            POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            400,
            "chunked",
            id="a-chunk-size-that-is-no-number",
        ),
        pytest.param(
            POST + b"Content-Length: 500\r\n\r\n" + b'{"id": "t-short", "name": "x"}',
            400,
            "500 bytes",
            id="a-body-shorter-than-its-content-length",
        ),
        pytest.param(
            POST
            + b"Content-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b'1e\r\n{"id": "t-both", "name": "x"}\r\n0\r\n\r\n',
            400,
            "both Content-Length and Transfer-Encoding",
            id="content-length-and-chunked-at-once",
        ),
    ],
)
def test_a_body_framed_wrong_is_refused_as_json_and_writes_nothing(
    server, request_bytes, status, named
):
    before = files(server)
    started = time.monotonic()
    answered = raw_exchange(server, request_bytes)
    assert time.monotonic() - started < 10
    assert raw_status_and_error(answered)[0] == status, answered
    assert named in raw_status_and_error(answered)[1]
    assert files(server) == before
    assert "Traceback" not in stderr_so_far(server)
    assert server.client.request("GET", "/1.0/tenants").status == 200


def test_headers_over_64_kib_are_refused(server):
    padding = b"X-Padding: " + b"p" * 70_000 + b"\r\n"
    answered = raw_exchange(
        server, b"GET /1.0/tenants HTTP/1.1\r\nHost: x\r\n" + padding
    )
    status, error = raw_status_and_error(answered)
    assert status in (413, 414), answered[:200]
    assert "header" in error.lower() or "long" in error.lower(), error
    assert server.client.request("GET", "/1.0/tenants").status == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(
            POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
            id="a-transfer-coding-the-server-does-not-know",
        ),
        pytest.param(
            b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            id="a-request-line-over-64-kib",
        ),
        pytest.param(
            POST + b"Content-Length: ten\r\n\r\n{}",
            400,
            id="a-content-length-that-is-no-number",
        ),
        pytest.param(b"NONSENSE\r\n\r\n", 400, id="a-broken-request-line"),
        pytest.param(
            POST + b"Content-Length: 2\r\nContent-Length: 30\r\n\r\n{}",
            400,
            id="two-content-lengths",
        ),
    ],
)
def test_the_http_servers_own_refusals_are_json_too(server, request_bytes, status):
    answered = raw_exchange(server, request_bytes)
    assert raw_status_and_error(answered)[0] == status, answered[:300]
    assert server.client.request("GET", "/1.0/tenants").status == 200


@pytest.mark.parametrize(
    ("content_type", "named"),
    [
        ("text/plain", "text/plain"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        ("application/json; charset=latin-1", "latin-1"),
        (None, "application/json"),
    ],
)
def test_body_that_is_not_application_json_is_415(server, content_type, named):
    headers = {"Content-Type": content_type} if content_type else {}
    raw = b'{"id": "t-typed", "name": "Typed"}'
    assert_refused(
        server, "POST", "/1.0/tenants", 415, (named,), raw=raw, headers=headers
    )
    assert_refused(
        server, "PUT", "/1.0/tenants/acme", 415, (named,), raw=raw, headers=headers
    )


@pytest.mark.parametrize(
    ("content_type", "key"),
    [
        ("application/json; charset=utf-8", "t-utf8"),
        ("application/json;charset=UTF-8", "t-utf8-upper"),
        ("Application/JSON", "t-mixed-case"),
    ],
)
def test_application_json_with_utf8_charset_is_accepted(server, content_type, key):
    headers = {"Content-Type": content_type}
    raw = raw_json({"id": key, "name": "Zoë"})
    created = server.client.request("POST", "/1.0/tenants", raw=raw, headers=headers)
    assert created.status == 201, created.raw
    assert created.body == {"id": key, "name": "Zoë"}
    raw = raw_json({"name": "Zoë Renamed"})
    path = f"/1.0/tenants/{key}"
    updated = server.client.request("PUT", path, raw=raw, headers=headers)
    assert updated.status == 200, updated.raw
    assert read_yaml(server.state / "tenants" / f"{key}.yaml")["name"] == "Zoë Renamed"


# -- users' emails


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "two@@example.com",
        "nobody@localhost",
        " spaced@example.com",
        "alicé@example.com",
        "../../etc/passwd@example.com",
    ],
)
def test_invalid_email_on_create_is_400(server, email):
    body = new_user(email=email)
    assert_refused(server, "POST", "/1.0/users", 400, ("$.email",), body=body)


def test_user_path_accepts_percent_encoded_at_and_plus(server):
    created = create_user(server, "a+b@example.com")
    assert created["email"] == "a+b@example.com"
    for path in ("/1.0/users/a%2Bb%40example.com", "/1.0/users/a+b@example.com"):
        answer = server.client.request("GET", path)
        assert answer.status == 200, (path, answer.raw)
        assert answer.body == created


@pytest.mark.parametrize(
    ("path", "email"),
    [
        ("/1.0/users/ALICE@example.com", "alice@example.com"),
        ("/1.0/users/Alice%40Example.COM", "alice@example.com"),
        ("/1.0/users/CAROL@EXAMPLE.ORG", "carol@example.org"),
    ],
)
def test_user_lookup_in_any_letter_case_finds_the_same_user(server, path, email):
    wanted = server.client.request("GET", f"/1.0/users/{email}")
    answer = server.client.request("GET", path)
    assert answer.status == 200, answer.raw
    assert answer.body == wanted.body
    assert answer.headers["ETag"] == wanted.headers["ETag"]


def test_user_email_sent_back_in_another_case_is_the_same_user(server):
    created = create_user(server, "casey@example.com")
    path = "/1.0/users/casey@example.com"
    answer = server.client.request(
        "PUT", path, {"email": "Casey@Example.COM", "name": "Casey"}
    )
    assert answer.status == 200, answer.raw
    assert answer.body == {**created, "name": "Casey"}

    answer = server.client.request("PUT", path, {"email": "other@example.com"})
    assert_error(answer, 400, "email")


# -- ids that try to leave their folder

ESCAPING_PATHS = [
    ("/1.0/tenants/..", ".."),
    ("/1.0/tenants/../x", "../x"),
    ("/1.0/tenants/a/b", "a/b"),
    ("/1.0/tenants/%2e%2e", ".."),
    ("/1.0/tenants/%2e%2e%2fx", ".."),
    ("/1.0/tenant/..%2Fusers%2Falice@example.com", ".."),
    ("/1.0/users/..%2F..%2Fetc%2Fpasswd", ".."),
    ("/1.0/users/..", ".."),
    ("/1.0/integrations/..%2F..%2Fusers%2Falice@example.com", ".."),
    ("/1.0/instances/..%2FIN1", ".."),
]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize(("path", "named"), ESCAPING_PATHS)
def test_id_in_the_path_cannot_name_a_file_outside_its_folder(
    server, method, path, named
):
    field = "display" if path.startswith("/1.0/integrations/") else "name"
    body = {field: "Escaped"} if method == "PUT" else None  # a valid update
    before = files(server)
    answer = server.client.request(method, path, body)
    assert answer.status in (400, 404), (answer.status, answer.raw)
    assert_error(answer, answer.status, named)
    assert files(server) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/1.0/tenants", {"id": "../x", "name": "n"}),
        ("/1.0/tenants", {"id": "..", "name": "n"}),
        ("/1.0/tenants", {"id": "a/b", "name": "n"}),
        ("/1.0/tenants", {"id": "", "name": "n"}),
        ("/1.0/tenants", {"id": ".hidden", "name": "n"}),
        ("/1.0/integrations", {"id": "../x", "endpoint": ENDPOINT}),
        ("/1.0/users", new_user(email="a/../../b@example.com")),
        ("/1.0/tenants/acme/instance", {"id": "../IN1"}),
        ("/1.0/tenants/acme/integrations/..%2Fpusher", None),
        ("/1.0/users/alice@example.com/tenants/..%2Facme", None),
    ],
)
def test_id_in_a_body_or_link_cannot_name_a_file_outside_its_folder(server, path, body):
    before = files(server)
    answer = server.client.request("POST", path, body)
    assert answer.status in (400, 404), (answer.status, answer.raw)
    assert_error(answer, answer.status)
    assert files(server) == before


# -- values the files cannot hold

UNSTORABLE = [
    pytest.param(b'{"id": "t-inf", "name": "n", "rate-limit": 1e999}', id="inf"),
    pytest.param(
        b'{"id": "t-huge", "name": "n", "rate-limit": ' + b"9" * 400 + b"}",
        id="400-digits",
    ),
    pytest.param(b'{"id": "t-surrogate", "name": "\\ud800"}', id="lone-surrogate"),
]


@pytest.mark.parametrize("raw", UNSTORABLE)
def test_value_a_file_cannot_hold_is_refused_and_changes_nothing(server, raw):
    before, commits = files(server), commit_count(server.state)
    answer = server.client.request("POST", "/1.0/tenants", raw=raw, headers=JSON)
    assert answer.status >= 400, answer.raw
    assert_error(answer, answer.status)
    assert files(server) == before
    assert commit_count(server.state) == commits


@pytest.mark.parametrize("raw", UNSTORABLE)
def test_value_a_file_cannot_hold_is_a_400_client_error(server, raw):
    answer = server.client.request("POST", "/1.0/tenants", raw=raw, headers=JSON)
    assert_error(answer, 400)


def test_object_too_large_for_a_state_file_is_refused_and_changes_nothing(
    fresh_server,
):
    raw = raw_json({"id": "t-del", "name": "\x7f" * 300_000})
    assert len(raw) < MAX_BODY
    before, commits = files(fresh_server), commit_count(fresh_server.state)
    answer = fresh_server.client.request("POST", "/1.0/tenants", raw=raw, headers=JSON)
    assert files(fresh_server) == before, "the refused tenant was written"
    assert commit_count(fresh_server.state) == commits
    assert_error(answer, 400, "name")
    assert fresh_server.client.request("GET", "/1.0/tenants").status == 200


def test_invalid_file_on_disk_is_500_naming_the_file_and_line(fresh_server):
    (fresh_server.state / "tenants" / "globex.yaml").write_text(
        'id: globex\nname: "Globex"\nrate-limit: [\n'
    )
    for path in ("/1.0/tenants/globex", "/1.0/tenants"):
        answer = fresh_server.client.request("GET", path)
        error = assert_error(answer, 500, "tenants/globex.yaml:")
        assert re.search(r"tenants/globex\.yaml:\d+:", error), error
    assert "tenants/globex.yaml" in stderr_so_far(fresh_server)
    assert fresh_server.client.request("GET", "/1.0/tenants/acme").status == 200


# -- passwords, hashes and client ids


def test_password_and_its_hash_never_leave_the_server(server):
    email = "keeper@example.com"
    path = f"/1.0/users/{email}"
    body = new_user(email=email, tenants=["acme"])
    answers = [
        server.client.request("POST", "/1.0/users", body),
        server.client.request("GET", path),
        server.client.request("GET", "/1.0/users"),
        server.client.request("GET", "/1.0/tenants/acme/users"),
        server.client.request("PUT", path, {"name": "Keeper Renamed"}),
        server.client.request("PUT", path, {"password": "butter-secret-2"}),
        server.client.request("GET", path),
    ]
    assert answers[0].status == 201, answers[0].raw
    for answer in answers:
        assert answer.status in (200, 201), answer.raw
        for word in (b"butter-secret", b"password", b"$argon2", b"$scrypt"):
            assert word not in answer.raw, (word, answer.raw)
    assert answers[-1].body["name"] == "Keeper Renamed"

    file = server.state / "users" / f"{email}.yaml"
    stored = read_yaml(file)["password-hash"]
    assert stored.startswith("$argon2id$")
    assert b"butter-secret" not in file.read_bytes()
    assert PasswordHasher().verify(stored, "butter-secret-2")

    assert "butter-secret" not in stderr_so_far(server)
    assert "butter-secret" not in git(server.state, "log", "--patch", "--all")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/1.0/users", new_user(password=[PASSWORD])),
        ("POST", "/1.0/users", new_user(password=PASSWORD * 100)),
        ("PUT", "/1.0/users/alice@example.com", {"password": 1234567890}),
        ("PUT", "/1.0/users/alice@example.com", {"password": ""}),
    ],
)
def test_refused_password_is_not_quoted_in_the_error(server, method, path, body):
    answer = assert_refused(server, method, path, 400, ("$.password",), body=body)
    assert b"butter-secret" not in answer.raw
    assert b"1234567890" not in answer.raw


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/1.0/users"), ("PUT", "/1.0/users/alice@example.com")],
)
def test_a_lone_surrogate_in_a_password_is_a_400_and_logs_nothing(server, method, path):
    raw = b'{"email": "half@example.com", "name": "Half", "password": '
    raw += b'"butter-secret-half\\ud800"}'
    if method == "PUT":
        raw = b'{"password": "butter-secret-half\\ud800"}'
    before = files(server)
    answer = server.client.request(method, path, raw=raw, headers=JSON)
    assert "surrogate" in assert_error(answer, 400)
    assert b"butter-secret" not in answer.raw
    assert files(server) == before
    log = stderr_so_far(server)
    assert "Traceback" not in log and "butter-secret" not in log


def test_client_id_has_at_least_128_random_bits(server):
    first = create_user(server, "client-one@example.com")["client-id"]
    second = create_user(server, "client-two@example.com")["client-id"]
    for client_id in (first, second):
        decoded = base64.urlsafe_b64decode(client_id + "=" * (-len(client_id) % 4))
        assert len(decoded) >= 16, client_id
    assert first != second


# -- ETag, If-Match, If-None-Match


@pytest.mark.parametrize(
    "path",
    [
        "/1.0/tenants/acme",
        "/1.0/users/alice@example.com",
        "/1.0/integrations/echo",
        "/1.0/instances/IN1",
        "/1.0/tenants/acme/instance",
    ],
)
def test_single_object_carries_an_etag(server, path):
    answer = server.client.request("GET", path)
    assert answer.status == 200, answer.raw
    etag = answer.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2, etag
    assert server.client.request("GET", path).headers["ETag"] == etag


def test_put_with_the_current_if_match_succeeds_and_a_stale_one_is_412(server):
    created = server.client.request(
        "POST", "/1.0/tenants", {"id": "t-etag", "name": "Before"}
    )
    assert created.status == 201, created.raw
    path = "/1.0/tenants/t-etag"
    old = server.client.request("GET", path).headers["ETag"]

    first = server.client.request("PUT", path, {"name": "First"}, {"If-Match": old})
    assert first.status == 200, first.raw
    assert first.headers["ETag"] != old
    assert first.headers["ETag"] == server.client.request("GET", path).headers["ETag"]

    error = assert_refused(
        server,
        "PUT",
        path,
        412,
        ("t-etag",),
        body={"name": "Second"},
        headers={"If-Match": old},
    ).body["error"]
    assert first.headers["ETag"] in error  # the current version, to read again
    assert server.client.request("GET", path).body["name"] == "First"


@pytest.mark.parametrize(
    ("create", "path", "change"),
    [
        (
            ("/1.0/tenants", {"id": "t-stale", "name": "Stale"}),
            "/1.0/tenants/t-stale",
            {"name": "Changed"},
        ),
        (
            ("/1.0/users", new_user(email="stale@example.com")),
            "/1.0/users/STALE@example.com",
            {"name": "Changed"},
        ),
        (
            ("/1.0/integrations", {"id": "stale", "endpoint": ENDPOINT}),
            "/1.0/integrations/stale",
            {"display": "Changed"},
        ),
    ],
)
def test_delete_with_a_stale_if_match_is_412_and_deletes_nothing(
    server, create, path, change
):
    created = server.client.request("POST", *create)
    assert created.status == 201, created.raw
    old = created.headers["ETag"]
    assert server.client.request("PUT", path, change).status == 200
    assert_refused(server, "DELETE", path, 412, headers={"If-Match": old})

    current = server.client.request("GET", path).headers["ETag"]
    deleted = server.client.request("DELETE", path, headers={"If-Match": current})
    assert deleted.status == 204, deleted.raw
    assert server.client.request("GET", path).status == 404


def test_if_none_match_with_the_current_etag_is_304(server):
    path = "/1.0/tenants/globex"
    etag = server.client.request("GET", path).headers["ETag"]
    answer = server.client.request("GET", path, headers={"If-None-Match": etag})
    assert answer.status == 304
    assert answer.raw == b""
    assert answer.headers["ETag"] == etag
    other = server.client.request("GET", path, headers={"If-None-Match": '"other"'})
    assert other.status == 200
    assert other.body["id"] == "globex"


def test_if_none_match_star_is_304_for_an_existing_object(server):
    answer = server.client.request(
        "GET", "/1.0/tenants/globex", headers={"If-None-Match": "*"}
    )
    assert answer.status == 304


def test_if_match_with_a_weak_etag_is_412(server):
    created = server.client.request(
        "POST", "/1.0/tenants", {"id": "t-weak", "name": "Weak"}
    )
    assert created.status == 201, created.raw
    weak = "W/" + created.headers["ETag"]
    assert_refused(
        server,
        "PUT",
        "/1.0/tenants/t-weak",
        412,
        body={"name": "Changed"},
        headers={"If-Match": weak},
    )


# -- deletes that would leave dangling references


@pytest.mark.parametrize(
    ("integration", "tenants"),
    [("echo", ["acme", "globex"]), ("pusher", ["acme"])],
)
def test_deleting_an_integration_in_use_is_409_listing_its_tenants(
    server, integration, tenants
):
    answer = assert_refused(
        server,
        "DELETE",
        f"/1.0/integrations/{integration}",
        409,
        (integration, *tenants),
    )
    assert answer.body["tenants"] == tenants
    assert (server.state / "integrations" / f"{integration}.yaml").is_file()


def test_deleting_a_tenant_removes_it_from_its_users(fresh_server):
    client, state = fresh_server.client, fresh_server.state
    commits = commit_count(state)
    bob = (state / "users" / "bob@example.com.yaml").read_bytes()

    answer = client.request("DELETE", "/1.0/tenants/globex")
    assert answer.status == 204, answer.raw
    assert answer.raw == b""

    alice = client.request("GET", "/1.0/users/alice@example.com").body
    carol = client.request("GET", "/1.0/users/carol@example.org").body
    assert alice["tenants"] == ["acme"]
    assert carol["tenants"] == []
    assert read_yaml(state / "users" / "alice@example.com.yaml")["tenants"] == ["acme"]
    assert not read_yaml(state / "users" / "carol@example.org.yaml").get("tenants")
    assert (state / "users" / "bob@example.com.yaml").read_bytes() == bob
    assert not (state / "tenants" / "globex.yaml").exists()
    assert_error(client.request("GET", "/1.0/tenants/globex"), 404, "'globex'")
    assert commit_count(state) == commits + 1


# -- tenants' integration secrets


def test_integration_secret_never_appears_in_an_answer(server):
    assert SECRET in (server.state / "tenants" / "acme.yaml").read_text()
    paths = [
        "/1.0/tenants",
        "/1.0/tenants/acme",
        "/1.0/tenant/acme",
        "/1.0/tenants/acme/integrations",
        "/1.0/tenants/acme/instance",
        "/1.0/instances/IN1/tenants",
        "/1.0/integrations",
        "/1.0/integrations/pusher",
    ]
    for path in paths:
        answer = server.client.request("GET", path)
        assert answer.status == 200, (path, answer.raw)
        assert SECRET.encode() not in answer.raw, path
        assert b"integration-params" not in answer.raw, path
    assert SECRET.encode() not in server.client.request("GET", "/1.0/openapi.json").raw
    same = {"name": "Acme Corporation"}  # a write that leaves the file as it is
    renamed = server.client.request("PUT", "/1.0/tenants/acme", same)
    assert renamed.status == 200, renamed.raw
    assert SECRET.encode() not in renamed.raw
    assert SECRET in (server.state / "tenants" / "acme.yaml").read_text()
    assert SECRET not in stderr_so_far(server)


def test_a_path_cannot_forge_a_line_of_the_access_log(server):
    forged = "x%0AINFO:%20DELETE%20/1.0/tenants/acme%20204%200.1ms%00"
    assert server.client.request("GET", f"/1.0/tenants/{forged}").status == 404
    log = stderr_so_far(server)
    assert "\nINFO: DELETE /1.0/tenants/acme 204" not in log
    assert "GET /1.0/tenants/x%0AINFO:%20DELETE" in log
    assert "\x00" not in log


@pytest.mark.parametrize(
    "path",
    [
        "/1.0/users/%E2%84%AAarol@example.org",  # a Kelvin sign for the K
        "/1.0/users/%20carol@example.org",
        "/1.0/users/carol@example.org%20",
    ],
)
def test_a_spelling_of_an_email_that_create_refuses_finds_no_user(server, path):
    assert server.client.request("GET", "/1.0/users/Carol@Example.org").status == 200
    assert_error(server.client.request("GET", path), 404)
    assert_error(server.client.request("DELETE", path), 404)


def test_put_with_if_none_match_star_is_412_and_changes_nothing(server):
    before = files(server)
    answer = server.client.request(
        "PUT", "/1.0/tenants/acme", {"name": "X"}, headers={"If-None-Match": "*"}
    )
    assert_error(answer, 412, "If-None-Match")
    assert files(server) == before


@pytest.mark.parametrize(
    ("body", "named"),
    [({"id": 1}, "$.id: expected string"), ({"instance": "IN1"}, "'instance'")],
)
def test_a_wrong_instance_link_body_names_its_fault(server, body, named):
    answer = server.client.request("POST", "/1.0/tenants/acme/instance", body)
    assert_error(answer, 400, named)


def test_a_broken_record_of_used_ids_refuses_a_create(fresh_server):
    ids = fresh_server.state / ".reconcile-ids.json"
    ids.write_text('{"instance": "99"}\n')
    answer = fresh_server.client.request(
        "POST", "/1.0/instances", {"name": "N", "zk": "z:1", "redis": "r"}
    )
    assert_error(answer, 500, ".reconcile-ids.json", "'instance'")
    assert not (fresh_server.state / "instances" / "IN2.yaml").exists()
