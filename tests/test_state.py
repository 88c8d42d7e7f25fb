"""Loading and validating the state: every problem found, located, worded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reconciler.errors import StateError
from reconciler.state import load
from reconciler.yamlio import MAX_FILE_BYTES

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"
PLATFORM = Path(__file__).resolve().parent.parent / "examples" / "platform"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    target = tmp_path / "state"
    shutil.copytree(DEMO, target)
    return target


def problems_of(root: Path) -> list[str]:
    with pytest.raises(StateError) as caught:
        load(root)
    return [str(problem) for problem in caught.value.problems]


def test_the_bundled_examples_are_valid():
    assert load(DEMO).of("node")
    assert len(load(PLATFORM).of("node")) == 4


TENANT = "tenants/globex.yaml"

BAD_FILES = {
    "broken YAML": (TENANT, "id: globex\nname: [unclosed\n", "invalid YAML"),
    "a duplicate key names both lines": (
        TENANT,
        "id: globex\nname: A\nname: B\n",
        "tenants/globex.yaml:3: $: duplicate key 'name' (first on line 2)",
    ),
    "an id that differs from the file name": (
        TENANT,
        "id: other\nname: A\n",
        "tenants/globex.yaml:1: $.id: id 'other' differs from the file name",
    ),
    "an id that climbs out of its folder": (
        TENANT,
        "id: ../x\nname: A\n",
        "$.id: id '../x' differs from the file name",
    ),
    "an unknown field": (
        TENANT,
        "id: globex\nname: A\ncolour: red\n",
        "tenants/globex.yaml:3: $.colour: unknown field 'colour'",
    ),
    "a missing required field": (
        TENANT,
        "id: globex\nrate-limit: 5\n",
        "tenants/globex.yaml:1: $: missing required field 'name'",
    ),
    "an unquoted no": (TENANT, "id: globex\nname: no\n", "quote this value"),
    "an unquoted on": (TENANT, "id: globex\nname: on\n", "quote this value"),
    "an octal-looking number": (TENANT, "id: globex\nname: 0755\n", "quote this value"),
    "a version number in a string field": (
        TENANT,
        "id: globex\nname: 1.20\n",
        "tenants/globex.yaml:2: $.name: expected string, got a number 1.2; "
        "quote this value: '1.20'",
    ),
    "an unquoted date": (TENANT, "id: globex\nname: 2024-01-31\n", "quote this value"),
    "a Python tag": (
        TENANT,
        "id: globex\nname: !!python/object/apply:os.system [ls]\n",
        "is not allowed",
    ),
    "a secret read as a tag is not repeated": (
        "instances/IN1/nodes/ND1.yaml",
        "name: n\nip-address: h\nusername: u\npassword: !!hunter2\n",
        "instances/IN1/nodes/ND1.yaml:4: $.password: a tag is not allowed",
    ),
    "a missing instance": (
        TENANT,
        "id: globex\nname: G\ninstance: IN9\n",
        "tenants/globex.yaml:3: $.instance: instance 'IN9' does not exist "
        "(no instances/IN9.yaml)",
    ),
    "a missing integration": (
        TENANT,
        "id: globex\nname: G\nintegrations: [nope]\n",
        "$.integrations[0]: integration 'nope' does not exist",
    ),
    "a user of a missing tenant": (
        "users/dan@example.com.yaml",
        "email: dan@example.com\nname: Dan\ntenants: [ghost]\n",
        "users/dan@example.com.yaml:3: $.tenants[0]: tenant 'ghost' does not exist",
    ),
    "a process on a node of another instance": (
        "processes/00000000-0000-4000-8000-000000000001.yaml",
        "instance: IN1\nservice: SV1\nnode: ND7\n",
        "$.node: node 'ND7' does not exist in instance IN1",
    ),
    "a downstream service that does not exist": (
        "instances/IN1/services/SV9.yaml",
        "name: X\ntype: config-web\noptions: {port: 1, downstream: SV8}\n",
        "$.options.downstream: service 'SV8' does not exist in instance IN1",
    ),
    "a folder that is no kind": (
        "patterns/p1.yaml",
        "id: p1\n",
        "unknown folder 'patterns'",
    ),
    "a YAML file with the wrong suffix": (
        "tenants/other.yml",
        "id: other\nname: O\n",
        "tenants/other.yml:1: $: unexpected file in tenants/",
    ),
    "a service whose type is unknown": (
        "instances/IN1/services/SV9.yaml",
        "name: X\ntype: nothing-like-it\n",
        "$.type: service-type 'nothing-like-it' does not exist",
    ),
    "an id that does not match its pattern names the field in words": (
        "users/Dan@example.com.yaml",
        "name: Dan\n",
        '$.email: "Dan@example.com" is not a valid email: it must match ^',
    ),
    "an empty file": (TENANT, "", "tenants/globex.yaml:1: $: the file is empty"),
    "a secret is never quoted in a message": (
        "users/dan@example.com.yaml",
        "name: Dan\npassword-hash: hunter2-real\n",
        "$.password-hash: the value is not a valid password-hash: it must match",
    ),
    "a second process of one service on one node": (
        "processes/ffffffff-0000-4000-8000-000000000000.yaml",
        "instance: IN1\nservice: SV1\nnode: ND1\n",
        "$.node: service SV1 already has a process on node ND1",
    ),
    "an options schema whose $ref would be fetched": (
        "service-types/config-web.yaml",
        "command: ['{python}', '{options.port}']\n"
        "options: {$ref: 'http://127.0.0.1:9/s.json'}\n",
        "$.options: the schema's $ref cannot be resolved here",
    ),
    "an options schema that refers to itself": (
        "service-types/config-web.yaml",
        "command: ['{python}', '{options.port}']\noptions: {$ref: '#'}\n",
        "$.options: the schema refers to itself without end",
    ),
    "two nodes sharing one root on one machine": (
        "instances/IN1/nodes/ND2.yaml",
        "name: twin\nconnection: local\nroot: /tmp/cxengage-demo\n",
        "instances/IN1/nodes/ND2.yaml:3: $.root: instances/IN1/nodes/ND1.yaml "
        "already manages root '/tmp/cxengage-demo'",
    ),
    "a root spelled with a doubled or trailing slash": (
        "instances/IN1/nodes/ND1.yaml",
        "name: n\nconnection: local\nroot: /tmp//cxengage-demo/\n",
        '$.root: "/tmp//cxengage-demo/" is not a valid root',
    ),
    "an options schema with a broken regular expression": (
        "service-types/config-web.yaml",
        "command: ['{python}', '{options.port}']\n"
        "options: {patternProperties: {'(': {}}}\n",
        "service-types/config-web.yaml:2: $.options: not a valid JSON Schema",
    ),
    "a numeric node password is not quoted in its message": (
        "instances/IN1/nodes/ND1.yaml",
        "name: n\nip-address: h\nusername: u\npassword: 55554444333\n",
        "$.password: the value matches none of the allowed forms",
    ),
    "an ambiguous secret is not quoted in its message": (
        "users/dan@example.com.yaml",
        "name: Dan\npassword-hash: 0x1234abcd\n",
        "$.password-hash: this value is ambiguous in YAML",
    ),
    "a misspelt name in redact, which would leave the secret shown": (
        "integrations/echo.yaml",
        "type: echo\ndisplay: Echo\nendpoint:\n  name: echo\n  type: echo\n"
        "  params: [token]\n  redact: [tokn]\n",
        "integrations/echo.yaml:7: $.endpoint.redact[0]: redact names 'tokn', "
        "which is not one of its params: token",
    ),
    "a service missing an option its command needs": (
        "instances/IN1/services/SV9.yaml",
        "name: X\ntype: config-web\n",
        "$.options",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_input_is_reported_with_file_line_and_path(state: Path, case: str):
    relative, text, expected = BAD_FILES[case]
    path = state / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    found = problems_of(state)
    assert any(expected in problem for problem in found), found
    for secret in ("55554444333", "0x1234abcd", "hunter2"):
        assert not any(secret in problem for problem in found), found


def test_every_problem_is_reported_at_once_and_sorted(state: Path):
    (state / "tenants/globex.yaml").write_text("id: globex\nname: no\n")
    (state / "tenants/acme.yaml").write_text("id: acme\nname: A\nextra: 1\n")
    found = problems_of(state)
    assert len(found) >= 2
    assert found == sorted(found)
    assert found[0].startswith("tenants/acme.yaml:3: $.extra")


def test_an_oversized_file_is_refused(state: Path):
    path = state / "tenants/globex.yaml"
    path.write_text("id: globex\nname: G\n# " + "x" * MAX_FILE_BYTES + "\n")
    assert any("the limit for a state file" in p for p in problems_of(state))


def test_an_alias_bomb_is_refused(state: Path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    (state / "tenants/globex.yaml").write_text("\n".join(lines) + "\n")
    assert any("aliases" in problem for problem in problems_of(state))


def test_a_linked_file_or_folder_is_never_followed(state: Path, tmp_path: Path):
    secret = tmp_path / "id_ed25519"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (state / "tenants/globex.yaml").unlink()
    (state / "tenants/globex.yaml").symlink_to(secret)
    (state / "integrations").rename(tmp_path / "integrations")
    (state / "integrations").symlink_to(tmp_path / "integrations")
    found = problems_of(state)
    assert "tenants/globex.yaml:1: $: a symbolic link; the state is read from " in (
        "\n".join(found)
    )
    assert any(p.startswith("integrations:1: $: a symbolic link") for p in found)
    assert not any("PRIVATE KEY" in p for p in found)


def test_a_fifo_is_refused_without_waiting_for_a_writer(state: Path):
    path = state / "tenants/globex.yaml"
    path.unlink()
    os.mkfifo(path)
    assert (
        "tenants/globex.yaml:1: $: not a file; state files must be regular files"
        in (problems_of(state))
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("id: globex\nname: G\nrate-limit: " + "9" * 5000 + "\n", "too large"),
        ("id: globex\nname: G\nrate-limit: 1e400\n", "too large"),
        ("id: globex\nname: G\x1b\n", "invalid YAML"),
        # PyYAML 6.0.4 has a depth limit of its own; older ones recurse.
        ("id: globex\nname: " + "[" * 5000 + "]" * 5000 + "\n", "nest"),
        ("id: globex\nname: G\nx: &a {y: *a}\n", "aliases"),
    ],
)
def test_hostile_yaml_is_a_problem_not_a_crash(state: Path, text: str, expected: str):
    (state / "tenants/globex.yaml").write_text(text)
    assert any(expected in p for p in problems_of(state))


def test_a_hidden_yaml_file_is_reported_not_silently_skipped(state: Path):
    (state / "tenants/.extra.yaml").write_text("id: extra\n")
    assert any(
        p.startswith("tenants/.extra.yaml:1: $: hidden files")
        for p in problems_of(state)
    )


def test_a_file_that_is_not_utf8_is_reported(state: Path):
    (state / "tenants/globex.yaml").write_bytes(b"id: globex\nname: \xff\n")
    assert "tenants/globex.yaml:2: $: the file is not valid UTF-8" in problems_of(state)


def test_defaults_are_filled_and_ids_come_from_file_names(state: Path):
    (state / "tenants/globex.yaml").write_text("name: G\n")
    loaded = load(state)
    tenant = loaded.get("tenant", "globex")
    assert tenant.data["id"] == "globex"
    assert tenant.data["rate-limit"] == 100


def test_notes_beside_the_objects_are_ignored(state: Path):
    (state / "tenants/README.md").write_text("# Tenants\n")
    assert load(state).get("tenant", "globex") is not None


def test_a_directory_without_any_state_folder_is_refused(tmp_path: Path):
    from reconciler.state import StateNotFound

    with pytest.raises(StateNotFound, match="holds no state: none of instances/"):
        load(tmp_path)
