"""systemd: one unit per process, linked from the node root."""

from __future__ import annotations

from collections.abc import Sequence

UNITS = "systemd"
DIRECTORY = UNITS


def base_files(root: str) -> dict[str, str]:
    """systemd needs no configuration of its own under the root."""
    return {}


def unit_name(process_id: str) -> str:
    return f"cxengage-{process_id}.service"


def _exec_arg(arg: str) -> str:
    # Double quotes with C escapes are systemd's own quoting; it also expands
    # %-specifiers and $VARIABLES in ExecStart, so those are doubled.
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("%", "%%").replace("$", "$$") + '"'


def definition(
    root: str, process_id: str, argv: Sequence[str], running: bool
) -> tuple[str, str]:
    """The unit file of one process: its path and its text."""
    command = " ".join(_exec_arg(arg) for arg in argv)
    text = f"""\
# Managed by reconcile: edits are reverted on the next apply.
[Unit]
Description=CxEngage process {process_id}

[Service]
ExecStart={command}
WorkingDirectory={root}
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""
    return f"{UNITS}/{unit_name(process_id)}", text
