"""The route table of the platform API, and what every handler works with.

Each resource module registers its handlers here with `route`; the one list
feeds both Bottle and the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bottle

from ..connections import ConnectOptions
from ..store import Store
from .http import PREFIX, Reply, Route

Request = bottle.BaseRequest


@dataclass
class Api:
    """What every handler works with."""

    store: Store
    options: ConnectOptions
    parallel: int = 10


ROUTES: list[Route] = []


def route(method: str, path: str, summary: str, **kwargs: Any) -> Callable:
    """Register a handler for `method` on `PREFIX + path`."""

    def register(handler: Callable[..., Reply]) -> Callable[..., Reply]:
        ROUTES.append(Route(method, PREFIX + path, handler, summary, **kwargs))
        return handler

    return register
