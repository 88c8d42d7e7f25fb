"""Real OpenSSH servers on loopback addresses, one per test node.

Each node is an sshd listening on its own address 127.0.0.x (x from 11 up,
never reused within a session) and a free port there, with its own ed25519
host key and a short node root directory. One client key pair logs in to
every node, and one known_hosts file lists every node started, so tests
connect the way production does: key checked, nothing trusted on first use.

Nothing here imports the `reconciler` package.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SFTP_SERVER_PATHS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server")
PRIVSEP_DIR = Path("/run/sshd")
FIRST_HOST = 11
LAST_HOST = 254
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
POLL_INTERVAL = 0.05


class SshdError(RuntimeError):
    """An sshd for a test node did not start or did not answer."""


@dataclass(eq=False)
class SshNode:
    """One test node: an sshd on its own loopback address, and a node root."""

    address: str
    port: int
    user: str
    root: str
    identity: str
    known_hosts: str
    server_dir: Path = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """A node id derived from the address, such as `node-11`."""
        return "node-" + self.address.rsplit(".", 1)[1]

    @property
    def log(self) -> Path:
        return self.server_dir / "sshd.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start sshd (again) and wait until it answers with an SSH banner."""
        if self.running:
            return
        config = self.server_dir / "sshd_config"
        with open(self.log, "ab") as log:
            # A new session gives sshd its own process group, so that stop()
            # also ends the per-connection children, as a dead node would.
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        wait_for_banner(self.address, self.port, self.process, self.log)

    def stop(self) -> None:
        """Kill this node's sshd and its connections: the node is now dead."""
        if self.process is None:
            return
        if self.process.poll() is None:
            terminate_group(self.process)
        self.process = None

    def ssh_argv(self, *command: str) -> list[str]:
        """The argv of the real `ssh` client running `command` on this node.

        `-F /dev/null` keeps the user's own ssh configuration out of it.
        """
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            self.identity,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-p",
            str(self.port),
            f"{self.user}@{self.address}",
            *command,
        ]


class SshNodeFactory:
    """Starts test nodes on demand; `close()` removes all of them.

    Call it with a count: `nodes = factory(3)`. Nodes live until `close()`
    unless released earlier with `remove(nodes)`.
    """

    def __init__(self) -> None:
        self.user = getpass.getuser()
        self.base = Path(tempfile.mkdtemp(prefix="rcn-sshd-", dir="/tmp"))
        self.identity = self.base / "id_ed25519"
        self.known_hosts = self.base / "known_hosts"
        self.authorized_keys = self.base / "authorized_keys"
        self.nodes: list[SshNode] = []
        self._next_host = FIRST_HOST

        ensure_privsep_dir()
        keygen(self.identity, comment="reconciler-tests")
        shutil.copyfile(self.identity.with_suffix(".pub"), self.authorized_keys)
        self.known_hosts.write_text("")

    def __call__(self, count: int = 1) -> list[SshNode]:
        started = [self._start_one() for _ in range(count)]
        self._write_known_hosts()
        return started

    def remove(self, nodes: list[SshNode]) -> None:
        """Stop these nodes, end what tests left running there, delete them."""
        for node in nodes:
            node.stop()
        # All nodes' daemons are ended together: each takes a while to stop.
        end_processes_under([node.root for node in nodes])
        for node in nodes:
            shutil.rmtree(node.root, ignore_errors=True)
            shutil.rmtree(node.server_dir, ignore_errors=True)
            if node in self.nodes:
                self.nodes.remove(node)
        self._write_known_hosts()

    def close(self) -> None:
        self.remove(list(self.nodes))
        shutil.rmtree(self.base, ignore_errors=True)

    def _start_one(self) -> SshNode:
        if self._next_host > LAST_HOST:
            raise SshdError(
                f"no loopback address left: 127.0.0.{FIRST_HOST} to "
                f"127.0.0.{LAST_HOST} are used; remove nodes sooner or start fewer"
            )
        address = f"127.0.0.{self._next_host}"
        self._next_host += 1

        server_dir = self.base / address
        server_dir.mkdir()
        host_key = server_dir / "ssh_host_ed25519_key"
        keygen(host_key, comment=address)
        root = tempfile.mkdtemp(prefix="rcn-", dir="/tmp")

        # The port is free when chosen; another program may take it before
        # sshd binds it, so a failed bind is retried on a new port.
        for attempt in range(3):
            node = SshNode(
                address=address,
                port=free_port(address),
                user=self.user,
                root=root,
                identity=str(self.identity),
                known_hosts=str(self.known_hosts),
                server_dir=server_dir,
            )
            write_sshd_config(node, host_key, self.authorized_keys)
            try:
                node.start()
            except SshdError as error:
                node.stop()
                if attempt == 2 or "Address already in use" not in str(error):
                    shutil.rmtree(root, ignore_errors=True)
                    raise
                continue
            self.nodes.append(node)
            return node
        raise AssertionError("unreachable")

    def _write_known_hosts(self) -> None:
        lines = []
        for node in self.nodes:
            key_type, key = host_public_key(node.server_dir).split()[:2]
            lines.append(f"[{node.address}]:{node.port} {key_type} {key}\n")
        self.known_hosts.write_text("".join(lines))


def keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def host_public_key(server_dir: Path) -> str:
    return (server_dir / "ssh_host_ed25519_key.pub").read_text()


def ensure_privsep_dir() -> None:
    """sshd started by root refuses to run without its privilege separation
    directory, which a fresh container may not have yet."""
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def write_sshd_config(node: SshNode, host_key: Path, authorized_keys: Path) -> None:
    lines = [
        f"ListenAddress {node.address}",
        f"Port {node.port}",
        f"HostKey {host_key}",
        f"AuthorizedKeysFile {authorized_keys}",
        f"PidFile {node.server_dir / 'sshd.pid'}",
        f"AllowUsers {node.user}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "LogLevel VERBOSE",
    ]
    sftp_server = next((p for p in SFTP_SERVER_PATHS if os.path.exists(p)), None)
    if sftp_server:
        lines.append(f"Subsystem sftp {sftp_server}")
    (node.server_dir / "sshd_config").write_text("\n".join(lines) + "\n")


def wait_for_banner(
    address: str, port: int, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll the port until sshd greets with `SSH-2.0`, bounded in time."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise SshdError(
                f"sshd on {address}:{port} exited with {process.returncode}:\n"
                + log.read_text(errors="replace")
            )
        if read_banner(address, port).startswith(b"SSH-2.0"):
            return
        if time.monotonic() > deadline:
            terminate_group(process)
            raise SshdError(
                f"sshd on {address}:{port} did not answer within "
                f"{START_TIMEOUT:.0f} s:\n" + log.read_text(errors="replace")
            )
        time.sleep(POLL_INTERVAL)


def read_banner(address: str, port: int) -> bytes:
    try:
        with socket.create_connection((address, port), timeout=1.0) as sock:
            return sock.recv(256)
    except OSError:
        return b""


def terminate_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, wait bounded, then SIGKILL it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def end_processes_under(roots: list[str]) -> None:
    """End the supervisord tests left under each root, then any other process
    whose working directory or command line is under one of the roots."""
    daemons = []
    for root in roots:
        pid_file = Path(root) / "run" / "supervisord.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if "supervisord" in cmdline(pid):
            daemons.append(pid)
    end_pids(daemons)
    end_pids([pid for root in roots for pid in pids_under(root)])


def pids_under(root: str) -> list[int]:
    root = root.rstrip("/")
    spared = {os.getpid(), os.getppid()}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in spared:
            continue
        pid = int(entry)
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        if is_under(cwd, root) or any(mentions(arg, root) for arg in args(pid)):
            found.append(pid)
    return found


def is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def mentions(arg: str, root: str) -> bool:
    """True when an argument holds a path under `root` (`--conf=/tmp/rcn-x/a`
    counts, `/tmp/rcn-xy` does not for root `/tmp/rcn-x`)."""
    start = arg.find(root)
    while start != -1:
        end = start + len(root)
        if end == len(arg) or not (arg[end].isalnum() or arg[end] in "-_."):
            return True
        start = arg.find(root, start + 1)
    return False


def args(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def cmdline(pid: int) -> str:
    return " ".join(args(pid))


def end_pids(pids: list[int]) -> None:
    """SIGTERM each pid, wait bounded for all to go, SIGKILL the rest."""
    alive = [pid for pid in pids if signal_pid(pid, signal.SIGTERM)]
    wait_until(lambda: not any(is_alive(pid) for pid in alive), STOP_TIMEOUT)
    for pid in alive:
        signal_pid(pid, signal.SIGKILL)
    wait_until(lambda: not any(is_alive(pid) for pid in alive), STOP_TIMEOUT)


def signal_pid(pid: int, sig: signal.Signals) -> bool:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def is_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie child is reaped and counts as gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True
