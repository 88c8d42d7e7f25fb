"""A real `reconcile serve` for the API tests: a state, a process, a client.

The server runs as a process of its own on a free port, over a copy of
examples/demo; the client speaks plain HTTP through the standard library and
refuses, on every answer, to see a Python traceback.
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"

# Seconds to wait for the "Serving ..." line, and for the exit after SIGTERM.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0

GIT_IDENTITY = ("-c", "user.name=API Tests", "-c", "user.email=api-tests@localhost")
_READY = re.compile(r"^Serving http://(?P<host>[^\s/]+):(?P<port>\d+)/1\.0/ from ")


def git(state: Path, *args: str) -> str:
    """Run git in the state folder; its stdout."""
    done = subprocess.run(
        ["git", *GIT_IDENTITY, *args],
        cwd=state,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def demo_state(folder: Path, commit: bool = False) -> Path:
    """A copy of examples/demo in `folder`; with `commit`, a git work tree."""
    state = folder / "state"
    shutil.copytree(DEMO, state)
    if commit:
        git(state, "init", "--quiet")
        git(state, "add", "--all")
        git(state, "commit", "--quiet", "--message", "The demo state")
    return state


def commit_count(state: Path) -> int:
    return int(git(state, "rev-list", "--count", "HEAD"))


def tree(root: Path) -> dict[str, bytes]:
    """The state's files by relative path, with their bytes.

    Hidden files are left out: git's own, the store's lock and its record of
    used ids; no object of the state is ever a hidden file.
    """
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    }


@dataclass(frozen=True)
class Answer:
    """One HTTP answer; unpacks as (status, headers, body)."""

    status: int
    headers: http.client.HTTPMessage
    body: Any  # the parsed JSON; None when the body is empty or not JSON
    raw: bytes

    def __iter__(self) -> Iterator[Any]:
        return iter((self.status, self.headers, self.body))


class ApiClient:
    """A client of one server: one connection per request, nothing kept."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        """Send `body` as JSON (or `raw` bytes as they are) to `path`."""
        sent = {}
        data = raw
        if raw is None and body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            try:
                connection.request(method, path, body=data, headers=sent)
            except (BrokenPipeError, ConnectionResetError):
                # The server may answer and close before reading a body it
                # refuses; its answer is still there to read.
                pass
            response = connection.getresponse()
            content = response.read()
        finally:
            connection.close()

        assert b"Traceback" not in content, content.decode(errors="replace")
        return Answer(response.status, response.headers, _parsed(content), content)


def _parsed(content: bytes) -> Any:
    if not content.strip():
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


@dataclass
class ApiServer:
    """A running `reconcile serve` and what it wrote on stderr so far."""

    state: Path
    process: subprocess.Popen[str]
    client: ApiClient
    stderr: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """`sig`, then the exit status; killed, and an error, if it hangs."""
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.send_signal(sig)
        try:
            status = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"the server did not stop within {STOP_TIMEOUT:.0f}s of {sig.name}:\n"
                + "".join(self.stderr)
            ) from None
        if self.reader is not None:
            self.reader.join(timeout=STOP_TIMEOUT)  # the last lines of stderr
        return status


def _read_stderr(
    stream: Any, lines: list[str], ready: queue.Queue[re.Match | None]
) -> None:
    for line in stream:
        lines.append(line)
        found = _READY.match(line)
        if found:
            ready.put(found)
    ready.put(None)


@contextmanager
def running_server(
    state: Path, *options: str, commit: bool = True
) -> Iterator[ApiServer]:
    """`reconcile serve STATE --port 0 OPTIONS`, stopped by SIGTERM; it must exit 0."""
    command = [sys.executable, "-m", "reconciler.cli", "serve", str(state)]
    command += ["--host", "127.0.0.1", "--port", "0", *options]
    if not commit:
        command.append("--no-commit")
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    ready: queue.Queue[re.Match | None] = queue.Queue()
    reader = threading.Thread(
        target=_read_stderr, args=(process.stderr, lines, ready), daemon=True
    )
    reader.start()

    # The line comes once the socket listens; the process ending comes first
    # when it cannot start.
    try:
        found = ready.get(timeout=START_TIMEOUT)
    except queue.Empty:
        found = None
    if found is None:
        process.kill()
        process.wait()
        reader.join(timeout=STOP_TIMEOUT)
        raise RuntimeError("reconcile serve did not start:\n" + "".join(lines))

    client = ApiClient(found["host"], int(found["port"]))
    server = ApiServer(state, process, client, lines, reader)
    try:
        yield server
    finally:
        status = server.stop()
    assert status == 0, f"reconcile serve exited {status}:\n" + "".join(lines)
