"""The agent: the program that runs on a node and does what the controller asks.

The controller sends this module's source on stdin and runs it with BOOTSTRAP.
It must stay standalone: stdlib only at import time, Python 3.8 or newer, and
nothing imported from the `reconciler` package. Two requests exist: "facts"
(read the manifest, the managed files and the processes) and "apply" (write and
delete files, drive the process manager, then write the manifest).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from http.client import HTTPException

# The constant program given to `python -c`: it reads {"agent", "request"} from
# stdin, runs the agent and prints its answer. Anything the agent prints goes
# to stderr, so stdout carries the answer only.
BOOTSTRAP = (
    "import json,sys;"
    "d=json.load(sys.stdin);"
    'g={"__name__":"reconcile_agent"};'
    'exec(compile(d["agent"],"reconcile_agent","exec"),g);'
    "o=sys.stdout;sys.stdout=sys.stderr;"
    'o.write(json.dumps(g["main"](d["request"])));o.flush()'
)

MANIFEST = ".reconcile/manifest.json"
LOCK = ".reconcile/lock"
LOCK_TIMEOUT = 60.0
CONTENT_LIMIT = 4 * 1024 * 1024
SUPERVISOR_START_TIMEOUT = 15.0
PROCESS_WAIT_TIMEOUT = 30.0
POLL_INTERVAL = 0.1
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
DOWN_STATES = ("STOPPED", "EXITED", "FATAL", "BACKOFF")
FAILED_STATES = ("STOPPED", "EXITED", "FATAL", "BACKOFF")


class AgentError(Exception):
    """A request the agent refuses or could not carry out."""


def agent_source() -> str:
    """Return this module's source, as sent to nodes."""
    with open(__file__, encoding="utf-8") as handle:
        return handle.read()


def interrupted(signum, frame):
    raise AgentError(f"interrupted by signal {signum}")


def main(request: dict) -> dict:
    """Answer one request; never raises.

    A SIGTERM (the controller's timeout) becomes an error like any other, so
    that an apply cut short still records what it did.
    """
    done: list = []
    try:
        signal.signal(signal.SIGTERM, interrupted)
    except ValueError:
        pass  # not the main thread: called in-process, nothing to catch
    try:
        op = request.get("op")
        if op == "facts":
            return facts(request)
        if op == "apply":
            return apply(request, done)
        raise AgentError(f"unknown op {op!r}")
    except AgentError as error:
        return {"ok": False, "error": str(error), "done": done}
    except Exception as error:  # the answer must reach the controller
        message = f"{type(error).__name__}: {error}"
        return {"ok": False, "error": message, "done": done}


# Paths: every path in a request is relative to root and must stay inside it.


# Folders whose files the process manager runs or reads: if anyone but us
# could write there, they could make us run their programs.
GUARDED = ("", "etc", "supervisor", "supervisor/programs", "systemd", "run", "log")
MANAGED_AREAS = ("etc/", "supervisor/", "systemd/")


def real_root(request: dict) -> str:
    root = request.get("root")
    if not isinstance(root, str) or not os.path.isabs(root):
        raise AgentError(f"root must be an absolute path, got {root!r}")
    check_links(root)
    root = os.path.realpath(root)
    if root == "/":
        raise AgentError("refused: the root resolves to /")
    check_ownership(root)
    return root


def check_links(root: str) -> None:
    """Refuse a root reached through a link that someone else could change."""
    path = "/"
    for part in root.strip("/").split("/"):
        path = os.path.join(path, part)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode) and info.st_uid not in (0, os.geteuid()):
            raise AgentError(
                f"refused: {path} is a symbolic link owned by uid {info.st_uid}, "
                "who could point the root anywhere"
            )


def check_ownership(root: str) -> None:
    """Refuse a root, or a folder in it, that someone else owns or may write."""
    for rel in GUARDED:
        path = os.path.join(root, rel) if rel else root
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            continue  # where a link leads is checked with every path
        where = path if rel else f"the root {path}"
        if info.st_uid != os.geteuid():
            raise AgentError(
                f"refused: {where} is owned by uid {info.st_uid}, not by the "
                f"user reconcile logs in as (uid {os.geteuid()})"
            )
        if info.st_mode & 0o022:
            raise AgentError(
                f"refused: {where} is writable by others (mode "
                f"{info.st_mode & 0o777:o}); make it 0755 or stricter"
            )


def is_inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def checked_path(root: str, rel: object) -> str:
    """Return root/rel after refusing anything that could lead out of root."""
    if not isinstance(rel, str) or not rel or "\0" in rel or rel.startswith("/"):
        raise AgentError(f"refused path {rel!r}: not a relative path")
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise AgentError(f"refused path {rel!r}: empty, '.' or '..' part")
    path = os.path.join(root, rel)
    directory = os.path.dirname(path)
    while directory != root and not os.path.lexists(directory):
        directory = os.path.dirname(directory)
    if not is_inside(root, os.path.realpath(directory)):
        raise AgentError(f"refused path {rel!r}: a symlink leads outside root")
    return path


def checked_ids(idents: object) -> list:
    """Process ids name files, units and RPC groups: letters, digits, - _ ."""
    if not isinstance(idents, list):
        raise AgentError(f"process ids must be a list, got {idents!r}")
    for ident in idents:
        if not isinstance(ident, str) or not ID_PATTERN.match(ident):
            raise AgentError(f"refused process id {ident!r}")
    return idents


def make_dirs(root: str, directory: str) -> None:
    """Create directory and its missing parents (0755); it must end in root."""
    missing = []
    existing = directory
    while not os.path.lexists(existing):
        missing.append(existing)
        existing = os.path.dirname(existing)
    if is_inside(root, existing) and not is_inside(root, os.path.realpath(existing)):
        raise AgentError(f"refused {existing!r}: a symlink leads outside root")
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            continue  # another apply made it first; checked below like any
        os.chmod(path, 0o755)
    if not is_inside(root, os.path.realpath(directory)):
        raise AgentError(f"refused {directory!r}: it is outside root")


def write_atomic(
    root: str, path: str, data: bytes, mode: int = 0o644, sync_dir: bool = True
) -> None:
    """Write data to path through a temporary file in the same directory.

    With sync_dir false the caller fsyncs the directory (see sync_dirs), so
    that many files in one directory cost one directory sync.
    """
    directory = os.path.dirname(path)
    make_dirs(root, directory)
    name = os.path.basename(path)
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.lexists(temp):
            os.unlink(temp)
        raise
    if sync_dir:
        sync_dirs([directory])


def sync_dirs(directories) -> None:
    """fsync directories, so that renames in them survive a crash."""
    for directory in sorted(set(directories)):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_manifest(root: str) -> dict | None:
    path = checked_path(root, MANIFEST)
    if os.path.lexists(path) and not is_inside(root, os.path.realpath(path)):
        raise AgentError(f"refused {path}: a symlink leads outside root")
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise AgentError(f"the manifest {path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise AgentError(f"the manifest {path} has no 'files' object")
    return manifest


def file_fact(root: str, rel: str, expected: str | None) -> dict | None:
    path = checked_path(root, rel)
    if not os.path.lexists(path):
        return None
    if not is_inside(root, os.path.realpath(path)):
        raise AgentError(f"refused path {rel!r}: a symlink leads outside root")
    with open(path, "rb") as handle:
        data = handle.read()
    fact = {"sha256": hashlib.sha256(data).hexdigest()}
    if fact["sha256"] != expected and len(data) <= CONTENT_LIMIT:
        try:
            fact["content"] = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return fact


def log_tail(root: str, ident: str, lines: int = 10) -> str:
    path = os.path.join(root, "log", f"{ident}.log")
    if not is_inside(root, os.path.realpath(path)):
        return f"(not reading {path}: a symlink leads outside root)"
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return f"last lines of {path}:\n" + "\n".join(text.splitlines()[-lines:])


# The two requests.


def facts(request: dict) -> dict:
    root = real_root(request)
    manifest = read_manifest(root)
    expect = request.get("expect") or {}
    paths = set(expect) | set(manifest["files"] if manifest else ())
    files = {rel: file_fact(root, rel, expect.get(rel)) for rel in sorted(paths)}
    manager = make_manager(request, root)
    running = manager.running()
    requested = checked_ids(request.get("processes") or [])
    processes = manager.states(requested) if running else {}
    return {
        "ok": True,
        "manifest": manifest,
        "manifest_sha256": manifest_sha256(root),
        "files": files,
        "supervisor": {"running": running},
        "processes": processes,
    }


def manifest_sha256(root: str) -> str | None:
    """The hash of the manifest file's bytes, None when there is none."""
    try:
        with open(checked_path(root, MANIFEST), "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return None


def locked(root: str) -> int:
    """Hold the node's apply lock (bounded wait); returns the fd to close."""
    path = checked_path(root, LOCK)
    make_dirs(root, os.path.dirname(path))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)

    def take():
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return None

    if not wait_until(take, LOCK_TIMEOUT):
        os.close(fd)
        raise AgentError(
            f"another reconcile has been applying to {root} for over "
            f"{LOCK_TIMEOUT:.0f} s; nothing was changed"
        )
    return fd


def apply(request: dict, done: list) -> dict:
    root = real_root(request)
    fd = locked(root)
    try:
        # The plan was made from the manifest the facts saw: if another run
        # changed it since, this plan is stale and must not be applied.
        if "base_manifest_sha256" in request and (
            request["base_manifest_sha256"] != manifest_sha256(root)
        ):
            raise AgentError(
                "the node changed since it was planned (another reconcile applied "
                "to it); nothing was changed: run again"
            )
        return apply_locked(request, root, done)
    finally:
        os.close(fd)


def apply_locked(request: dict, root: str, done: list) -> dict:
    manifest = request.get("manifest")
    if not isinstance(manifest, dict):
        raise AgentError("apply needs a manifest object")
    current = read_manifest(root) or {"files": {}}
    writes = [planned_write(root, item) for item in request.get("write") or []]
    deletes = [
        planned_delete(root, rel, current) for rel in request.get("delete") or []
    ]
    actions = request.get("processes") or []
    for action in actions:
        checked_ids([action.get("id")])
        if action.get("action") not in ("start", "stop", "restart", "remove"):
            raise AgentError(f"unknown process action in {action!r}")
    desired = checked_ids(request.get("desired_running") or [])
    manager = make_manager(request, root)

    # Everything was checked above; from here on each step is recorded in done.
    written: list = []
    deleted: list = []
    try:
        for rel, path, data, mode in writes:
            write_atomic(root, path, data, mode, sync_dir=False)
            written.append(rel)
            done.append(f"wrote {rel}")
        sync_dirs(os.path.dirname(write[1]) for write in writes)
        manager.before_delete(actions, done)
        for rel, path in deletes:
            if os.path.lexists(path):
                os.unlink(path)
            deleted.append(rel)
            done.append(f"deleted {rel}")
        processes = manager.apply(actions, desired, written + deleted, current, done)
    except BaseException:
        if written or deleted:
            # What was written is ours now, and what was deleted is gone: the
            # manifest must say so, or a later run could not prune them.
            partial = partial_manifest(current, manifest, written, deleted)
            write_manifest(root, partial)
            done.append("wrote a partial manifest")
        raise
    write_manifest(root, manifest)
    done.append("wrote manifest")
    return {"ok": True, "processes": processes}


def write_manifest(root: str, manifest: dict) -> None:
    # Private: its hashes of secret files would let a guess be checked.
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    write_atomic(root, os.path.join(root, MANIFEST), data, 0o600)


def partial_manifest(current: dict, desired: dict, written: list, deleted: list):
    """The manifest after an apply that stopped part way.

    Files: what the node held, plus what was written, minus what was deleted.
    Processes: every desired one is recorded with unknown inputs, so that the
    next run restarts it if it runs and can remove it if no longer wanted.
    """
    files = dict(current.get("files", {}))
    for rel in written:
        files[rel] = desired["files"][rel]
    for rel in deleted:
        files.pop(rel, None)
    processes = dict(current.get("processes", {}))
    for ident in desired.get("processes", {}):
        processes.setdefault(ident, {"inputs": ""})
    return {"version": 1, "files": files, "processes": processes}


def planned_write(root: str, item: dict) -> tuple:
    rel = item.get("path")
    path = checked_path(root, rel)
    if rel.split("/")[0] == ".reconcile":
        raise AgentError(f"refused path {rel!r}: .reconcile belongs to the agent")
    try:
        data = base64.b64decode(item.get("content_b64") or "", validate=True)
    except ValueError:
        raise AgentError(f"content_b64 of {rel!r} is not base64") from None
    mode = item.get("mode", 0o644)
    if not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise AgentError(f"mode of {rel!r} must be an integer from 0 to 0o777")
    if os.path.isdir(path) and not os.path.islink(path):
        raise AgentError(f"cannot write {rel!r}: it is a directory")
    return rel, path, data, mode


def planned_delete(root: str, rel: str, current: dict) -> tuple:
    path = checked_path(root, rel)
    if rel not in current["files"]:
        raise AgentError(f"refused to delete {rel!r}: it is not in the manifest")
    if not rel.startswith(MANAGED_AREAS):
        areas = ", ".join(MANAGED_AREAS)
        raise AgentError(f"refused to delete {rel!r}: reconcile writes only in {areas}")
    if os.path.isdir(path) and not os.path.islink(path):
        raise AgentError(f"refused to delete {rel!r}: it is a directory")
    return rel, path


def make_manager(request: dict, root: str) -> Supervisord | Systemd:
    name = request.get("manager", "supervisord")
    if name == "supervisord":
        python = request.get("python") or sys.executable
        return Supervisord(root, python, request.get("root"))
    if name == "systemd":
        return Systemd(root)
    raise AgentError(f"unknown process manager {name!r}")


def wait_until(check, timeout: float):
    """Call check() every poll interval until it returns non-None, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None or time.monotonic() >= deadline:
            return result
        time.sleep(POLL_INTERVAL)


def wait_running(manager, desired: list) -> None:
    """Wait until every desired process is RUNNING; fail fast on a failed one."""

    def check():
        states = manager.states(desired)
        failures = []
        for ident in desired:
            state = states.get(ident, {}).get("state")
            if state is None:
                failures.append(f"process {ident} is unknown to {manager.name}")
            elif state in FAILED_STATES:
                tail = log_tail(manager.root, ident)
                failures.append(f"process {ident} is {state}, not RUNNING; {tail}")
        if failures:
            raise AgentError("\n".join(failures))
        return True if all(states[i]["state"] == "RUNNING" for i in desired) else None

    if not wait_until(check, PROCESS_WAIT_TIMEOUT):
        names = ", ".join(desired)
        raise AgentError(f"not RUNNING after {PROCESS_WAIT_TIMEOUT:.0f} s: {names}")


# supervisord: one per root, driven over XML-RPC on its unix socket.


def signal_pid(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except OSError:
        pass


def alive(pid: int) -> bool:
    """True while pid runs; a zombie waiting for init to reap it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def end_orphans(root: str, sockets: list) -> int:
    """End the programs a killed supervisord left behind.

    supervisord gives each program SUPERVISOR_SERVER_URL, naming its socket:
    a process of ours that carries this root's socket while no supervisord
    answers there was started by a supervisord that died. Left alone it would
    keep its ports and make the new copies fail. Linux only (/proc).
    """
    marks = {f"SUPERVISOR_SERVER_URL=unix://{path}".encode() for path in sockets}
    orphans = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != os.geteuid():
                continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = set(handle.read().split(b"\0"))
        except OSError:
            continue
        if environ & marks:
            orphans.append(int(entry))
    for pid in orphans:
        signal_pid(pid, 15)
    if orphans and not wait_until(
        lambda: None if any(map(alive, orphans)) else True, 5.0
    ):
        for pid in orphans:
            signal_pid(pid, 9)
    return len(orphans)


class Supervisord:
    name = "supervisord"

    def __init__(self, root: str, python: str, given_root: str | None = None):
        self.root = root
        self.python = python
        self.conf = os.path.join(root, "supervisor", "supervisord.conf")
        self.socket = os.path.join(root, "run", "supervisor.sock")
        # The configuration names the root as the state gave it.
        self.given_socket = os.path.join(given_root or root, "run", "supervisor.sock")

    def rpc(self):
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, "unix://" + self.socket)
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        return proxy.supervisor

    def running(self) -> bool:
        if not os.path.exists(self.socket):
            return False
        try:
            return self.rpc().getState()["statename"] == "RUNNING"
        except (OSError, HTTPException, xmlrpc.client.Error):
            return False

    def states(self, requested: list) -> dict:
        """Every program this supervisord knows (it serves this root only)."""
        infos = self.rpc().getAllProcessInfo()
        return {
            info["group"]: {"state": info["statename"], "pid": info["pid"] or None}
            for info in sorted(infos, key=lambda info: info["group"])
        }

    def start(self) -> None:
        if not os.path.isfile(self.conf):
            raise AgentError(f"cannot start supervisord: {self.conf} is missing")
        for name in ("run", "log"):
            make_dirs(self.root, os.path.join(self.root, name))
        command = [self.python, "-m", "supervisor.supervisord", "-c", self.conf]
        with tempfile.TemporaryFile() as errors:
            # No standard stream of the daemon may be one of ours: an SSH
            # channel stays open as long as any process holds it.
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                cwd=self.root,
                start_new_session=True,
            )

            def ready():
                if self.running():
                    return True
                if child.poll() not in (None, 0):
                    errors.seek(0)
                    text = errors.read().decode("utf-8", "replace").strip()[-2000:]
                    status = child.returncode
                    raise AgentError(f"supervisord exited with status {status}: {text}")
                return None

            if not wait_until(ready, SUPERVISOR_START_TIMEOUT):
                raise AgentError(
                    f"supervisord did not answer on {self.socket} "
                    f"within {SUPERVISOR_START_TIMEOUT:.0f} s"
                )
            child.poll()

    def before_delete(self, actions: list, done: list) -> None:
        """Nothing to do: reloadConfig notices removed programs."""

    def apply(self, actions, desired, changed, current, done) -> dict:
        running = self.running()
        if not running and not (actions or desired):
            return {}
        if not running:
            ended = end_orphans(self.root, [self.socket, self.given_socket])
            if ended:
                done.append(f"ended {ended} processes left by a dead supervisord")
            self.start()
            done.append("started supervisord")
        rpc = self.rpc()
        fresh = self.reload(rpc, done)
        for action in actions:
            self.act(rpc, action["id"], action["action"], fresh)
            done.append(f"{action['action']} {action['id']}")

        # A process desired running is started when it is down for any reason
        # (drift, or just added with autostart off).
        states = self.states(desired)
        for ident in desired:
            state = states.get(ident, {}).get("state")
            if state == "BACKOFF":
                # supervisord will not start a process it is retrying.
                self.call(rpc, "stopProcess", ident)
            if state in DOWN_STATES:
                self.call(rpc, "startProcess", ident, False)
        wait_running(self, desired)
        return self.states(desired)

    def reload(self, rpc, done: list) -> set:
        """Apply changed program files; return the groups (re)added."""
        added, changed, removed = rpc.reloadConfig()[0]
        for name in removed + changed:
            self.call(rpc, "stopProcessGroup", name)
            self.call(rpc, "removeProcessGroup", name)
        for name in changed + added:
            rpc.addProcessGroup(name)
        done.extend(f"reloaded {name}" for name in removed + changed + added)
        return set(added) | set(changed)

    def act(self, rpc, ident: str, action: str, fresh: set) -> None:
        state = self.states([]).get(ident, {}).get("state")
        if action == "start" and state != "RUNNING":
            if state == "BACKOFF":
                self.call(rpc, "stopProcess", ident)
            self.call(rpc, "startProcess", ident, False)
        elif action == "restart" and ident not in fresh:
            self.call(rpc, "stopProcess", ident)
            self.call(rpc, "startProcess", ident, False)
        elif action == "stop" and state is not None:
            self.call(rpc, "stopProcess", ident)
        elif action == "remove" and state is not None:
            self.call(rpc, "stopProcessGroup", ident)
            self.call(rpc, "removeProcessGroup", ident)

    @staticmethod
    def call(rpc, method: str, *args) -> None:
        """Call an RPC method, ignoring the faults that mean 'already so'."""
        from supervisor.xmlrpc import Faults

        harmless = (Faults.ALREADY_STARTED, Faults.NOT_RUNNING, Faults.BAD_NAME)
        try:
            getattr(rpc, method)(*args)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode not in harmless:
                message = f"supervisord {method}{args!r} failed: {fault.faultString}"
                raise AgentError(message) from None


# systemd: one unit per process, driven with the systemctl program.


SYSTEMD_STATES = {"active": "RUNNING", "activating": "STARTING", "failed": "FATAL"}


class Systemd:
    name = "systemd"

    def __init__(self, root: str):
        self.root = root

    @staticmethod
    def unit(ident: str) -> str:
        return f"cxengage-{ident}.service"

    @staticmethod
    def systemctl(*args: str) -> str:
        try:
            result = subprocess.run(
                ["systemctl", *args], capture_output=True, text=True, timeout=120
            )
        except FileNotFoundError:
            raise AgentError("systemctl is not installed on this node") from None
        if result.returncode != 0:
            text = result.stderr.strip()[-2000:]
            command = " ".join(args)
            status = result.returncode
            raise AgentError(f"systemctl {command} failed (status {status}): {text}")
        return result.stdout

    def running(self) -> bool:
        return True

    def show(self, ident: str) -> dict | None:
        properties = ["-p", "ActiveState", "-p", "MainPID", "-p", "LoadState"]
        output = self.systemctl("show", *properties, self.unit(ident))
        values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
        if values.get("LoadState") == "not-found":
            return None
        state = SYSTEMD_STATES.get(values.get("ActiveState"), "STOPPED")
        return {"state": state, "pid": int(values.get("MainPID") or 0) or None}

    def states(self, requested: list) -> dict:
        """The requested units and every unit file under root, when loaded."""
        directory = os.path.join(self.root, "systemd")
        names = os.listdir(directory) if os.path.isdir(directory) else []
        idents = set(requested)
        for name in names:
            if name.startswith("cxengage-") and name.endswith(".service"):
                idents.add(name[len("cxengage-") : -len(".service")])
        shown = {ident: self.show(ident) for ident in sorted(idents)}
        return {ident: state for ident, state in shown.items() if state is not None}

    def before_delete(self, actions: list, done: list) -> None:
        """Stop and disable removed units while their files still exist."""
        for action in actions:
            if action["action"] == "remove":
                self.systemctl("stop", self.unit(action["id"]))
                self.systemctl("disable", self.unit(action["id"]))
                done.append(f"remove {action['id']}")

    def apply(self, actions, desired, changed, current, done) -> dict:
        units = [
            p for p in changed if p.startswith("systemd/") and p.endswith(".service")
        ]
        for rel in units:
            path = os.path.join(self.root, rel)
            if rel not in current["files"] and os.path.exists(path):
                self.systemctl("link", path)
                done.append(f"linked {rel}")
        if units:
            self.systemctl("daemon-reload")
            done.append("daemon-reload")
        for action in actions:
            if action["action"] != "remove":
                self.systemctl(action["action"], self.unit(action["id"]))
                done.append(f"{action['action']} {action['id']}")

        # As with supervisord, a unit desired running is started when down.
        acted = {action["id"] for action in actions}
        for ident in desired:
            if ident not in acted and (self.show(ident) or {}).get("state") in (
                None,
                *DOWN_STATES,
            ):
                self.systemctl("start", self.unit(ident))
        wait_running(self, desired)
        return self.states([action["id"] for action in actions] + list(desired))


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(json.load(sys.stdin))) + "\n")
