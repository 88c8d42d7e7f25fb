"""Serving the API on cheroot, a multi-threaded production WSGI server."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from cheroot.errors import socket_errors_to_ignore
from cheroot.server import HeaderReader, HTTPConnection, HTTPRequest
from cheroot.wsgi import Gateway_10, Server

from ..connections import ConnectOptions
from ..errors import ReconcileError
from ..store import Store
from . import make_app
from .http import error_body

log = logging.getLogger(__name__)

# Seconds an idle keep-alive connection stays open, and a slow client may take.
SOCKET_TIMEOUT = 30
# Seconds the requests in flight get to finish once a stop is asked for.
SHUTDOWN_TIMEOUT = 10
# Bytes of request line and headers accepted; cheroot answers 413 past it.
MAX_HEADERS = 64 * 1024


class ServeError(ReconcileError):
    """The server could not start."""


class _Gateway(Gateway_10):
    """cheroot's WSGI gateway, closing the connection when the answer says so.

    cheroot sends an application's `Connection: close` but keeps the socket
    open and reads what follows as the next request. After a body refused
    half-read, that rest is the old body, so the connection must end.
    """

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Any:
        write = super().start_response(status, headers, exc_info)
        if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
            self.req.close_connection = True
        return write


class _Once(dict):
    """Request headers in which a header that must be single cannot repeat.

    Two Content-Length headers could frame one request two ways (a proxy in
    front may read the first, cheroot reads the last): RFC 9112 asks for a
    400, as for two Host headers.
    """

    SINGLE = (b"Content-Length", b"Host")

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if key in self.SINGLE and key in self:
            raise ValueError(f"the {key.decode()} header is given more than once")
        super().__setitem__(key, value)


class _Headers(HeaderReader):
    def __call__(self, rfile: Any, hdict: dict | None = None) -> dict:
        found = super().__call__(rfile, _Once())
        if hdict is None:
            return dict(found)
        hdict.update(found)
        return hdict


class _JsonRequest(HTTPRequest):
    """cheroot's request, whose own refusals are JSON like the API's.

    cheroot answers some requests before the application sees them (a
    request line or headers too long, a transfer coding it does not know);
    those answers carry an `error` field too.
    """

    header_reader = _Headers()

    def simple_response(self, status: int | str, msg: str = "") -> None:
        status = str(status)
        body = error_body(msg or f"the request was refused: {status}")
        head = [
            f"{self.server.protocol} {status}",
            f"Content-Length: {len(body)}",
            "Content-Type: application/json",
        ]
        if status[:3] in ("413", "414"):
            self.close_connection = True
            head.append("Connection: close")
        data = "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body
        try:
            self.conn.wfile.write(data)
        except OSError as error:
            if error.args[0] not in socket_errors_to_ignore:
                raise


class _Connection(HTTPConnection):
    RequestHandlerClass = _JsonRequest


def stderr_line(line: str) -> None:
    """Write one line to stderr in one system call.

    Lines from several threads never interleave, and a request pays for no
    more than the write: this is on the path of every request.
    """
    try:
        os.write(2, (line + "\n").encode("utf-8", "replace"))
    except OSError:
        pass  # stderr closed: the line has nowhere to go


def serve(
    store: Store,
    host: str,
    port: int,
    options: ConnectOptions,
    threads: int = 10,
    parallel: int = 10,
    ready: Callable[[str], None] | None = None,
) -> str:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight.

    Returns the name of the signal that stopped the server.
    """
    started = time.monotonic()
    count, problems = store.warm()
    log.info("indexed %d objects in %.2fs", count, time.monotonic() - started)
    if store.is_empty():
        log.warning(
            "%s holds no state folders (instances/, tenants/, users/, ...): "
            "serving an empty state",
            store.root,
        )
    if problems:
        log.warning(
            "%d problem%s in the state files; requests that read them answer 500 "
            "until they are fixed (reconcile validate lists them): first: %s",
            len(problems),
            "" if len(problems) == 1 else "s",
            problems[0],
        )
    # The index is long-lived and acyclic: keep it out of the cyclic
    # collector, whose full passes over it took ~80 ms at 10,000 users.
    gc.freeze()
    app = make_app(store, options, parallel, access_log=stderr_line)
    server = Server(
        (host, port),
        app,
        numthreads=threads,
        server_name="reconcile",
        timeout=SOCKET_TIMEOUT,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    # The request line and headers together; bodies are bounded in http.py,
    # where an answer over the limit can still be JSON.
    server.max_request_header_size = MAX_HEADERS
    server.gateway = _Gateway
    server.ConnectionClass = _Connection
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    try:
        server.prepare()
    except OSError as error:
        raise ServeError(f"cannot listen on {host}:{port}: {error}") from None
    # The server loop runs in a thread of its own; the main thread only waits
    # for a signal, so the handler never interrupts the loop half-way through.
    previous = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    loop = threading.Thread(target=server.serve, name="http-accept", daemon=True)
    try:
        loop.start()
        bound_host, bound_port = server.bind_addr[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        if ready is not None:
            ready(f"http://{shown}:{bound_port}")
        while loop.is_alive() and not stop.wait(0.5):
            pass
        if not received:
            raise ServeError("the server's loop ended on its own; see the log above")
        log.info("stopping on %s", received[0])
    finally:
        server.stop()
        loop.join(SHUTDOWN_TIMEOUT)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0]
