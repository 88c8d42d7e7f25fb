"""Process managers on nodes: how a process is defined for each of them.

The controller only renders definitions here; the agent on the node drives
the manager itself.
"""

from __future__ import annotations

from . import supervisord, systemd

MANAGERS = {"supervisord": supervisord, "systemd": systemd}
