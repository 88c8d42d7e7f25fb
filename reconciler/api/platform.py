"""The platform's `/1.0` routes: every resource module's.

Importing this module fills `ROUTES` with the routes of instances,
integrations, tenants and users.
"""

from __future__ import annotations

from . import instances, integrations, tenants, users
from .routes import ROUTES, Api

__all__ = ["ROUTES", "Api", "instances", "integrations", "tenants", "users"]
