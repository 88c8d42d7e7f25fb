"""The difference between a node's facts and its desired state, as steps.

Steps are only ever what must change: a file to write or delete, a process
to start, restart, stop or remove. A node whose facts match yields none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .facts import Manifest, NodeFacts
from .render import DesiredNode

CREATE, UPDATE, DELETE = "create", "update", "delete"
TAKE_OVER = "exists on the node but is not managed by reconcile"
START, RESTART, STOP, REMOVE = "start", "restart", "stop", "remove"


@dataclass(frozen=True)
class FileStep:
    path: str
    action: str
    reason: str
    old: str | None = None
    new: bytes | None = None


@dataclass(frozen=True)
class ProcessStep:
    id: str
    service: str | None
    action: str
    reason: str


@dataclass
class NodePlan:
    key: str
    files: list[FileStep] = field(default_factory=list)
    processes: list[ProcessStep] = field(default_factory=list)
    manifest: Manifest = field(default_factory=Manifest)
    manifest_changed: bool = False
    base_manifest_sha256: str | None = None

    @property
    def conflicts(self) -> list[str]:
        """Files apply would overwrite that reconcile never wrote."""
        return [step.path for step in self.files if step.reason == TAKE_OVER]

    @property
    def changed(self) -> bool:
        return bool(self.files or self.processes or self.manifest_changed)

    def count(self, kind: str, action: str) -> int:
        steps = self.files if kind == "file" else self.processes
        return sum(1 for step in steps if step.action == action)


def _file_steps(desired: DesiredNode, facts: NodeFacts) -> list[FileStep]:
    steps = []
    managed = facts.manifest.files
    for path, data in sorted(desired.files.items()):
        actual = facts.files.get(path)
        if actual is None:
            reason = "deleted on the node" if path in managed else "new"
            steps.append(FileStep(path, CREATE, reason, None, data))
            continue
        if actual.sha256 == desired.sha(path):
            continue
        if path not in managed:
            reason = TAKE_OVER
        elif managed[path] != actual.sha256:
            reason = "drift: edited on the node"
        else:
            reason = "changed"
        steps.append(FileStep(path, UPDATE, reason, actual.content, data))
    for path in sorted(set(managed) - set(desired.files)):
        actual = facts.files.get(path)
        if actual is not None:
            old = actual.content
            steps.append(FileStep(path, DELETE, "no longer desired", old, None))
    return steps


def _process_steps(
    desired: DesiredNode, facts: NodeFacts, written: set[str]
) -> list[ProcessStep]:
    steps = []
    recorded = facts.manifest.processes
    for pid, process in sorted(desired.processes.items()):
        fact = facts.processes.get(pid)
        running = fact is not None and fact.running
        if not process.running:
            if running:
                steps.append(ProcessStep(pid, process.service, STOP, "running: false"))
            continue
        if not running:
            if fact is None and pid not in recorded:
                reason = "new process"
            else:
                state = fact.state if fact else "not known to the process manager"
                reason = f"not running ({state})"
            steps.append(ProcessStep(pid, process.service, START, reason))
            continue
        changed_reads = [path for path in process.reads if path in written]
        if any(path in written for path in process.definitions):
            reason = "its definition changes"
        elif changed_reads:
            reason = "it reads " + ", ".join(changed_reads)
        elif pid in recorded and recorded[pid] == "":
            reason = "the last apply to this node did not finish"
        elif pid in recorded and recorded[pid] != desired.inputs(pid):
            reason = "the files it was started from have changed since"
        else:
            continue
        steps.append(ProcessStep(pid, process.service, RESTART, reason))
    for pid in sorted(set(recorded) - set(desired.processes)):
        if pid in facts.processes:
            steps.append(ProcessStep(pid, None, REMOVE, "no longer desired"))
    return steps


def plan_node(desired: DesiredNode, facts: NodeFacts) -> NodePlan:
    """Compare one node's facts with what it should hold."""
    files = _file_steps(desired, facts)
    written = {step.path for step in files if step.action != DELETE}
    processes = _process_steps(desired, facts, written)
    manifest = Manifest(
        files=desired.hashes,
        processes={pid: desired.inputs(pid) for pid in desired.processes},
    )
    return NodePlan(
        key=desired.key,
        files=files,
        processes=processes,
        manifest=manifest,
        manifest_changed=manifest.to_json() != facts.manifest.to_json(),
        base_manifest_sha256=facts.manifest_sha256,
    )
