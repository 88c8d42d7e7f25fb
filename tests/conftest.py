"""Fixtures shared by the whole suite: a private home, and real SSH nodes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from sshd import SshNodeFactory


@pytest.fixture(scope="session", autouse=True)
def private_home() -> Iterator[str]:
    """Point HOME at an empty directory for the whole session.

    The user's ~/.ssh (config, keys, known_hosts) and other dotfiles must not
    change what a test sees; an SSH agent must not offer its keys either.
    """
    saved = {name: os.environ.get(name) for name in ("HOME", "SSH_AUTH_SOCK")}
    home = tempfile.mkdtemp(prefix="rcn-home-", dir="/tmp")
    os.mkdir(os.path.join(home, ".ssh"), mode=0o700)
    os.environ["HOME"] = home
    os.environ.pop("SSH_AUTH_SOCK", None)
    yield home
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def ssh_nodes() -> Iterator[SshNodeFactory]:
    """Factory of real sshd nodes: `nodes = ssh_nodes(3)`.

    Session-scoped, so session- and module-scoped fixtures can use it. Nodes
    last until the session ends unless released with `ssh_nodes.remove(nodes)`;
    teardown kills every sshd, ends what tests left running under each node
    root (supervisord first) and deletes every file the factory made.
    """
    factory = SshNodeFactory()
    yield factory
    factory.close()
