"""The command line: messages, streams and exit codes a user relies on."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.render import render
from reconciler.state import load

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    target = tmp_path / "demo"
    shutil.copytree(EXAMPLES / "demo", target)
    return target


def test_validate_accepts_the_examples_without_their_secrets(capsys, monkeypatch):
    monkeypatch.delenv("PUSHER_SECRET", raising=False)
    for name in ("demo", "platform"):
        assert main(["validate", str(EXAMPLES / name)]) == 0
        assert "is valid" in capsys.readouterr().out


def test_validate_lists_every_problem_sorted_on_stdout_and_exits_1(demo, capsys):
    (demo / "tenants/globex.yaml").write_text("id: globex\nname: off\n")
    (demo / "tenants/acme.yaml").write_text("id: acme\n")
    assert main(["validate", str(demo)]) == 1
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines == sorted(lines)
    assert lines[0] == "tenants/acme.yaml:1: $: missing required field 'name'"
    assert lines[-1].startswith(
        "tenants/globex.yaml:2: $.name: this value is ambiguous"
    )
    assert "quote this value" in lines[-1]
    assert "2 problems" in out.err


def test_a_missing_environment_secret_stops_plan_before_any_node(capsys, monkeypatch):
    monkeypatch.delenv("PUSHER_SECRET", raising=False)
    assert main(["plan", str(EXAMPLES / "platform")]) == 1
    err = capsys.readouterr().err
    assert "no node was touched" in err
    assert "environment variable PUSHER_SECRET is not set" in err


def test_a_missing_state_directory_is_misuse_with_a_hint(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "Error: Invalid value for '[STATE]'" in err
    assert "Try 'reconcile validate --help' for help." in err


def test_an_unknown_option_is_misuse(capsys):
    assert main(["plan", "--frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "No such option" in err and "--frobnicate" in err


def test_an_unknown_node_is_misuse_naming_the_nodes(demo, capsys):
    assert main(["plan", str(demo), "--node", "ND9"]) == 2
    err = capsys.readouterr().err
    assert "node 'ND9' does not exist; nodes: IN1/ND1" in err


def _local_demo(demo: Path, root: Path) -> Path:
    node = demo / "instances/IN1/nodes/ND1.yaml"
    node.write_text(node.read_text().replace('"/tmp/cxengage-demo"', f'"{root}"'))
    # No processes: the local plan is about files and secrets here.
    shutil.rmtree(demo / "processes")
    return demo


def test_plan_on_a_local_node_masks_secrets_in_diffs(demo, tmp_path, capsys):
    root = tmp_path / "root"
    _local_demo(demo, root)
    assert main(["apply", str(demo)]) == 0
    capsys.readouterr()

    tenant = demo / "tenants/acme.yaml"
    tenant.write_text(tenant.read_text().replace("demo-secret-value", "rotated-9"))
    assert main(["plan", str(demo), "--detailed-exitcode"]) == 2
    out = capsys.readouterr().out
    assert "etc/tenants/acme.json  (changed)" in out
    assert "demo-secret-value" not in out and "rotated-9" not in out
    assert "$scrypt$" not in out

    plan = json.loads(_json_plan(demo, capsys))
    assert plan["changed"] is True
    assert "demo-secret-value" not in json.dumps(plan)


def _json_plan(demo: Path, capsys) -> str:
    main(["plan", str(demo), "--json"])
    return capsys.readouterr().out


def test_a_user_password_hash_edited_on_the_node_never_shows(demo, tmp_path, capsys):
    root = tmp_path / "root"
    _local_demo(demo, root)
    assert main(["apply", str(demo)]) == 0
    users = root / "etc/users.json"
    users.write_text(users.read_text().replace("$scrypt$", "$scrypt$x"))
    capsys.readouterr()
    assert main(["plan", str(demo), "--detailed-exitcode"]) == 2
    out = capsys.readouterr().out
    assert "drift: edited on the node" in out
    assert "scrypt" not in out
    # The hash changed: its tags differ, neither shows any part of it.
    old = re.findall(r'-    "password-hash": "\(sensitive ([0-9a-f]{6})\)"', out)
    new = re.findall(r'\+    "password-hash": "\(sensitive ([0-9a-f]{6})\)"', out)
    assert len(old) == len(new) == 3, out
    assert not set(old) & set(new)


def test_rendered_files_hold_only_the_nodes_instance():
    nodes = render(load(EXAMPLES / "platform"), secrets=False)
    for key, node in nodes.items():
        instance = json.loads(node.files["etc/instance.json"])
        assert key.startswith(instance["id"] + "/")
        for path, data in node.files.items():
            if path.startswith("etc/tenants/"):
                assert json.loads(data)["instance"] == instance["id"]
