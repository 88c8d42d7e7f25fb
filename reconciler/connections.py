"""Connections to nodes: run the agent there, over SSH or as a local process.

Every call sends the agent's source and one request on the agent's stdin and
runs the constant bootstrap program, so nothing but `python -c <BOOTSTRAP>`
ever appears on a command line.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from errno import ECONNREFUSED
from typing import Any, Protocol

import fabric
import paramiko
from fabric.runners import Remote
from invoke.exceptions import CommandTimedOut

from .agent import BOOTSTRAP, agent_source
from .errors import ConnectionFailed, HostKeyError, NodeCommandError

log = logging.getLogger(__name__)

STDERR_TAIL = 2000


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach nodes; the same for every node of one run."""

    identity: str | None = None
    known_hosts: str | None = None
    accept_new_host_keys: bool = False
    connect_timeout: float = 10.0
    command_timeout: float = 120.0


class NodeConnection(Protocol):
    key: str

    def call(self, request: dict) -> dict: ...

    def close(self) -> None: ...


def connect(key: str, node: dict, options: ConnectOptions) -> NodeConnection:
    """Open a connection to the node called key ("IN1/ND1")."""
    kind = node.get("connection", "ssh")
    if kind == "local":
        python = node.get("python") or sys.executable
        return LocalConnection(key, python, options.command_timeout)
    if kind == "ssh":
        return SshConnection(key, node, options)
    raise ConnectionFailed(f"{key}: unknown connection {kind!r}; use ssh or local")


@functools.cache
def _agent() -> str:
    return agent_source()


def _payload(request: dict) -> str:
    return json.dumps({"agent": _agent(), "request": request})


def _parsed(stdout: str) -> dict | None:
    try:
        answer = json.loads(stdout)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _read_answer(key: str, op: str, status: int, stdout: str, stderr: str) -> dict:
    """Turn the agent's output into its answer, or raise NodeCommandError."""
    tail = stderr.strip()[-STDERR_TAIL:]
    suffix = f"\nstderr: {tail}" if tail else ""
    answer = _parsed(stdout)
    if answer is None:
        raise NodeCommandError(
            f"{key}: the agent's {op} gave no JSON answer (exit status {status})"
            + suffix
        )
    if status != 0 or not answer.get("ok"):
        reason = answer.get("error") or f"exit status {status}"
        error = NodeCommandError(f"{key}: {op} failed: {reason}{suffix}")
        error.answer = answer
        raise error
    return answer


# What a local node's agent, supervisord and processes inherit from us: the
# basics a login would give them, never our secrets (SSH passwords, {env:}
# values) nor anything else of the controller's environment.
STOP_GRACE = 10.0
INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR")


def node_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in INHERITED if name in os.environ}


class LocalConnection:
    """A node that is this machine: the agent runs as a child process."""

    def __init__(self, key: str, python: str, command_timeout: float = 120.0):
        self.key = key
        self.python = python
        self.command_timeout = command_timeout

    def call(self, request: dict) -> dict:
        op = request.get("op", "?")
        started = time.monotonic()
        try:
            child = subprocess.Popen(
                [self.python, "-c", BOOTSTRAP],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=node_environment(),
            )
        except FileNotFoundError:
            message = f"{self.key} (local): cannot run {self.python}: not found"
            raise ConnectionFailed(message) from None
        payload = _payload(request).encode("ascii")
        try:
            stdout, stderr = child.communicate(payload, timeout=self.command_timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM first: the agent then records what it did before it ends.
            child.terminate()
            try:
                stdout, stderr = child.communicate(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                child.kill()
                stdout, stderr = child.communicate()
            answer = _parsed(stdout.decode("utf-8", "replace"))
            message = f"{self.key}: {op} did not finish in {self.command_timeout} s"
            error = NodeCommandError(message)
            error.answer = answer or {}
            raise error from None
        finally:
            elapsed = time.monotonic() - started
            log.debug("%s: agent %s took %.2f s (local)", self.key, op, elapsed)
        return _read_answer(
            self.key,
            op,
            child.returncode,
            stdout.decode("utf-8", "replace"),
            stderr.decode("utf-8", "replace"),
        )

    def close(self) -> None:
        """Nothing to release."""


class _PayloadRemote(Remote):
    """Fabric's remote runner, reading our in-memory stdin in large chunks.

    Invoke reads a stream that is not a terminal one character per poll,
    which would take minutes for the agent's source.
    """

    def read_our_stdin(self, input_):
        return input_.read(256 * 1024)


class _UnknownHostKey(paramiko.SSHException):
    """The node's host key is not in known_hosts and new keys are refused."""


class _RejectPolicy(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(hostname)


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Like OpenSSH's accept-new: record an unknown key, refuse a changed one.

    (A changed key never reaches a policy: paramiko refuses it first.)
    """

    lock = threading.Lock()

    def __init__(self, path: str):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with self.lock:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "r+b") as handle:
                size = handle.seek(0, os.SEEK_END)
                if size:
                    handle.seek(size - 1)
                    if handle.read(1) != b"\n":
                        line = "\n" + line
                handle.write(line.encode("ascii"))
        client.get_host_keys().add(hostname, key.get_name(), key)
        fingerprint = key.fingerprint
        log.warning(
            "added the new host key of %s (%s) to %s", hostname, fingerprint, self.path
        )


def node_password(key: str, value: object) -> str | None:
    """The node's SSH password: a literal, or {"env": NAME} read from NAME."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"env"}:
        name = value["env"]
        secret = os.environ.get(name)
        if secret is None:
            raise ConnectionFailed(
                f"{key}: the password comes from environment variable {name}, "
                "which is not set"
            )
        return secret
    raise ConnectionFailed(f"{key}: password must be a string or {{env: NAME}}")


class SshConnection:
    """A node reached over SSH with Fabric; opened on construction."""

    def __init__(self, key: str, node: dict, options: ConnectOptions):
        self.key = key
        self.python = node.get("python") or "python3"
        self.command_timeout = options.command_timeout
        self.connect_timeout = options.connect_timeout
        address = node.get("ip-address")
        port = int(node.get("port", 22))
        user = node.get("username")
        if not address or not user:
            raise ConnectionFailed(f"{key}: the node needs ip-address and username")
        self.where = f"{user}@{address}:{port}"
        self.known_hosts = os.path.expanduser(
            options.known_hosts or "~/.ssh/known_hosts"
        )
        self._connection = fabric.Connection(
            host=address,
            user=user,
            port=port,
            # lazy: no /etc/fabric.yaml nor ~/.fabric.yaml may change how we
            # connect; everything comes from the node and the options.
            config=fabric.Config(
                lazy=True,
                overrides={
                    "load_ssh_configs": False,
                    "runners": {"remote": _PayloadRemote},
                },
            ),
            connect_kwargs=self._connect_kwargs(node, options),
        )
        self._trust_known_hosts(options.accept_new_host_keys)
        self._open(options.connect_timeout)

    def _connect_kwargs(self, node: dict, options: ConnectOptions) -> dict:
        # The timeout goes here: Fabric's own connect_timeout is made an int.
        timeout = options.connect_timeout
        kwargs = {
            "timeout": timeout,
            "banner_timeout": timeout,
            "auth_timeout": timeout,
        }
        identity = node.get("identity") or options.identity
        if identity:
            kwargs["key_filename"] = os.path.expanduser(identity)
            kwargs["look_for_keys"] = False
        password = node_password(self.key, node.get("password"))
        if password is not None:
            kwargs["password"] = password
        return kwargs

    def _trust_known_hosts(self, accept_new: bool) -> None:
        # Fabric installs AutoAddPolicy; replace it: trust only known_hosts.
        client = self._connection.client
        if os.path.exists(self.known_hosts):
            client.load_host_keys(self.known_hosts)
        if accept_new:
            client.set_missing_host_key_policy(_AcceptNewPolicy(self.known_hosts))
        else:
            client.set_missing_host_key_policy(_RejectPolicy())

    def _open(self, timeout: float) -> None:
        try:
            self._connection.open()
        except Exception as error:
            self._connection.close()
            raise self._failure(error, timeout) from None
        log.debug("%s: connected to %s", self.key, self.where)

    def _failure(self, error: Exception, timeout: float) -> ConnectionFailed:
        """A one-line ConnectionFailed for what went wrong while connecting."""
        where = f"{self.key} ({self.where})"
        if isinstance(error, _UnknownHostKey):
            return HostKeyError(
                f"{where}: host key unknown; not in {self.known_hosts} "
                "(add it to known_hosts with ssh-keyscan, or pass "
                "--accept-new-host-keys)"
            )
        if isinstance(error, paramiko.BadHostKeyException):
            return HostKeyError(
                f"{where}: host key differs from the one in {self.known_hosts}; "
                "refusing to connect (if the node was rebuilt, remove its old key)"
            )
        if isinstance(error, paramiko.AuthenticationException):
            return ConnectionFailed(f"{where}: authentication failed")
        if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
            errnos = {e.errno for e in error.errors.values()}
            reason = "connection refused" if errnos == {ECONNREFUSED} else "unreachable"
            return ConnectionFailed(f"{where}: {reason}")
        if isinstance(error, socket.gaierror):
            return ConnectionFailed(f"{where}: no such host")
        # Paramiko says "No existing session" when the handshake timed out.
        if isinstance(error, TimeoutError) or str(error) == "No existing session":
            return ConnectionFailed(f"{where}: no SSH answer within {timeout} s")
        if isinstance(error, ConnectionRefusedError):
            return ConnectionFailed(f"{where}: connection refused")
        if isinstance(error, (paramiko.SSHException, OSError, EOFError)):
            text = " ".join(str(error).split()) or type(error).__name__
            return ConnectionFailed(f"{where}: {text}")
        text = " ".join(str(error).split())
        return ConnectionFailed(f"{where}: {type(error).__name__}: {text}")

    def call(self, request: dict) -> dict:
        op = request.get("op", "?")
        command = shlex.join([self.python, "-c", BOOTSTRAP])
        started = time.monotonic()
        # invoke's timeout starts only once the command runs; opening the
        # session can stall too. A watchdog closes the connection past the
        # deadline, which ends every wait on it.
        deadline = self.connect_timeout + self.command_timeout
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            self._connection.close()

        watchdog = threading.Timer(deadline, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            result = self._run(command, request)
        except CommandTimedOut:
            message = f"{self.key}: {op} did not finish in {self.command_timeout} s"
            raise NodeCommandError(message) from None
        except (paramiko.SSHException, OSError, EOFError) as error:
            if expired.is_set():
                raise self._no_answer(op, deadline) from None
            text = " ".join(str(error).split()) or type(error).__name__
            message = f"{self.key} ({self.where}): lost during {op}: {text}"
            raise ConnectionFailed(message) from None
        finally:
            watchdog.cancel()
            elapsed = time.monotonic() - started
            log.debug("%s: agent %s took %.2f s", self.key, op, elapsed)
        if expired.is_set():
            raise self._no_answer(op, deadline)
        return _read_answer(self.key, op, result.exited, result.stdout, result.stderr)

    def _no_answer(self, op: str, deadline: float) -> ConnectionFailed:
        return ConnectionFailed(
            f"{self.key} ({self.where}): no answer to {op} within {deadline} s"
        )

    def _run(self, command: str, request: dict) -> Any:
        return self._connection.run(
            command,
            in_stream=io.StringIO(_payload(request)),
            hide=True,
            warn=True,
            pty=False,
            echo_stdin=False,
            timeout=self.command_timeout,
        )

    def close(self) -> None:
        self._connection.close()
