"""Committing the store's writes when the state lives in a git work tree.

Each write is one commit of exactly the files it changed, so that what a
person staged or edited elsewhere in the tree is left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from .errors import WriteFailed

log = logging.getLogger(__name__)

GIT_TIMEOUT = 60.0

# Used only when git knows no identity of its own for the repository.
FALLBACK_NAME = "reconcile"
FALLBACK_EMAIL = "reconcile@localhost"


class GitRepo:
    """The work tree that holds the state folder."""

    def __init__(self, top: Path, git_dir: Path):
        self.top = top
        self.git_dir = git_dir
        self.environ = dict(os.environ)
        if not self._config("user.email"):
            self.environ.update(
                GIT_AUTHOR_NAME=FALLBACK_NAME,
                GIT_AUTHOR_EMAIL=FALLBACK_EMAIL,
                GIT_COMMITTER_NAME=FALLBACK_NAME,
                GIT_COMMITTER_EMAIL=FALLBACK_EMAIL,
            )

    @classmethod
    def find(cls, folder: Path) -> GitRepo | None:
        """The repository whose work tree holds `folder`, if there is one."""
        if shutil.which("git") is None:
            return None
        found = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "--absolute-git-dir"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
        )
        lines = found.stdout.splitlines()
        if found.returncode != 0 or len(lines) != 2:
            return None
        return cls(Path(lines[0]), Path(lines[1]))

    def _config(self, name: str) -> str:
        found = self._git("config", "--get", name, check=False)
        return found.stdout.strip()

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=self.top,
                capture_output=True,
                text=True,
                env=getattr(self, "environ", None),
                timeout=GIT_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            message = f"git {args[0]} did not finish in {GIT_TIMEOUT:.0f}s"
            raise WriteFailed(message) from None
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            reason = detail[-1] if detail else f"exit status {done.returncode}"
            raise WriteFailed(f"git {args[0]} failed: {reason}")
        return done

    def commit(self, paths: list[Path], message: str) -> None:
        """Commit the current content of `paths` (deleted ones as deletions)."""
        present = [self._name(path) for path in paths if path.exists()]
        gone = [self._name(path) for path in paths if not path.exists()]
        if gone:
            # A deleted file git never knew has nothing to commit.
            tracked = self._git("ls-files", "-z", "--", *gone).stdout
            gone = [name for name in tracked.split("\0") if name]
        if present:
            self._git("add", "--", *present)
        if not present and not gone:
            return
        self._git("commit", "--quiet", "--message", message, "--", *present, *gone)
        log.info("committed: %s", message.splitlines()[0])

    def unstage(self, paths: list[Path]) -> None:
        """Forget what `commit` staged when its commit failed."""
        names = [self._name(path) for path in paths]
        self._git("reset", "--quiet", "--", *names, check=False)

    def _name(self, path: Path) -> str:
        return os.path.relpath(path, self.top)
