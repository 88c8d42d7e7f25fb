"""Two reconciles on one node at once: a stale plan is refused, not applied."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from reconciler.apply import apply_request
from reconciler.connections import ConnectOptions, connect
from reconciler.errors import NodeCommandError
from reconciler.facts import gather
from reconciler.plan import plan_node
from reconciler.render import render
from reconciler.state import load

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"


@pytest.fixture
def node(tmp_path: Path):
    state = tmp_path / "state"
    shutil.copytree(DEMO, state)
    shutil.rmtree(state / "processes")
    path = state / "instances/IN1/nodes/ND1.yaml"
    path.write_text(path.read_text().replace("/tmp/cxengage-demo", str(tmp_path / "r")))
    return state


def desired_of(state: Path):
    return render(load(state))["IN1/ND1"]


def test_a_plan_made_before_another_apply_is_refused_and_changes_nothing(node):
    first = desired_of(node)
    connection = connect("IN1/ND1", first.node, ConnectOptions())
    stale = plan_node(first, gather(connection, first))

    tenant = node / "tenants/globex.yaml"
    tenant.write_text(tenant.read_text().replace("Globex", "Globex Two"))
    second = desired_of(node)
    fresh = plan_node(second, gather(connection, second))
    connection.call(apply_request(second, fresh))
    root = Path(second.root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}

    with pytest.raises(NodeCommandError, match="changed since it was planned"):
        connection.call(apply_request(first, stale))
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_concurrent_applies_of_one_state_leave_one_consistent_node(node):
    desired = desired_of(node)
    errors: list[str] = []

    def run() -> None:
        connection = connect("IN1/ND1", desired.node, ConnectOptions())
        plan = plan_node(desired, gather(connection, desired))
        try:
            if plan.changed:
                connection.call(apply_request(desired, plan))
        except NodeCommandError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # At least one apply won; any other was refused as stale, never mixed.
    assert len(errors) < len(threads)
    assert all("changed since it was planned" in error for error in errors)
    connection = connect("IN1/ND1", desired.node, ConnectOptions())
    assert not plan_node(desired, gather(connection, desired)).changed
