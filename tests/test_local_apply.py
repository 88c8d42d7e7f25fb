"""Apply on a local node with a real supervisord: failures, ownership, modes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from reconciler.cli import main

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"
BROKEN = "99999999-9999-4999-8999-999999999999"


@pytest.fixture
def local(tmp_path: Path):
    """The demo on a private root, with its own ports; supervisord ended after."""
    state = tmp_path / "state"
    shutil.copytree(DEMO, state)
    root = Path(tempfile.mkdtemp(prefix="rcn-", dir="/tmp"))
    node = state / "instances/IN1/nodes/ND1.yaml"
    node.write_text(node.read_text().replace("/tmp/cxengage-demo", str(root)))
    for service, port in (("SV1", 18791), ("SV2", 18792)):
        path = state / f"instances/IN1/services/{service}.yaml"
        data = yaml.safe_load(path.read_text())
        data["options"]["port"] = port
        path.write_text(yaml.safe_dump(data))
    yield state, root
    pid_file = root / "run/supervisord.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    shutil.rmtree(root, ignore_errors=True)


def add_broken_process(state: Path) -> None:
    (state / "service-types/broken.yaml").write_text(
        'command: ["{python}", "-c", "import sys; sys.exit(3)"]\n'
    )
    (state / "instances/IN1/services/SV3.yaml").write_text("name: b\ntype: broken\n")
    (state / f"processes/{BROKEN}.yaml").write_text(
        "instance: IN1\nservice: SV3\nnode: ND1\n"
    )


def remove_broken_process(state: Path) -> None:
    (state / f"processes/{BROKEN}.yaml").unlink()
    (state / "instances/IN1/services/SV3.yaml").unlink()


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_failed_apply_says_what_it_did_and_a_later_apply_cleans_up(local, capsys):
    state, root = local
    add_broken_process(state)
    code, out = run(capsys, "apply", str(state))
    assert code == 1, out
    assert f"IN1/ND1 (Local demo node): FAILED: apply failed: process {BROKEN}" in out
    assert "done before the failure: wrote 16 files, started supervisord" in out
    assert "Nothing to do" not in out
    assert "No node changed: 0 of 1 nodes match the state. Failed: IN1/ND1." in out

    # What the failed run wrote is owned: removing it from the state prunes it.
    manifest = json.loads((root / ".reconcile/manifest.json").read_text())
    assert f"supervisor/programs/{BROKEN}.conf" in manifest["files"]
    remove_broken_process(state)
    code, out = run(capsys, "apply", str(state))
    assert code == 0, out
    assert f"- supervisor/programs/{BROKEN}.conf  (no longer desired)" in out
    assert f"> remove process {BROKEN}: no longer desired" in out
    assert not (root / "etc/services/SV3.json").exists()
    code, out = run(capsys, "plan", str(state), "--detailed-exitcode")
    assert code == 0, out


def test_a_file_reconcile_did_not_write_is_not_overwritten_without_take_over(
    local, capsys
):
    state, root = local
    theirs = root / "etc/tenants/acme.json"
    theirs.parent.mkdir(parents=True)
    theirs.write_text('{"theirs": true}\n')

    code, out = run(capsys, "plan", str(state))
    assert "etc/tenants/acme.json  (exists on the node but is not managed" in out
    code, out = run(capsys, "apply", str(state))
    assert code == 1, out
    assert "refusing to overwrite files reconcile does not manage: " in out
    assert "--take-over" in out
    assert theirs.read_text() == '{"theirs": true}\n'
    assert not (root / "etc/users.json").exists()  # nothing at all was written

    code, out = run(capsys, "apply", str(state), "--take-over")
    assert code == 0, out
    assert json.loads(theirs.read_text())["id"] == "acme"


def test_files_with_secrets_are_readable_by_their_owner_only(local, capsys):
    state, root = local
    assert run(capsys, "apply", str(state))[0] == 0

    def mode(relative: str) -> int:
        return stat.S_IMODE((root / relative).stat().st_mode)

    assert mode("etc/users.json") == 0o600  # password hashes
    assert mode("etc/tenants/acme.json") == 0o600  # pusher's secret
    assert mode("etc/tenants/globex.json") == 0o644  # no params
    assert mode("etc/instance.json") == 0o644


def test_processes_left_by_a_killed_supervisord_are_replaced_not_duplicated(
    local, capsys
):
    state, root = local
    assert run(capsys, "apply", str(state))[0] == 0
    daemon = int((root / "run/supervisord.pid").read_text())
    children = _children(daemon)
    assert len(children) == 2
    # Someone else's job that happens to work in the root must survive.
    bystander = subprocess.Popen(
        ["sleep", "300"],
        cwd=root,
        start_new_session=True,
        env={"PATH": "/bin:/usr/bin"},
    )
    os.kill(daemon, signal.SIGKILL)  # as the OOM killer would: children live on

    code, out = run(capsys, "apply", str(state))
    assert code == 0, out
    new_daemon = int((root / "run/supervisord.pid").read_text())
    assert new_daemon != daemon
    for pid in children:
        assert _parent(pid) in (None, 0), f"orphan {pid} still runs"
    assert bystander.poll() is None, "a process reconcile never started was ended"
    bystander.kill()
    bystander.wait()
    code, out = run(capsys, "plan", str(state), "--detailed-exitcode")
    assert code == 0, out


def _children(daemon: int) -> list[int]:
    return [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and _parent(int(pid)) == daemon
    ]


def _parent(pid: int) -> int | None:
    """The parent of a running process; None once it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[1])


def test_a_local_node_inherits_none_of_the_controllers_secrets(
    local, capsys, monkeypatch
):
    state, root = local
    monkeypatch.setenv("OTHER_NODE_SSH_PASSWORD", "do-not-leak-4711")
    assert run(capsys, "apply", str(state))[0] == 0
    daemon = int((root / "run/supervisord.pid").read_text())
    programs = _children(daemon)
    for pid in [daemon, *programs]:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"do-not-leak-4711" not in environ
        assert b"PATH=" in environ


def test_an_apply_cut_short_by_its_timeout_records_what_it_wrote(local, capsys):
    state, root = local
    # Starting two programs takes over a second (each must stay up 1 s).
    code, out = run(capsys, "apply", str(state), "--command-timeout", "1")
    assert code == 1, out
    assert "did not finish in 1.0 s" in out
    assert "done before the failure: wrote 13 files, started supervisord" in out
    manifest = json.loads((root / ".reconcile/manifest.json").read_text())
    assert "etc/users.json" in manifest["files"]
    code, out = run(capsys, "apply", str(state))
    assert code == 0, out


def _give_secret_option(state: Path, kind: str, service: str, value: str) -> None:
    path = state / f"service-types/{kind}.yaml"
    data = yaml.safe_load(path.read_text())
    data["command"].append("{options.password}")
    path.write_text(yaml.safe_dump(data))
    path = state / f"instances/IN1/services/{service}.yaml"
    data = yaml.safe_load(path.read_text())
    data["options"]["password"] = value
    path.write_text(yaml.safe_dump(data))


def test_a_secret_option_on_the_command_line_is_masked_and_private(local, capsys):
    state, root = local
    _give_secret_option(state, "echo-listener", "SV2", "first-secret-1")
    code, out = run(capsys, "apply", str(state))
    assert code == 0, out
    _give_secret_option(state, "echo-listener", "SV2", "second-secret-2")
    code, out = run(capsys, "plan", str(state), "--detailed-exitcode")
    assert code == 2, out
    assert ".argv.json  (changed)" in out
    assert "secret-1" not in out and "secret-2" not in out
    argv_files = list((root / "supervisor/programs").glob("*.argv.json"))
    modes = {stat.S_IMODE(p.stat().st_mode) for p in argv_files}
    assert modes == {0o600, 0o644}  # only the echo process holds the secret


def test_a_process_log_quoted_in_an_error_is_scrubbed_of_secrets(local, capsys):
    state, root = local
    # http.server refuses the extra argument and prints it in its usage error.
    _give_secret_option(state, "config-web", "SV1", "leaky-secret-3")
    code, out = run(capsys, "apply", str(state))
    assert code == 1, out
    assert "unrecognized arguments: (sensitive)" in out
    assert "leaky-secret-3" not in out
