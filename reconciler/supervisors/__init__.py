"""Process managers on nodes: how a process is defined for each of them.

The controller only renders definitions here; the agent on the node drives
the manager itself. A process's argv is never written into the manager's
own configuration, whose quoting rules (comments, `%` expansion, line
breaks) could change it: it goes to a JSON file beside the definition, and
the manager runs a fixed launcher that execs it as it is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from . import supervisord, systemd

MANAGERS = {"supervisord": supervisord, "systemd": systemd}

# The launcher: `python -c LAUNCHER argv.json` replaces itself (same pid) with
# the argv the file holds, found on PATH as a process manager would.
LAUNCHER = "import json,os,sys;a=json.load(open(sys.argv[1]));os.execvp(a[0],a)"


def argv_file(argv: Sequence[str]) -> str:
    return json.dumps(list(argv), indent=2, ensure_ascii=False) + "\n"


def definition_files(
    manager: str,
    root: str,
    python: str,
    process_id: str,
    argv: Sequence[str],
    running: bool,
) -> dict[str, str]:
    """Every file that defines one process under `manager`, by path."""
    module = MANAGERS[manager]
    argv_path = f"{module.DIRECTORY}/{process_id}.argv.json"
    launcher = [python, "-c", LAUNCHER, f"{root}/{argv_path}"]
    path, text = module.definition(root, process_id, launcher, running)
    return {argv_path: argv_file(argv), path: text}
