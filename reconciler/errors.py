"""The exceptions of the project: one root, a few kinds."""

from __future__ import annotations

from dataclasses import dataclass


class ReconcileError(Exception):
    """Root of every error this project raises on purpose."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the state, located in a file."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class StateError(ReconcileError):
    """The state repository is invalid; every problem found is attached."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"the state has {count} {noun}")


class ConnectionFailed(ReconcileError):
    """A node could not be reached or would not let us in."""


class HostKeyError(ConnectionFailed):
    """A node's host key is unknown or differs from known_hosts."""


class NodeCommandError(ReconcileError):
    """The agent on a node failed or answered something unreadable."""


class ConflictError(ReconcileError):
    """Applying would overwrite a file on a node that reconcile does not own."""
