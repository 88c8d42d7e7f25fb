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


class ObjectNotFound(ReconcileError):
    """No object of that kind has that id."""


class ObjectExists(ReconcileError):
    """An object of that kind already has that id."""


class ObjectInUse(ReconcileError):
    """The object cannot go: others still refer to it (named in `details`)."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


class StaleObject(ReconcileError):
    """The object changed since the version the caller named."""


class InvalidObject(ReconcileError):
    """A wished-for object breaks its schema or names what does not exist.

    `problems` holds (field path, message) pairs, path as `$.a.b`.
    """

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


class BrokenObject(ReconcileError):
    """An object's file on disk is invalid, so it cannot be served or edited."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        super().__init__(
            "the state file is invalid: " + "; ".join(str(p) for p in self.problems)
        )


class WriteFailed(ReconcileError):
    """A change could not be written or committed; nothing was changed."""
