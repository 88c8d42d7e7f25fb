"""What a node really has: its manifest, managed files and live processes.

One agent call per node gathers all of it; this module builds that request
and reads the answer into plain dataclasses the planner can compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import NodeCommandError
from .render import DesiredNode

RUNNING_STATES = frozenset({"RUNNING", "STARTING"})


class AgentCaller(Protocol):
    def call(self, request: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class Manifest:
    """What the reconciler wrote on a node the last time it applied."""

    files: dict[str, str] = field(default_factory=dict)
    processes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "files": dict(sorted(self.files.items())),
            "processes": {
                pid: {"inputs": inputs}
                for pid, inputs in sorted(self.processes.items())
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Manifest:
        if not data:
            return cls()
        if data.get("version") != 1:
            raise NodeCommandError(
                f"the node's manifest has version {data.get('version')!r}; "
                "this reconcile understands version 1"
            )
        return cls(
            files=dict(data.get("files", {})),
            processes={
                pid: entry["inputs"] for pid, entry in data.get("processes", {}).items()
            },
        )


@dataclass(frozen=True)
class FileFact:
    sha256: str
    content: str | None = None


@dataclass(frozen=True)
class ProcessFact:
    state: str
    pid: int | None = None

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES


@dataclass
class NodeFacts:
    manifest: Manifest = field(default_factory=Manifest)
    files: dict[str, FileFact | None] = field(default_factory=dict)
    manager_running: bool = False
    processes: dict[str, ProcessFact] = field(default_factory=dict)
    # The manifest file's hash as read: apply is refused if it has changed.
    manifest_sha256: str | None = None


def facts_request(desired: DesiredNode) -> dict[str, Any]:
    return {
        "op": "facts",
        "root": desired.root,
        "manager": desired.manager,
        "python": desired.node["python"],
        "expect": desired.hashes,
        "processes": sorted(desired.processes),
    }


def parse_facts(answer: dict[str, Any]) -> NodeFacts:
    try:
        files = {
            path: None
            if entry is None
            else FileFact(entry["sha256"], entry.get("content"))
            for path, entry in answer.get("files", {}).items()
        }
        processes = {
            pid: ProcessFact(entry["state"], entry.get("pid"))
            for pid, entry in answer.get("processes", {}).items()
        }
        return NodeFacts(
            manifest=Manifest.from_json(answer.get("manifest")),
            files=files,
            manager_running=bool(answer.get("supervisor", {}).get("running")),
            processes=processes,
            manifest_sha256=answer.get("manifest_sha256"),
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise NodeCommandError(f"the agent's facts are malformed: {error!r}") from None


def gather(connection: AgentCaller, desired: DesiredNode) -> NodeFacts:
    """Read the facts of one node in a single agent call."""
    return parse_facts(connection.call(facts_request(desired)))
