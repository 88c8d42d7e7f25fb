"""Plans and results as text for people and as JSON for machines.

Every file's text passes through `render.masked` before it is shown, so no
secret reaches a diff. No colour here: the CLI decides about terminals.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Any

from .apply import CHANGED, FAILED, SKIPPED, UNCHANGED, NodeResult
from .plan import CREATE, DELETE, REMOVE, RESTART, START, STOP, UPDATE, FileStep
from .render import DesiredNode, masked

FILE_MARKS = {CREATE: "+", UPDATE: "~", DELETE: "-"}
MAX_DIFF_LINES = 200


def diff(desired: DesiredNode, step: FileStep) -> list[str]:
    """A unified diff of one file step, secrets masked."""
    if step.action != UPDATE:
        return []
    if step.old is None:
        return ["(the node's copy is too large or not text; no diff shown)"]
    old = masked(desired, step.path, step.old).splitlines(keepends=False)
    new_text = (step.new or b"").decode("utf-8", errors="replace")
    new = masked(desired, step.path, new_text).splitlines(keepends=False)
    if old == new:
        return ["(only sensitive values differ)"]
    lines = list(
        difflib.unified_diff(
            old,
            new,
            f"{step.path} (on the node)",
            f"{step.path} (desired)",
            lineterm="",
        )
    )
    if len(lines) > MAX_DIFF_LINES:
        more = len(lines) - MAX_DIFF_LINES
        lines = lines[:MAX_DIFF_LINES] + [f"... {more} more lines"]
    return lines


def _steps(result: NodeResult, show_diff: bool) -> Iterator[str]:
    plan = result.plan
    assert plan is not None and result.desired is not None
    for step in plan.files:
        yield f"  {FILE_MARKS[step.action]} {step.path}  ({step.reason})"
        if show_diff:
            for line in diff(result.desired, step):
                yield f"      {line}"
    for process in plan.processes:
        service = f" [{process.service}]" if process.service else ""
        yield f"  > {process.action} process {process.id}{service}: {process.reason}"
    if not plan.files and not plan.processes:
        yield "  manifest: record what the node already holds"


def done_summary(done: list[str]) -> str:
    """What a failed apply had done, e.g. `wrote 12 files, started supervisord`."""
    wrote = sum(
        1 for step in done if step.startswith("wrote ") and "manifest" not in step
    )
    deleted = sum(1 for step in done if step.startswith("deleted "))
    parts = [f"wrote {_files(wrote)}"] if wrote else []
    parts += [f"deleted {_files(deleted)}"] if deleted else []
    parts += [
        step
        for step in done
        if not step.startswith(("wrote ", "deleted ")) or "manifest" in step
    ]
    return ", ".join(parts) if parts else "nothing"


def _node_lines(result: NodeResult, show_diff: bool, applied: bool) -> Iterator[str]:
    title = f"{result.key} ({result.name})"
    if result.status == SKIPPED:
        yield f"{title}: skipped (status: false)"
        return
    if result.status == FAILED:
        first, *rest = (result.error or "failed").splitlines() or ["failed"]
        yield f"{title}: FAILED: {first}"
        yield from (f"    {line}" for line in rest)
        if result.plan is not None and result.plan.changed:
            yield "  planned:" if applied else "  would change:"
            yield from _steps(result, show_diff)
        if applied and result.plan is not None:
            yield f"  done before the failure: {done_summary(result.done)}"
        return
    assert result.plan is not None
    if not result.plan.changed:
        yield f"{title}: no changes"
        return
    yield f"{title}:"
    yield from _steps(result, show_diff)


def _totals(results: list[NodeResult]) -> dict[str, int]:
    totals = dict.fromkeys(
        ("write", "delete", START, RESTART, STOP, REMOVE, "nodes_changed"), 0
    )
    for result in results:
        if result.plan is None or result.status == FAILED:
            continue
        plan = result.plan
        totals["write"] += plan.count("file", CREATE) + plan.count("file", UPDATE)
        totals["delete"] += plan.count("file", DELETE)
        for action in (START, RESTART, STOP, REMOVE):
            totals[action] += plan.count("process", action)
        totals["nodes_changed"] += plan.changed
    return totals


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _changes(totals: dict[str, int], applied: bool) -> str:
    if applied:
        files = f"{_files(totals['write'])} written, {totals['delete']} deleted"
        verbs = {START: "started", RESTART: "restarted", STOP: "stopped"}
        head = "Applied"
    else:
        files = f"{_files(totals['write'])} to write, {totals['delete']} to delete"
        verbs = {START: "to start", RESTART: "to restart", STOP: "to stop"}
        head = "Plan"
    verbs[REMOVE] = "removed" if applied else "to remove"
    processes = ", ".join(f"{totals[action]} {verb}" for action, verb in verbs.items())
    return f"{head}: {files}; processes: {processes};"


def summary(results: list[NodeResult], applied: bool) -> str:
    totals = _totals(results)
    failed = [r.key for r in results if r.status == FAILED]
    skipped = [r.key for r in results if r.status == SKIPPED]
    total = len(results)
    unchanged = sum(1 for r in results if r.status == UNCHANGED)
    if totals["nodes_changed"] == 0 and not failed:
        head = f"Nothing to do: {unchanged} of {total} nodes match the state."
    elif totals["nodes_changed"] == 0:
        head = f"No node changed: {unchanged} of {total} nodes match the state."
    else:
        head = _changes(totals, applied) + (
            f" on {totals['nodes_changed']} of {total} nodes."
        )
    tail = []
    if skipped:
        tail.append(f"Skipped (status: false): {', '.join(skipped)}.")
    if failed:
        tail.append(f"Failed: {', '.join(failed)}.")
    return " ".join([head, *tail])


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(line: str) -> str:
    """Control characters from a node (escape sequences) shown, not obeyed."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", line)


def text(results: list[NodeResult], applied: bool, show_diff: bool = True) -> str:
    lines = []
    for result in results:
        lines.extend(_node_lines(result, show_diff, applied))
    lines.append("")
    lines.append(summary(results, applied))
    return "\n".join(printable(line) for line in lines) + "\n"


def as_json(results: list[NodeResult], applied: bool) -> dict[str, Any]:
    nodes = []
    for result in results:
        entry: dict[str, Any] = {
            "node": result.key,
            "name": result.name,
            "status": result.status,
        }
        if result.error:
            entry["error"] = result.error
        if result.status == FAILED and applied and result.plan is not None:
            entry["done"] = result.done
        if result.plan is not None and result.desired is not None:
            entry["files"] = [
                {
                    "path": step.path,
                    "action": step.action,
                    "reason": step.reason,
                    "diff": diff(result.desired, step),
                }
                for step in result.plan.files
            ]
            entry["processes"] = [
                {
                    "id": step.id,
                    "service": step.service,
                    "action": step.action,
                    "reason": step.reason,
                }
                for step in result.plan.processes
            ]
        nodes.append(entry)
    return {
        "applied": applied,
        "changed": any(r.status == CHANGED for r in results),
        "failed": [r.key for r in results if r.status == FAILED],
        "summary": summary(results, applied),
        "totals": _totals(results),
        "nodes": nodes,
        "unchanged": [r.key for r in results if r.status == UNCHANGED],
    }
