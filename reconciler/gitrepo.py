"""Committing the store's writes when the state lives in a git work tree.

Each write is one commit of exactly the files it changed, so that what a
person staged or edited elsewhere in the tree is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
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
        process = subprocess.Popen(
            ["git", *args],
            cwd=self.top,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=getattr(self, "environ", None),
            start_new_session=True,  # its hooks too can be ended on a timeout
        )
        try:
            out, err = process.communicate(timeout=GIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            # SIGTERM, not SIGKILL: git then removes its own index.lock.
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.communicate()
            message = f"git {args[0]} did not finish in {GIT_TIMEOUT:.0f}s"
            raise WriteFailed(message) from None
        done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            reason = detail[-1] if detail else f"exit status {done.returncode}"
            raise WriteFailed(f"git {args[0]} failed: {reason}")
        return done

    def commit(self, paths: list[Path], message: str) -> None:
        """Commit the current content of `paths` (deleted ones as deletions).

        Only those paths are committed, from the work tree: what a person
        staged, in them or elsewhere, stays staged and out of the commit,
        and a failed commit leaves the index as it was.
        """
        names = [self._name(path) for path in paths]
        tracked = set(self._git("ls-files", "-z", "--", *names).stdout.split("\0"))
        present = [self._name(path) for path in paths if path.exists()]
        gone = [
            self._name(p) for p in paths if not p.exists() and self._name(p) in tracked
        ]
        new = [name for name in present if name not in tracked]
        if not present and not gone:
            return
        same = self._git("diff", "--quiet", "HEAD", "--", *present, *gone, check=False)
        if same.returncode == 0 and not new:
            return  # written back as committed: nothing to commit
        if new:
            self._git("add", "--intent-to-add", "--", *new)
        try:
            self._git("commit", "--quiet", "--message", message, "--", *present, *gone)
        except WriteFailed:
            if new:
                self._git(
                    "rm", "--cached", "--quiet", "--force", "--", *new, check=False
                )
            raise
        log.info("committed: %s", message.splitlines()[0])

    def _name(self, path: Path) -> str:
        return os.path.relpath(path, self.top)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
