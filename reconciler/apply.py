"""Running a reconcile over many nodes: facts, plan, and the steps, in parallel.

Each node is handled on its own worker: connect, gather facts, plan, and
(when applying) send the steps in one agent call. A node's failure is
recorded in its result and never stops the others.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .connections import ConnectOptions, connect
from .errors import ConflictError, ReconcileError
from .facts import gather
from .plan import DELETE, NodePlan, plan_node
from .render import DesiredNode, scrubbed

log = logging.getLogger(__name__)

UNCHANGED, CHANGED, SKIPPED, FAILED = "unchanged", "changed", "skipped", "failed"


@dataclass
class NodeResult:
    key: str
    name: str
    status: str
    plan: NodePlan | None = None
    error: str | None = None
    desired: DesiredNode | None = None
    # Steps an apply carried out before it failed, as the agent reported them.
    done: list[str] = field(default_factory=list)


def _reason(key: str, error: Exception) -> str:
    """The error's text without the node key the report already shows."""
    text = str(error)
    if text.startswith(f"{key}: "):
        return text[len(key) + 2 :]
    where, separator, rest = text.removeprefix(f"{key} (").partition("): ")
    if text.startswith(f"{key} (") and separator:
        return f"{where}: {rest}"  # `root@10.0.0.1:22: connection refused`
    return text


def apply_request(desired: DesiredNode, plan: NodePlan) -> dict[str, Any]:
    """The agent call that carries out one node's plan."""
    return {
        "op": "apply",
        "root": desired.root,
        "manager": desired.manager,
        "python": desired.node["python"],
        "write": [
            {
                "path": step.path,
                "content_b64": base64.b64encode(step.new or b"").decode(),
                "mode": 0o600 if step.path in desired.private else 0o644,
            }
            for step in plan.files
            if step.action != DELETE
        ],
        "delete": [step.path for step in plan.files if step.action == DELETE],
        "processes": [
            {"id": step.id, "action": step.action} for step in plan.processes
        ],
        "desired_running": sorted(
            pid for pid, process in desired.processes.items() if process.running
        ),
        "manifest": plan.manifest.to_json(),
        "base_manifest_sha256": plan.base_manifest_sha256,
    }


def reconcile_node(
    desired: DesiredNode,
    options: ConnectOptions,
    apply: bool,
    take_over: bool = False,
) -> NodeResult:
    name = desired.node.get("name", desired.key)
    if not desired.enabled:
        log.warning("%s: skipped (status: false)", desired.key)
        return NodeResult(desired.key, name, SKIPPED, desired=desired)
    started = time.monotonic()
    connection = None
    plan = None
    try:
        connection = connect(desired.key, desired.node, options)
        plan = plan_node(desired, gather(connection, desired))
        if plan.conflicts and apply and not take_over:
            raise ConflictError(
                "refusing to overwrite files reconcile does not manage: "
                + ", ".join(plan.conflicts)
                + "; move them away, or apply with --take-over to replace them"
            )
        if apply and plan.changed:
            connection.call(apply_request(desired, plan))
    except ReconcileError as error:
        log.debug("%s: %s", desired.key, error)
        answer = getattr(error, "answer", None) or {}
        return NodeResult(
            desired.key,
            name,
            FAILED,
            plan=plan,
            error=scrubbed(desired, _reason(desired.key, error)),
            desired=desired,
            done=list(answer.get("done", [])),
        )
    except Exception as error:  # one node's bug must not stop the others
        log.debug("%s: unexpected failure", desired.key, exc_info=True)
        message = scrubbed(
            desired, f"unexpected error: {type(error).__name__}: {error}"
        )
        return NodeResult(
            desired.key, name, FAILED, plan=plan, error=message, desired=desired
        )
    finally:
        if connection is not None:
            connection.close()
    log.info("%s: done in %.2fs", desired.key, time.monotonic() - started)
    status = CHANGED if plan.changed else UNCHANGED
    return NodeResult(desired.key, name, status, plan=plan, desired=desired)


def reconcile(
    nodes: Iterable[DesiredNode],
    options: ConnectOptions,
    *,
    apply: bool,
    parallel: int = 10,
    take_over: bool = False,
    progress: Callable[[NodeResult], None] | None = None,
) -> list[NodeResult]:
    """Plan (and apply) every node, at most `parallel` at a time.

    Results come back sorted by node key, whatever order nodes finished in.
    """
    nodes = list(nodes)
    results: list[NodeResult] = []
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [
            pool.submit(reconcile_node, node, options, apply, take_over)
            for node in nodes
        ]
        for future in futures:
            result = future.result()
            results.append(result)
            if progress is not None:
                progress(result)
    return sorted(results, key=lambda result: natural(result.key))


def natural(key: str) -> tuple:
    """`IN1/ND2` before `IN1/ND10`."""
    return tuple(
        int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)
    )
