"""Every example request of spec/platform-api.md, over real HTTP.

Each test replays the document's curl calls in its order against a fresh
`reconcile serve` over a copy of examples/demo, and checks the status code and
the body against the document's example answer. The demo already holds IN1,
so the first instance created is IN2, as in the document.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from api_server import ApiServer, demo_state, running_server
from openapi_spec_validator import validate

INSTANCE = {
    "name": "My Instance",
    "zk": "localhost:2181",
    "redis": "redis://localhost:6379",
}
DATASIFT = {
    "id": "datasift",
    "type": "datasift",
    "display": "DataSift",
    "schema": [
        {"label": "Username", "param": "username"},
        {"label": "API key", "param": "api-key", "type": "password"},
        {"label": "Stream hash", "param": "hash"},
    ],
    "listener": {
        "name": "datasift",
        "type": "datasift",
        "display": "DataSift Listener",
        "params": ["username", "api-key", "hash"],
        "static-params": [],
        "schema": [],
    },
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_server(demo_state(tmp_path)) as running:
        yield running


def load(state: Path, relative: str) -> dict:
    return yaml.safe_load((state / relative).read_text())


def test_instances_examples(server: ApiServer) -> None:
    api = server.client
    created = {"id": "IN2", **INSTANCE}

    # Create an Instance
    status, headers, body = api.request("POST", "/1.0/instances", INSTANCE)
    assert (status, body) == (201, created)
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Location"] == "/1.0/instances/IN2"

    # Retrieve an Instance
    assert tuple(api.request("GET", "/1.0/instances/IN2"))[::2] == (200, created)

    # Update an Instance
    renamed = {**created, "name": "Production Instance"}
    status, _, body = api.request(
        "PUT", "/1.0/instances/IN2", {"name": "Production Instance"}
    )
    assert (status, body) == (200, renamed)
    assert load(server.state, "instances/IN2.yaml")["name"] == "Production Instance"

    # List All Instances: the demo's IN1, then the new one.
    status, _, body = api.request("GET", "/1.0/instances")
    assert status == 200
    assert [item["id"] for item in body] == ["IN1", "IN2"]
    assert body[1] == renamed

    # List Tenants of an Instance: the document's two tenants on IN2.
    api.request("POST", "/1.0/tenants", {"id": "system", "name": "My Tenant"})
    api.request("POST", "/1.0/tenants", {"id": "tenant1", "name": "My Other Tenant"})
    for tenant in ("system", "tenant1"):
        added = api.request("POST", f"/1.0/tenants/{tenant}/instance", {"id": "IN2"})
        assert added.status == 201
    status, _, body = api.request("GET", "/1.0/instances/IN2/tenants")
    assert (status, body) == (
        200,
        [
            {"id": "system", "name": "My Tenant"},
            {"id": "tenant1", "name": "My Other Tenant"},
        ],
    )

    # Delete an Instance: 204, no body; its tenants stay, detached.
    answer = api.request("DELETE", "/1.0/instances/IN2")
    assert (answer.status, answer.raw) == (204, b"")
    assert not (server.state / "instances" / "IN2.yaml").exists()
    assert api.request("GET", "/1.0/instances/IN2").status == 404
    assert "instance" not in load(server.state, "tenants/tenant1.yaml")
    assert api.request("GET", "/1.0/tenants/tenant1/instance").status == 404

    # An id once used is never handed out again.
    status, _, body = api.request("POST", "/1.0/instances", INSTANCE)
    assert (status, body["id"]) == (201, "IN3")


def test_tenants_examples(server: ApiServer) -> None:
    api = server.client
    api.request("POST", "/1.0/instances", INSTANCE)
    tenant = {"id": "tenant1", "name": "My Tenant"}

    # Create a Tenant
    assert tuple(api.request("POST", "/1.0/tenants", tenant))[::2] == (201, tenant)

    # Retrieve a Tenant, by the singular path of the document's example.
    assert tuple(api.request("GET", "/1.0/tenant/tenant1"))[::2] == (200, tenant)
    assert tuple(api.request("GET", "/1.0/tenants/tenant1"))[::2] == (200, tenant)

    # Update a Tenant
    renamed = {"id": "tenant1", "name": "Test Tenant"}
    status, _, body = api.request(
        "PUT", "/1.0/tenants/tenant1", {"name": "Test Tenant"}
    )
    assert (status, body) == (200, renamed)

    # List All Tenants: the demo's two and the new one.
    status, _, body = api.request("GET", "/1.0/tenants")
    assert status == 200
    assert renamed in body
    assert sorted(item["id"] for item in body) == ["acme", "globex", "tenant1"]

    # List Users of a Tenant: emails only.
    for email in ("ian@userevents.com", "admin@userevents.com"):
        user = {"email": email, "name": "U", "password": "pw", "tenants": ["tenant1"]}
        assert api.request("POST", "/1.0/users", user).status == 201
    status, _, body = api.request("GET", "/1.0/tenants/tenant1/users")
    assert status == 200
    assert sorted(body) == ["admin@userevents.com", "ian@userevents.com"]

    # Add Tenant to Instance, then Retrieve Instance of a Tenant.
    status, _, body = api.request(
        "POST", "/1.0/tenants/tenant1/instance", {"id": "IN2"}
    )
    assert (status, body) == (201, {"tenant": "tenant1", "instance": "IN2"})
    status, _, body = api.request("GET", "/1.0/tenant/tenant1/instance")
    assert (status, body) == (200, {"id": "IN2", **INSTANCE})

    # Remove Tenant from Instance
    answer = api.request("DELETE", "/1.0/tenants/tenant1/instance")
    assert (answer.status, answer.raw) == (204, b"")
    assert "instance" not in load(server.state, "tenants/tenant1.yaml")

    # Add Integration to Tenant, List All Integrations of a Tenant.
    assert api.request("POST", "/1.0/integrations", DATASIFT).status == 201
    for integration in ("echo", "datasift"):
        path = f"/1.0/tenants/tenant1/integrations/{integration}"
        assert api.request("POST", path).status == 201
    status, _, body = api.request("GET", "/1.0/tenants/tenant1/integrations")
    assert (status, body) == (200, ["echo", "datasift"])

    # Remove Integration from Tenant
    answer = api.request("DELETE", "/1.0/tenants/tenant1/integrations/datasift")
    assert (answer.status, answer.raw) == (204, b"")
    assert api.request("GET", "/1.0/tenants/tenant1/integrations").body == ["echo"]

    # Delete a Tenant: gone, and gone from its users.
    answer = api.request("DELETE", "/1.0/tenants/tenant1")
    assert (answer.status, answer.raw) == (204, b"")
    assert api.request("GET", "/1.0/tenants/tenant1").status == 404
    assert api.request("GET", "/1.0/users/ian@userevents.com").body["tenants"] == []


def test_users_examples(server: ApiServer) -> None:
    api = server.client
    api.request("POST", "/1.0/tenants", {"id": "userevents", "name": "UserEvents"})

    # Create a User: the password never comes back; a client-id does.
    status, headers, body = api.request(
        "POST",
        "/1.0/users",
        {
            "email": "ian@userevents.com",
            "name": "Ian Bishop",
            "password": "butter",
            "tenants": ["userevents"],
        },
    )
    assert status == 201
    assert headers["Location"] == "/1.0/users/ian@userevents.com"
    assert api.request("GET", headers["Location"]).status == 200
    client_id = body.pop("client-id")
    assert len(client_id) >= 22
    expected = {
        "email": "ian@userevents.com",
        "name": "Ian Bishop",
        "tenants": ["userevents"],
    }
    assert body == expected
    expected["client-id"] = client_id

    stored = (server.state / "users" / "ian@userevents.com.yaml").read_text()
    assert "butter" not in stored
    assert yaml.safe_load(stored)["password-hash"].startswith("$argon2id$")

    # Retrieve a User, with the @ as it is and percent-encoded.
    for path in ("/1.0/users/ian@userevents.com", "/1.0/users/ian%40userevents.com"):
        assert tuple(api.request("GET", path))[::2] == (200, expected)

    # Update a User
    status, _, body = api.request(
        "PUT", "/1.0/users/ian@userevents.com", {"name": "John Smith"}
    )
    assert (status, body) == (200, {**expected, "name": "John Smith"})

    # List All Users: the demo's three and this one.
    status, _, body = api.request("GET", "/1.0/users")
    assert status == 200
    assert {**expected, "name": "John Smith"} in body
    assert len(body) == 4
    assert all(set(user) == {"email", "name", "client-id", "tenants"} for user in body)

    # Remove User from Tenant, then Add User to Tenant.
    answer = api.request("DELETE", "/1.0/users/ian@userevents.com/tenants/userevents")
    assert (answer.status, answer.raw) == (204, b"")
    assert api.request("GET", "/1.0/users/ian@userevents.com").body["tenants"] == []
    answer = api.request("POST", "/1.0/users/ian@userevents.com/tenants/userevents")
    assert answer.status == 201
    assert api.request("GET", "/1.0/tenants/userevents/users").body == [
        "ian@userevents.com"
    ]

    # Delete a User
    answer = api.request("DELETE", "/1.0/users/ian@userevents.com")
    assert (answer.status, answer.raw) == (204, b"")
    assert not (server.state / "users" / "ian@userevents.com.yaml").exists()
    assert api.request("GET", "/1.0/users/ian@userevents.com").status == 404


def test_integrations_crud(server: ApiServer) -> None:
    api = server.client

    status, _, body = api.request("POST", "/1.0/integrations", DATASIFT)
    assert (status, body) == (201, DATASIFT)
    assert tuple(api.request("GET", "/1.0/integrations/datasift"))[::2] == (
        200,
        DATASIFT,
    )

    status, _, body = api.request(
        "PUT", "/1.0/integrations/datasift", {"display": "DataSift Streams"}
    )
    assert (status, body) == (200, {**DATASIFT, "display": "DataSift Streams"})

    status, _, body = api.request("GET", "/1.0/integrations")
    assert status == 200
    assert [item["id"] for item in body] == ["datasift", "echo", "pusher"]

    answer = api.request("DELETE", "/1.0/integrations/datasift")
    assert (answer.status, answer.raw) == (204, b"")
    assert not (server.state / "integrations" / "datasift.yaml").exists()
    assert api.request("GET", "/1.0/integrations/datasift").status == 404


def test_openapi_document_describes_every_route(server: ApiServer) -> None:
    status, _, document = server.client.request("GET", "/1.0/openapi.json")
    assert status == 200
    assert document["openapi"].startswith("3.1")
    validate(document)  # a well-formed OpenAPI 3.1 document, by a real validator
    paths = document["paths"]
    expected = {
        "/1.0/instances": {"get", "post"},
        "/1.0/instances/{id}": {"get", "put", "delete"},
        "/1.0/instances/{id}/tenants": {"get"},
        "/1.0/tenants": {"get", "post"},
        "/1.0/tenants/{id}": {"get", "put", "delete"},
        "/1.0/tenants/{id}/users": {"get"},
        "/1.0/tenants/{id}/instance": {"get", "post", "delete"},
        "/1.0/tenants/{id}/integrations": {"get"},
        "/1.0/tenants/{tid}/integrations/{id}": {"post", "delete"},
        "/1.0/users": {"get", "post"},
        "/1.0/users/{email}": {"get", "put", "delete"},
        "/1.0/users/{email}/tenants/{id}": {"post", "delete"},
        "/1.0/integrations": {"get", "post"},
        "/1.0/integrations/{id}": {"get", "put", "delete"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    # The request bodies come from schemas/: a tenant needs its id and name.
    create = paths["/1.0/tenants"]["post"]["requestBody"]["content"]
    schema = create["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert {"id", "name"} <= set(schema["required"])
