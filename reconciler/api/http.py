"""HTTP plumbing of the API: routes as data, JSON in and out, errors as JSON.

Every route is declared once, as a `Route`, and that one list feeds both
Bottle and the OpenAPI document. A handler returns a `Reply` or raises; the
project's exceptions become status codes here and nowhere else, and every
error answer, the router's own 404 and 405 included, is a JSON object with
an `error` field.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import bottle
from cheroot.errors import MaxSizeExceeded
from cheroot.server import ChunkedRFile

from ..errors import (
    BrokenObject,
    ConnectionFailed,
    InvalidObject,
    NodeCommandError,
    ObjectExists,
    ObjectInUse,
    ObjectNotFound,
    StaleObject,
    StateError,
    WriteFailed,
)

log = logging.getLogger(__name__)

PREFIX = "/1.0"
# The largest request body accepted, in bytes (an integration definition is
# the largest object; the same limit as a state file).
MAX_BODY = 1024 * 1024
# The deepest nesting of objects and arrays a body may have; no object of the
# state comes near it, and a state file's writer recurses once per level.
MAX_DEPTH = 32

STATUS_OF = {
    InvalidObject: 400,
    ObjectNotFound: 404,
    ObjectExists: 409,
    ObjectInUse: 409,
    StaleObject: 412,
    BrokenObject: 500,
    StateError: 500,
    WriteFailed: 500,
    ConnectionFailed: 502,
    NodeCommandError: 502,
}


class ApiError(Exception):
    """A refusal with its status code, raised by the HTTP layer itself."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """One operation of the API, for Bottle and for the OpenAPI document."""

    method: str
    path: str  # with {name} parameters, as OpenAPI writes them
    handler: Callable[..., Reply]
    summary: str
    status: int = 200
    request: str | None = None  # a request shape's name (see shapes.py)
    answer: str | None = None  # an answer shape's name, None for no body
    etag: bool = False  # the answer carries an ETag; If-Match is honoured

    @property
    def bottle_path(self) -> str:
        return self.path.replace("{", "<").replace("}", ">")


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False) + "\n").encode()


def error_body(message: str, details: dict | None = None) -> bytes:
    return json_bytes({"error": message, **(details or {})})


# -- reading requests


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"field {key!r} is given twice")
        result[key] = value
    return result


def _check_content_type(environ: dict) -> None:
    given = environ.get("CONTENT_TYPE", "")
    media, *params = [part.strip() for part in given.split(";")]
    if media.lower() != "application/json":
        shown = f"{given!r}" if given else "none"
        raise ApiError(
            415, f"the body must be JSON sent as application/json; got {shown}"
        )
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            if value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                raise ApiError(415, f"the body must be UTF-8, not {value.strip()}")


def read_body(environ: dict) -> bytes:
    """The request's raw body, at most MAX_BODY bytes."""
    length = environ.get("CONTENT_LENGTH") or ""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    stream = environ["wsgi.input"]
    too_big = ApiError(
        413,
        f"the body is over {MAX_BODY} bytes, the limit for one request",
        {"Connection": "close"},
    )
    if length and chunked:
        raise ApiError(
            400,
            "the request has both Content-Length and Transfer-Encoding: chunked",
            {"Connection": "close"},
        )
    if length:
        if not re.fullmatch(r"[0-9]{1,18}", length):
            # int() would take "+5" or "1_0": a proxy in front may not.
            raise ApiError(
                400, f"invalid Content-Length {length[:40]!r}", {"Connection": "close"}
            )
        size = int(length)
        if size > MAX_BODY:
            raise too_big
        data = stream.read(size) if size > 0 else b""
        if len(data) != size:
            raise ApiError(
                400,
                f"the body ended after {len(data)} of the {size} bytes its "
                "Content-Length announced",
                {"Connection": "close"},
            )
        return data
    if chunked:
        if isinstance(stream, ChunkedRFile):
            # Refuse a chunk that announces more than the limit before it is
            # read: the reader takes each chunk whole. Chunk-size lines count
            # too, hence the margin.
            stream.maxlen = 2 * MAX_BODY
        try:
            data = stream.read(MAX_BODY + 1)
        except (MaxSizeExceeded, OSError):
            raise too_big from None
        except ValueError as error:
            raise ApiError(
                400, f"malformed chunked body: {error}", {"Connection": "close"}
            ) from None
        if len(data) > MAX_BODY:
            raise too_big
        return data
    return b""


def _no_body(route: Route, environ: dict) -> None:
    """Refuse a body sent to a route that reads none, rather than ignore it.

    An empty JSON object, which some clients send by default, is no body.
    """
    # Read whatever was sent, even where it is ignored: a body left unread
    # would be taken for the next request on the connection.
    raw = read_body(environ).removeprefix(codecs.BOM_UTF8)
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        return
    if raw.strip() and not re.fullmatch(rb"\s*\{\s*\}\s*", raw):
        raise ApiError(
            400,
            f"{route.method} {route.path} takes no body; got {len(raw)} bytes",
        )


def _too_deep(value: Any) -> bool:
    """Whether objects and arrays nest in `value` more than MAX_DEPTH deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large for a float")
    return value


def json_object(environ: dict) -> dict[str, Any]:
    """The request's body as a JSON object; ApiError for anything else."""
    # RFC 8259 lets a parser ignore a byte-order mark; some clients send one.
    raw = read_body(environ).removeprefix(codecs.BOM_UTF8)
    if not raw.strip():
        raise ApiError(400, "the request needs a JSON object as its body")
    _check_content_type(environ)
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite,
            object_pairs_hook=_no_duplicates,
        )
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise ApiError(
            400,
            f"malformed JSON at line {error.lineno} column {error.colno}: {error.msg}",
        ) from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    except ValueError as error:
        raise ApiError(400, f"malformed JSON: {error}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object")
    if _too_deep(value):
        raise ApiError(400, f"the body is nested more than {MAX_DEPTH} levels deep")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        # JSON's \ud800 escapes can spell a lone surrogate, which is no
        # character: no file, hash or answer can hold it.
        code = f"\\u{ord(error.object[error.start]):04x}"
        raise ApiError(
            400,
            f"the body holds {code}, half of a surrogate pair, which is no character",
        ) from None
    return value


# -- the application


def _answer(status: int, body: bytes, headers: dict[str, str]) -> bottle.HTTPResponse:
    response = bottle.HTTPResponse(body=body, status=status)
    if body:
        response.content_type = "application/json"
    for name, value in headers.items():
        response.set_header(name, value)
    return response


def _failure(error: Exception) -> bottle.HTTPResponse:
    if isinstance(error, ApiError):
        return _answer(error.status, error_body(error.message), error.headers)
    for kind, status in STATUS_OF.items():
        if isinstance(error, kind):
            if status >= 500:
                log.error("%s", error)
            message = str(error)
            if isinstance(error, StateError):
                message += ": " + "; ".join(str(p) for p in error.problems)
            details = getattr(error, "details", None)
            return _answer(status, error_body(message, details), {})
    log.exception("unexpected failure")
    return _answer(
        500, error_body("internal error; the server's log has the details"), {}
    )


def _wrap(route: Route, context: Any) -> Callable[..., bottle.HTTPResponse]:
    def call(**params: str) -> bottle.HTTPResponse:
        try:
            if route.request is None:
                _no_body(route, bottle.request.environ)
            reply = route.handler(context, bottle.request, **params)
        except Exception as error:  # every failure becomes a JSON answer
            return _failure(error)
        body = b"" if reply.body is None else json_bytes(reply.body)
        return _answer(reply.status, body, reply.headers)

    return call


def _error_page(error: bottle.HTTPError) -> bytes:
    bottle.response.content_type = "application/json"
    path = bottle.request.path
    path = path if len(path) <= 200 else path[:197] + "..."
    if error.status_code == 404:
        message = f"no such route: {path}"
    elif error.status_code == 405:
        allowed = error.headers.get("Allow", "")
        message = (
            f"method {bottle.request.method} is not allowed on "
            f"{path}; allowed: {allowed}"
        )
    else:
        message = error.body if isinstance(error.body, str) else error.status_line
        if error.exception is not None:
            log.error("unexpected failure: %s", error.exception)
            message = "internal error; the server's log has the details"
    return error_body(message)


def application(routes: list[Route], context: Any) -> bottle.Bottle:
    """A Bottle application serving `routes`, each handler given `context`."""
    app = bottle.Bottle(catchall=True)
    app.default_error_handler = _error_page  # type: ignore[method-assign]
    for route in routes:
        app.route(route.bottle_path, route.method, _wrap(route, context))
    return app


class Edge:
    """WSGI middleware at the edge: path aliases, no trailing /, access log.

    `/1.0/tenant/...` answers as `/1.0/tenants/...`, as the platform's own
    examples write it. With `access_log`, one line per request goes to it:
    client address, method, path, status and time taken.
    """

    def __init__(
        self,
        app: Callable,
        aliases: dict[str, str],
        access_log: Callable[[str], None] | None = None,
    ):
        self.app = app
        self.aliases = aliases
        self.access_log = access_log

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        started = time.monotonic()
        path = environ.get("PATH_INFO", "")
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
        for alias, target in self.aliases.items():
            if path == alias or path.startswith(alias + "/"):
                path = target + path[len(alias) :]
                break
        environ["PATH_INFO"] = path

        def record(status: str, headers: list, exc_info: Any = None) -> Callable:
            if self.access_log is not None:
                self.access_log(
                    f"{environ.get('REMOTE_ADDR', '-')} "
                    f"{_loggable(environ.get('REQUEST_METHOD', ''))} "
                    f"{_loggable(environ.get('PATH_INFO', ''))} "
                    f"{status.split(' ', 1)[0]} "
                    f"{(time.monotonic() - started) * 1000:.1f}ms"
                )
            return start_response(status, headers, exc_info)

        try:
            path.encode("latin-1").decode("utf-8")
        except UnicodeError:
            # Bottle would drop the bytes it cannot decode, and %FFacme
            # would find acme.
            body = error_body("the path is not UTF-8 once its %-escapes are decoded")
            record(
                "400 Bad Request",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        return self.app(environ, record)


def _loggable(path: str) -> str:
    """The path percent-encoded again, so that no byte of it can forge a line."""
    return quote(path.encode("latin-1", "replace"), safe="/@+:,;=!$&'()*~")
