"""supervisord: one daemon per node root, one program file per process."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

CONFIG = "supervisor/supervisord.conf"
PROGRAMS = "supervisor/programs"
DIRECTORY = PROGRAMS


def _ini_value(text: str) -> str:
    # supervisord expands %(name)s in values; a literal % must be doubled.
    return text.replace("%", "%%")


def base_files(root: str) -> dict[str, str]:
    """The daemon's own configuration, written once per node root."""
    config = f"""\
; Managed by reconcile: edits are reverted on the next apply.
[unix_http_server]
file={root}/run/supervisor.sock
chmod=0700

[supervisord]
logfile={root}/log/supervisord.log
pidfile={root}/run/supervisord.pid
childlogdir={root}/log
directory={root}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{root}/run/supervisor.sock

[include]
files = programs/*.conf
"""
    return {CONFIG: config}


def definition(
    root: str, process_id: str, argv: Sequence[str], running: bool
) -> tuple[str, str]:
    """The program file of one process: its path and its text.

    `argv` is the fixed launcher (see supervisors.LAUNCHER): paths and code
    in which supervisord's quoting finds nothing to change.
    """
    command = _ini_value(shlex.join(argv))
    text = f"""\
; Managed by reconcile: edits are reverted on the next apply.
[program:{process_id}]
command={command}
directory={root}
autostart={"true" if running else "false"}
autorestart=true
startsecs=1
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={root}/log/{process_id}.log
"""
    return f"{PROGRAMS}/{process_id}.conf", text
