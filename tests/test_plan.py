"""The planner as tables: node facts + desired state -> expected steps."""

from __future__ import annotations

import pytest

from reconciler.facts import FileFact, Manifest, NodeFacts, ProcessFact
from reconciler.plan import plan_node
from reconciler.render import DesiredNode, DesiredProcess, sha256

TENANT = "etc/tenants/t1.json"
USERS = "etc/users.json"
WEB_DEF = "supervisor/programs/web.conf"
API_DEF = "supervisor/programs/api.conf"

FILES = {
    TENANT: b'{"id": "t1"}\n',
    USERS: b"[]\n",
    WEB_DEF: b"[program:web]\n",
    API_DEF: b"[program:api]\n",
}
PROCESSES = {
    # web reads the tenant file, api only the users file
    "web": DesiredProcess("web", "SV1", ("web",), True, (WEB_DEF,), (TENANT,)),
    "api": DesiredProcess("api", "SV2", ("api",), True, (API_DEF,), (USERS,)),
}


def desired(files=None, processes=None) -> DesiredNode:
    node = {"root": "/srv/x", "manager": "supervisord", "python": "python3"}
    return DesiredNode(
        key="IN1/ND1",
        node=node,
        files=dict(FILES if files is None else files),
        processes=dict(PROCESSES if processes is None else processes),
    )


def converged(target: DesiredNode, **changes) -> NodeFacts:
    """Facts of a node on which `target` was applied, then `changes` happened."""
    files = {path: FileFact(sha256(data)) for path, data in target.files.items()}
    manifest = Manifest(
        files={path: sha256(data) for path, data in target.files.items()},
        processes={pid: target.inputs(pid) for pid in target.processes},
    )
    processes = {pid: ProcessFact("RUNNING", 100) for pid in target.processes}
    facts = NodeFacts(manifest, files, True, processes)
    for name, value in changes.items():
        setattr(facts, name, value)
    return facts


def steps(plan):
    files = [(s.action, s.path) for s in plan.files]
    processes = [(s.action, s.id) for s in plan.processes]
    return files, processes


def test_an_empty_node_gets_every_file_and_every_process_started():
    plan = plan_node(desired(), NodeFacts())
    files, processes = steps(plan)
    assert sorted(files) == sorted(("create", path) for path in FILES)
    assert processes == [("start", "api"), ("start", "web")]
    assert all(s.reason == "new process" for s in plan.processes)


def test_a_converged_node_has_no_steps():
    target = desired()
    plan = plan_node(target, converged(target))
    assert not plan.changed
    assert steps(plan) == ([], [])


def _changed_tenant():
    return desired(files=FILES | {TENANT: b'{"id": "t1", "rate-limit": 5}\n'})


CASES = {
    "a changed file restarts only the processes that read it": (
        lambda: (_changed_tenant(), converged(desired())),
        [("update", TENANT)],
        [("restart", "web")],
    ),
    "a changed definition restarts its process": (
        lambda: (
            desired(files=FILES | {API_DEF: b"[program:api]\nx=1\n"}),
            converged(desired()),
        ),
        [("update", API_DEF)],
        [("restart", "api")],
    ),
    "a stopped process is started without touching files": (
        lambda: (
            desired(),
            converged(
                desired(),
                processes={
                    "web": ProcessFact("RUNNING", 1),
                    "api": ProcessFact("FATAL"),
                },
            ),
        ),
        [],
        [("start", "api")],
    ),
    "a dead process manager means every process starts": (
        lambda: (desired(), converged(desired(), processes={}, manager_running=False)),
        [],
        [("start", "api"), ("start", "web")],
    ),
    "a process no longer desired is removed and its file deleted": (
        lambda: (
            desired(
                files={k: v for k, v in FILES.items() if k != API_DEF},
                processes={"web": PROCESSES["web"]},
            ),
            converged(desired()),
        ),
        [("delete", API_DEF)],
        [("remove", "api")],
    ),
    "a process marked not running is stopped": (
        lambda: (
            desired(
                processes=PROCESSES
                | {
                    "api": PROCESSES["api"].__class__(
                        "api", "SV2", ("api",), False, (API_DEF,), (USERS,)
                    )
                }
            ),
            converged(desired()),
        ),
        [],
        [("stop", "api")],
    ),
    "a process that was started from older files is restarted": (
        lambda: (
            desired(),
            converged(
                desired(),
                manifest=Manifest(
                    files={p: sha256(d) for p, d in FILES.items()},
                    processes={"web": "stale", "api": desired().inputs("api")},
                ),
            ),
        ),
        [],
        [("restart", "web")],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_plan_table(name):
    make, expected_files, expected_processes = CASES[name]
    target, facts = make()
    files, processes = steps(plan_node(target, facts))
    assert files == expected_files
    assert processes == expected_processes


def test_a_hand_edited_file_is_drift_and_restarts_its_readers():
    target = desired()
    facts = converged(target)
    facts.files[TENANT] = FileFact(sha256(b"edited"), "edited")
    plan = plan_node(target, facts)
    assert [(s.action, s.path, s.reason) for s in plan.files] == [
        ("update", TENANT, "drift: edited on the node")
    ]
    assert plan.files[0].old == "edited"
    assert [(s.action, s.id) for s in plan.processes] == [("restart", "web")]


def test_a_file_deleted_on_the_node_is_written_again():
    target = desired()
    facts = converged(target)
    facts.files[USERS] = None
    plan = plan_node(target, facts)
    assert [(s.action, s.reason) for s in plan.files] == [
        ("create", "deleted on the node")
    ]


def test_an_unmanaged_file_in_the_way_is_taken_over_and_said_so():
    target = desired()
    facts = NodeFacts(files={USERS: FileFact(sha256(b"theirs"), "theirs")})
    plan = plan_node(target, facts)
    step = next(s for s in plan.files if s.path == USERS)
    assert step.action == "update"
    assert "not managed" in step.reason


def test_a_file_outside_the_manifest_is_never_deleted():
    target = desired()
    facts = converged(target)
    facts.files["etc/someone-elses.json"] = FileFact(sha256(b"x"))
    assert not plan_node(target, facts).changed


def test_a_missing_manifest_alone_is_a_change_that_records_it():
    target = desired()
    facts = converged(target, manifest=Manifest())
    plan = plan_node(target, facts)
    assert plan.changed
    assert steps(plan) == ([], [])
    assert plan.manifest.files == {p: sha256(d) for p, d in FILES.items()}
