"""Committing the store's writes leaves what a person staged alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler import gitrepo
from reconciler.errors import WriteFailed
from reconciler.gitrepo import GitRepo

IDENTITY = ["-c", "user.name=Tests", "-c", "user.email=tests@localhost"]


def git(top: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *IDENTITY, *args], cwd=top, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    git(tmp_path, "init", "--quiet")
    (tmp_path / "mine.yaml").write_text("a: 1\n")
    (tmp_path / "theirs.yaml").write_text("b: 1\n")
    git(tmp_path, "add", "--all")
    git(tmp_path, "commit", "--quiet", "--message", "start")
    found = GitRepo.find(tmp_path)
    assert found is not None
    return found


def refuse_commits(top: Path, script: str = "exit 1") -> None:
    hook = top / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\n{script}\n")
    hook.chmod(0o755)


def test_only_the_written_files_are_committed_and_staged_work_stays(repo):
    top = repo.top
    (top / "theirs.yaml").write_text("b: 2\n")
    git(top, "add", "theirs.yaml")  # a person's staged change
    (top / "mine.yaml").write_text("a: 2\n")
    (top / "new.yaml").write_text("c: 1\n")

    repo.commit([top / "mine.yaml", top / "new.yaml"], "Write mine")

    assert git(top, "show", "--name-only", "--format=%s", "HEAD").split() == [
        "Write",
        "mine",
        "mine.yaml",
        "new.yaml",
    ]
    assert git(top, "status", "--porcelain") == "M  theirs.yaml\n"


def test_a_refused_commit_leaves_the_index_as_it_was(repo):
    top = repo.top
    (top / "mine.yaml").write_text("a: staged\n")
    git(top, "add", "mine.yaml")
    (top / "mine.yaml").write_text("a: written\n")
    (top / "new.yaml").write_text("c: 1\n")
    status = git(top, "status", "--porcelain", "--untracked-files=all")
    refuse_commits(top)

    with pytest.raises(WriteFailed):
        repo.commit([top / "mine.yaml", top / "new.yaml"], "Write mine")

    assert git(top, "status", "--porcelain", "--untracked-files=all") == status
    assert git(top, "show", ":mine.yaml") == "a: staged\n"


def test_a_commit_that_times_out_leaves_no_lock_behind(repo, monkeypatch):
    top = repo.top
    monkeypatch.setattr(gitrepo, "GIT_TIMEOUT", 1.0)
    refuse_commits(top, "sleep 30")
    (top / "mine.yaml").write_text("a: 2\n")

    with pytest.raises(WriteFailed, match="did not finish"):
        repo.commit([top / "mine.yaml"], "Write mine")

    assert not (top / ".git" / "index.lock").exists()
    (top / ".git" / "hooks" / "pre-commit").unlink()
    repo.commit([top / "mine.yaml"], "Write mine again")
    assert git(top, "log", "-1", "--format=%s").strip() == "Write mine again"


def test_a_file_written_back_as_committed_needs_no_commit(repo):
    top = repo.top
    before = git(top, "rev-parse", "HEAD")
    repo.commit([top / "mine.yaml"], "Nothing changed")
    assert git(top, "rev-parse", "HEAD") == before
