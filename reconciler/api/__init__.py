"""The platform's `/1.0` admin API, served over the state files."""

from __future__ import annotations

from collections.abc import Callable

from ..connections import ConnectOptions
from ..store import Store
from . import openapi, platform
from .http import PREFIX, Edge, application


def make_app(
    store: Store,
    options: ConnectOptions | None = None,
    parallel: int = 10,
    access_log: Callable[[str], None] | None = None,
) -> Callable:
    """The WSGI application of the API over `store`.

    `access_log`, if given, receives one line per request.
    """
    api = platform.Api(store, options or ConnectOptions(), parallel)
    app = application(platform.ROUTES, api)
    return Edge(app, {f"{PREFIX}/tenant": f"{PREFIX}/tenants"}, access_log)


__all__ = ["make_app", "openapi"]
