"""The node agent, run for real through LocalConnection against temporary roots.

supervisord runs for real here; systemd is faked by a `systemctl` script.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from sshd import wait_until

from reconciler.connections import LocalConnection
from reconciler.errors import NodeCommandError
from reconciler.supervisors import supervisord

TIMEOUT = 15.0


def wait_for(condition, timeout: float = TIMEOUT) -> bool:
    return wait_until(condition, timeout)


def is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def end_pid(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_for(lambda: not is_alive(pid), 10.0):
            return


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serves(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
            return True
    except OSError:
        return False


class Node:
    """A temporary node root, the local agent, and what the test started."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="rcn-", dir="/tmp")
        self.connection = LocalConnection("IN1/ND1", sys.executable, 60.0)
        self.files: dict[str, str] = {}
        self.orphans: list[int] = []

    def call(self, op: str, **fields) -> dict:
        request = {"op": op, "root": self.root, "manager": "supervisord"}
        request["python"] = sys.executable
        return self.connection.call({**request, **fields})

    def facts(self, expect: dict | None = None, **fields) -> dict:
        return self.call("facts", expect=expect or {}, **fields)

    def apply(self, write=None, delete=(), processes=(), desired=(), **fields):
        """Apply, keeping a manifest of every file written and not deleted."""
        write = write or {}
        self.files.update({path: sha256(text) for path, text in write.items()})
        for path in delete:
            self.files.pop(path, None)
        request = {
            "write": [
                {"path": path, "content_b64": base64.b64encode(text.encode()).decode()}
                for path, text in write.items()
            ],
            "delete": list(delete),
            "processes": list(processes),
            "desired_running": list(desired),
            "manifest": {"version": 1, "files": dict(self.files), "processes": {}},
        }
        return self.call("apply", **{**request, **fields})

    def supervisord_pid(self) -> int | None:
        try:
            return int(Path(self.root, "run", "supervisord.pid").read_text())
        except (OSError, ValueError):
            return None

    def clean(self) -> None:
        pid = self.supervisord_pid()
        if pid and is_alive(pid):
            end_pid(pid)
        for orphan in self.orphans:
            end_pid(orphan)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def node():
    node = Node()
    yield node
    node.clean()


def supervised(node: Node, programs: dict[str, str]) -> dict[str, str]:
    """The files of a supervisord with one program per (id, command)."""
    files = supervisord.base_files(node.root)
    for ident, command in programs.items():
        path, text = supervisord.definition(
            node.root, ident, shlex.split(command), True
        )
        files[path] = text
    return files


def web(port: int) -> str:
    return f"{sys.executable} -m http.server {port} --bind 127.0.0.1"


@pytest.fixture
def two_webs(node):
    """A node whose supervisord runs two web servers, web1 and web2."""
    ports = {"web1": free_port(), "web2": free_port()}
    files = supervised(node, {ident: web(port) for ident, port in ports.items()})
    start = [{"id": ident, "action": "start"} for ident in ports]
    answer = node.apply(files, processes=start, desired=list(ports))
    return answer, ports


# Files and the manifest.


def test_facts_on_an_empty_root_report_nothing_and_no_supervisord(node):
    answer = node.facts({"etc/instance.json": sha256("{}")}, processes=["p1"])

    assert answer == {
        "ok": True,
        "manifest": None,
        "manifest_sha256": None,
        "files": {"etc/instance.json": None},
        "supervisor": {"running": False},
        "processes": {},
    }


def test_facts_on_a_root_that_does_not_exist_yet_report_nothing(node):
    answer = node.call(
        "facts",
        root=os.path.join(node.root, "not", "yet"),
        expect={"etc/a.json": sha256("{}")},
    )

    assert answer["files"] == {"etc/a.json": None}
    assert answer["manifest"] is None


def test_apply_writes_the_files_and_the_manifest_with_their_hashes(node):
    answer = node.apply({"etc/instance.json": '{"id": "IN1"}', "a/b/c.json": "[]"})

    root = Path(node.root)
    assert answer == {"ok": True, "processes": {}}
    assert (root / "etc/instance.json").read_text() == '{"id": "IN1"}'
    assert (root / "a/b/c.json").read_text() == "[]"
    assert (root / "a/b").stat().st_mode & 0o777 == 0o755
    assert (root / "etc/instance.json").stat().st_mode & 0o777 == 0o644
    manifest = json.loads((root / ".reconcile/manifest.json").read_text())
    assert manifest["files"] == {
        "etc/instance.json": sha256('{"id": "IN1"}'),
        "a/b/c.json": sha256("[]"),
    }


def test_apply_creates_a_root_that_does_not_exist_yet(node):
    root = os.path.join(node.root, "var", "lib", "cxengage")

    node.apply({"etc/a.json": "{}"}, root=root)

    assert Path(root, "etc/a.json").read_text() == "{}"
    assert Path(root, ".reconcile/manifest.json").exists()


def test_apply_replaces_a_file_by_rename_and_leaves_no_temporary_file(node):
    node.apply({"etc/x.json": "old"})
    with open(Path(node.root, "etc/x.json")) as reader_of_the_old_file:
        node.apply({"etc/x.json": "new"})

        assert reader_of_the_old_file.read() == "old"
    assert Path(node.root, "etc/x.json").read_text() == "new"
    assert os.listdir(Path(node.root, "etc")) == ["x.json"]


def test_apply_sets_the_requested_mode(node):
    node.call(
        "apply",
        write=[{"path": "etc/secret.json", "content_b64": "e30=", "mode": 0o600}],
        manifest={"version": 1, "files": {}, "processes": {}},
    )

    assert Path(node.root, "etc/secret.json").stat().st_mode & 0o777 == 0o600


def test_a_failed_apply_records_only_what_it_wrote_in_a_partial_manifest(node):
    with pytest.raises(NodeCommandError, match="supervisord.conf is missing") as raised:
        node.apply({"etc/a.json": "{}"}, processes=[{"id": "p1", "action": "start"}])

    assert raised.value.answer["done"] == [
        "wrote etc/a.json",
        "wrote a partial manifest",
    ]
    assert Path(node.root, "etc/a.json").read_text() == "{}"
    manifest = json.loads(Path(node.root, ".reconcile/manifest.json").read_text())
    assert manifest["files"] == {"etc/a.json": sha256("{}")}


def test_a_second_facts_sees_the_hashes_and_sends_content_only_when_it_differs(node):
    node.apply({"etc/same.json": "same", "etc/changed.json": "on the node"})

    answer = node.facts(
        {"etc/same.json": sha256("same"), "etc/changed.json": sha256("wanted")}
    )

    assert answer["manifest"]["files"] == node.files
    assert answer["files"] == {
        "etc/same.json": {"sha256": sha256("same")},
        "etc/changed.json": {
            "sha256": sha256("on the node"),
            "content": "on the node",
        },
    }


def test_facts_cover_manifest_files_that_are_not_expected_any_more(node):
    node.apply({"etc/old.json": "old"})

    answer = node.facts({})

    assert answer["files"] == {
        "etc/old.json": {"sha256": sha256("old"), "content": "old"}
    }


def test_delete_removes_a_file_the_manifest_lists(node):
    node.apply({"etc/old.json": "old", "etc/keep.json": "keep"})

    node.apply(delete=["etc/old.json"])

    assert not Path(node.root, "etc/old.json").exists()
    assert Path(node.root, "etc/keep.json").exists()
    assert node.facts()["manifest"]["files"] == {"etc/keep.json": sha256("keep")}


def test_delete_refuses_a_path_not_in_the_manifest_and_does_nothing(node):
    Path(node.root, "precious.txt").write_text("not ours")

    with pytest.raises(NodeCommandError, match="not in the manifest") as raised:
        node.apply({"etc/a.json": "{}"}, delete=["precious.txt"])

    assert raised.value.answer["done"] == []
    assert Path(node.root, "precious.txt").read_text() == "not ours"
    assert not Path(node.root, "etc/a.json").exists()


@pytest.mark.parametrize(
    "path",
    ["../escape.json", "etc/../../escape.json", "/tmp/escape.json", "", "a//b", "./a"],
)
def test_a_path_that_could_leave_the_root_is_refused(node, path):
    with pytest.raises(NodeCommandError, match="refused path"):
        node.apply({path: "x"})
    with pytest.raises(NodeCommandError, match="refused path"):
        node.apply(delete=[path])
    with pytest.raises(NodeCommandError, match="refused path"):
        node.facts({path: sha256("x")})

    # Nothing was written: at most the agent's own lock file exists.
    written = [p.name for p in Path(node.root).rglob("*") if p.is_file()]
    assert written in ([], ["lock"])


def test_a_directory_symlink_leading_outside_the_root_is_refused(node):
    outside = tempfile.mkdtemp(prefix="rcn-out-", dir="/tmp")
    try:
        os.symlink(outside, Path(node.root, "etc"))

        with pytest.raises(NodeCommandError, match="symlink leads outside root"):
            node.apply({"etc/x.json": "x"})
        with pytest.raises(NodeCommandError, match="symlink leads outside root"):
            node.apply({"etc/deeper/x.json": "x"})
        with pytest.raises(NodeCommandError, match="symlink leads outside root"):
            node.facts({"etc/x.json": sha256("x")})

        assert os.listdir(outside) == []
    finally:
        shutil.rmtree(outside)


def test_a_file_symlink_leading_outside_the_root_is_not_read(node):
    outside = tempfile.mkdtemp(prefix="rcn-out-", dir="/tmp")
    try:
        Path(outside, "secret").write_text("outside")
        os.symlink(Path(outside, "secret"), Path(node.root, "x.json"))

        with pytest.raises(NodeCommandError, match="symlink leads outside root"):
            node.facts({"x.json": sha256("x")})
    finally:
        shutil.rmtree(outside)


def test_the_agents_own_directory_cannot_be_written_by_a_request(node):
    with pytest.raises(NodeCommandError, match="belongs to the agent"):
        node.apply({".reconcile/manifest.json": "{}"})


def test_a_manifest_reached_through_a_symlink_outside_the_root_is_refused(node):
    outside = tempfile.mkdtemp(prefix="rcn-out-", dir="/tmp")
    try:
        os.symlink(outside, Path(node.root, ".reconcile"))

        with pytest.raises(NodeCommandError, match="symlink leads outside root"):
            node.facts()
        with pytest.raises(NodeCommandError, match="symlink leads outside root"):
            node.apply({"etc/a.json": "{}"})

        assert os.listdir(outside) == []
    finally:
        shutil.rmtree(outside)


@pytest.mark.parametrize("ident", ["../web", "-web", "a b", "", "web/1"])
def test_a_process_id_that_is_not_a_plain_name_is_refused(node, ident):
    with pytest.raises(NodeCommandError, match="refused process id"):
        node.apply(desired=[ident])
    with pytest.raises(NodeCommandError, match="refused process id"):
        node.apply(processes=[{"id": ident, "action": "start"}])
    with pytest.raises(NodeCommandError, match="refused process id"):
        node.facts(processes=[ident])


def test_an_unknown_op_is_an_error_answer(node):
    with pytest.raises(NodeCommandError, match="unknown op 'nothing'"):
        node.call("nothing")


# supervisord, for real.


def test_apply_starts_supervisord_and_both_programs_which_then_serve(node, two_webs):
    answer, ports = two_webs

    assert set(answer["processes"]) == {"web1", "web2"}
    for ident, port in ports.items():
        assert answer["processes"][ident]["state"] == "RUNNING"
        assert is_alive(answer["processes"][ident]["pid"])
        assert wait_for(lambda port=port: serves(port))
    facts = node.facts(processes=["web1", "web2", "unknown"])
    assert facts["supervisor"] == {"running": True}
    assert facts["processes"] == answer["processes"]


def test_restart_changes_the_pid_of_the_restarted_process_only(node, two_webs):
    before, _ = two_webs

    after = node.apply(
        processes=[{"id": "web1", "action": "restart"}], desired=["web1", "web2"]
    )

    web1, web2 = after["processes"]["web1"], after["processes"]["web2"]
    assert web1["state"] == "RUNNING" and web2["state"] == "RUNNING"
    assert web1["pid"] != before["processes"]["web1"]["pid"]
    assert web2["pid"] == before["processes"]["web2"]["pid"]


def test_stop_leaves_the_process_stopped_and_the_other_running(node, two_webs):
    before, ports = two_webs

    after = node.apply(processes=[{"id": "web1", "action": "stop"}], desired=["web2"])

    assert after["processes"]["web1"] == {"state": "STOPPED", "pid": None}
    assert after["processes"]["web2"] == before["processes"]["web2"]
    assert not is_alive(before["processes"]["web1"]["pid"])
    assert not serves(ports["web1"])


def test_a_changed_program_is_re_added_and_restarted_once(node, two_webs):
    before, _ = two_webs
    port = free_port()
    files = supervised(node, {"web1": web(port)})
    del files["supervisor/supervisord.conf"]

    after = node.apply(
        files,
        processes=[{"id": "web1", "action": "restart"}],
        desired=["web1", "web2"],
    )

    assert after["processes"]["web1"]["state"] == "RUNNING"
    assert after["processes"]["web1"]["pid"] != before["processes"]["web1"]["pid"]
    assert after["processes"]["web2"] == before["processes"]["web2"]
    assert wait_for(lambda: serves(port))


def test_a_removed_program_is_stopped_and_forgotten(node, two_webs):
    before, _ = two_webs

    after = node.apply(
        delete=["supervisor/programs/web2.conf"],
        processes=[{"id": "web2", "action": "remove"}],
        desired=["web1"],
    )

    assert set(after["processes"]) == {"web1"}
    assert wait_for(lambda: not is_alive(before["processes"]["web2"]["pid"]))


def test_a_killed_supervisord_is_reported_as_not_running(node, two_webs):
    answer, _ = two_webs
    node.orphans = [info["pid"] for info in answer["processes"].values()]
    pid = node.supervisord_pid()

    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not is_alive(pid))

    facts = node.facts(processes=["web1", "web2"])
    assert facts["supervisor"] == {"running": False}
    assert facts["processes"] == {}


def test_a_program_that_exits_at_once_is_an_error_naming_it(node):
    files = supervised(
        node,
        {
            "quitter": f"{sys.executable} -c \"print('bad config'); exit(3)\"",
        },
    )

    with pytest.raises(NodeCommandError) as raised:
        node.apply(
            files, processes=[{"id": "quitter", "action": "start"}], desired=["quitter"]
        )

    message = str(raised.value)
    assert "process quitter is" in message
    assert "bad config" in message
    # What was written is recorded, with the process's inputs unknown.
    manifest = json.loads(Path(node.root, ".reconcile/manifest.json").read_text())
    assert "supervisor/programs/quitter.conf" in manifest["files"]


# systemd, faked.


FAKE_SYSTEMCTL = """\
#!{python}
import json, os, sys

args = sys.argv[1:]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "log"), "a") as log:
    log.write(json.dumps(args) + "\\n")
state_file = os.path.join(here, "state")
units = json.load(open(state_file)) if os.path.exists(state_file) else {{}}
verb, unit = args[0], os.path.basename(args[-1])
if verb == "show":
    state = units.get(unit)
    print("LoadState=" + ("loaded" if state else "not-found"))
    print("ActiveState=" + (state or "inactive"))
    print("MainPID=" + ("4242" if state == "active" else "0"))
elif verb == "link":
    units[unit] = "inactive"
elif verb in ("start", "restart"):
    units[unit] = "active"
elif verb == "stop":
    units[unit] = "inactive"
elif verb == "disable":
    units.pop(unit, None)
json.dump(units, open(state_file, "w"))
"""


def test_systemd_manager_commands_with_a_fake_systemctl(node, monkeypatch):
    bin_dir = Path(node.root).parent / (Path(node.root).name + "-bin")
    bin_dir.mkdir()
    try:
        systemctl = bin_dir / "systemctl"
        systemctl.write_text(FAKE_SYSTEMCTL.format(python=sys.executable))
        systemctl.chmod(0o755)
        log = bin_dir / "log"
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
        units = {f"systemd/cxengage-{i}.service": f"[Service]\n# {i}\n" for i in "ab"}

        def commands() -> list[list[str]]:
            lines = log.read_text().splitlines() if log.exists() else []
            log.write_text("")
            return [json.loads(line) for line in lines]

        def show(ident: str) -> list[str]:
            unit = f"cxengage-{ident}.service"
            return [
                "show",
                "-p",
                "ActiveState",
                "-p",
                "MainPID",
                "-p",
                "LoadState",
                unit,
            ]

        first = node.apply(
            units,
            processes=[{"id": i, "action": "start"} for i in "ab"],
            desired=["a", "b"],
            manager="systemd",
        )

        assert commands() == [
            ["link", f"{node.root}/systemd/cxengage-a.service"],
            ["link", f"{node.root}/systemd/cxengage-b.service"],
            ["daemon-reload"],
            ["start", "cxengage-a.service"],
            ["start", "cxengage-b.service"],
            show("a"),
            show("b"),
            show("a"),
            show("b"),
        ]
        running = {"state": "RUNNING", "pid": 4242}
        assert first["processes"] == {"a": running, "b": running}

        second = node.apply(
            {"systemd/cxengage-a.service": "[Service]\n# a, changed\n"},
            delete=["systemd/cxengage-b.service"],
            processes=[
                {"id": "b", "action": "remove"},
                {"id": "a", "action": "restart"},
            ],
            desired=["a"],
            manager="systemd",
        )

        assert commands() == [
            ["stop", "cxengage-b.service"],
            ["disable", "cxengage-b.service"],
            ["daemon-reload"],
            ["restart", "cxengage-a.service"],
            show("a"),
            show("a"),
            show("b"),
        ]
        assert second["processes"] == {"a": running}

        facts = node.facts(processes=["a", "b"], manager="systemd")

        assert commands() == [show("a"), show("b")]
        assert facts["supervisor"] == {"running": True}
        assert facts["processes"] == {"a": running}
    finally:
        shutil.rmtree(bin_dir)


def test_a_root_someone_else_may_write_is_refused(node):
    os.makedirs(Path(node.root, "supervisor/programs"))
    os.chmod(Path(node.root, "supervisor/programs"), 0o1777)
    with pytest.raises(NodeCommandError, match="programs is writable by others"):
        node.facts({})
    with pytest.raises(NodeCommandError, match="programs is writable by others"):
        node.apply({"etc/a.json": "{}"})
    assert not Path(node.root, "etc").exists()


def test_a_manifest_edited_to_list_the_lock_cannot_make_apply_delete_it(node):
    node.apply({"etc/a.json": "{}"})
    manifest_path = Path(node.root, ".reconcile/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["log/supervisord.log"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    Path(node.root, "log").mkdir()
    Path(node.root, "log/supervisord.log").write_text("kept")
    with pytest.raises(NodeCommandError, match="reconcile writes only in etc/"):
        node.apply(delete=["log/supervisord.log"])
    assert Path(node.root, "log/supervisord.log").read_text() == "kept"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a link away")
def test_a_root_reached_through_a_link_another_user_owns_is_refused(node):
    link = Path(node.root).parent / (Path(node.root).name + "-link")
    os.symlink(node.root, link)
    os.lchown(link, 65534, 65534)
    try:
        with pytest.raises(NodeCommandError, match="symbolic link owned by uid 65534"):
            node.call("facts", root=str(link), expect={})
        assert os.listdir(node.root) == []
    finally:
        link.unlink()
