"""Serving the API on cheroot, a multi-threaded production WSGI server."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

from cheroot.wsgi import Server

from ..connections import ConnectOptions
from ..errors import ReconcileError
from ..store import Store
from . import make_app

log = logging.getLogger(__name__)

# Seconds an idle keep-alive connection stays open, and a slow client may take.
SOCKET_TIMEOUT = 30


class _Stop(BaseException):
    """Raised by the signal handler; not an Exception, so no loop swallows it."""


class ServeError(ReconcileError):
    """The server could not start."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def serve(
    store: Store,
    host: str,
    port: int,
    options: ConnectOptions,
    threads: int = 10,
    parallel: int = 10,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight."""
    started = time.monotonic()
    count = store.warm()
    log.info("indexed %d objects in %.2fs", count, time.monotonic() - started)
    app = make_app(store, options, parallel)
    server = Server(
        (host, port),
        app,
        numthreads=threads,
        server_name="reconcile",
        timeout=SOCKET_TIMEOUT,
        shutdown_timeout=10,
    )
    previous = {
        sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        try:
            server.prepare()
        except OSError as error:
            raise ServeError(f"cannot listen on {host}:{port}: {error}") from None
        bound_host, bound_port = server.bind_addr[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        if ready is not None:
            ready(f"http://{shown}:{bound_port}")
        server.serve()
    except (_Stop, KeyboardInterrupt) as stop:
        log.info("stopping on %s", stop or "interrupt")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
