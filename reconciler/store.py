"""The state folder as a store of objects: indexed reads, locked writes.

Reads come from an in-memory index of every object. An entry is trusted
only while its file's identity (inode, size, times) is unchanged, so an edit
made behind the store's back (by hand, by `git pull`) is read again on the
next access: a single object costs one `stat`, a listing one pass over its
folder.

Writes happen in a `Change`, under a lock that holds across processes: each
file is written to a temporary name, flushed to disk and renamed over the
old one; then, in a git work tree, the changed files are committed as one
commit. If any of that fails, the files are put back as they were.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from . import schemas, yamledit
from .errors import (
    BrokenObject,
    InvalidObject,
    ObjectNotFound,
    Problem,
    StateError,
    WriteFailed,
)
from .gitrepo import GitRepo
from .state import FOLDERS, NESTED_FOLDERS, SUFFIX, State, StateObject, read_object
from .yamlio import MAX_FILE_BYTES

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 30.0
IDS_FILE = ".reconcile-ids.json"
LOCK_FILE = ".reconcile.lock"
ETAG_KEY_FILE = ".reconcile-etag.key"

_FOLDER_OF = {kind: folder for folder, kind in FOLDERS.items()}
_NESTED_FOLDER_OF = {kind: folder for folder, kind in NESTED_FOLDERS.items()}


@dataclass
class Entry:
    """What the index knows of one file, and the file identity it read."""

    key: str
    signature: tuple[int, ...]
    obj: StateObject | None
    problems: list[Problem]
    etag: str = ""


def _signature(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def etag_of(data: dict[str, Any], key: bytes) -> str:
    """A strong validator of an object's content, quoted as HTTP wants it.

    Keyed, because the content holds secrets (a tenant's integration params):
    a plain hash would let anyone test a guessed secret against the ETag.
    """
    text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    digest = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    return '"' + digest[:32] + '"'


@functools.cache
def _id_regex(kind: str) -> re.Pattern[str]:
    return re.compile(schemas.id_pattern(kind))


def valid_id(kind: str, key: str) -> bool:
    """Whether `key` can name an object of `kind`: never a path elsewhere."""
    if kind in _NESTED_FOLDER_OF:
        instance, _, key = key.partition("/")
        if not _id_regex("instance").fullmatch(instance):
            return False
    return _id_regex(kind).fullmatch(key) is not None


class Store:
    def __init__(self, root: Path, commit: bool = True):
        self.root = root.resolve()
        self._root_text = str(self.root)
        found = GitRepo.find(self.root)
        self.repo = found if commit else None
        # In a work tree the lock lives in .git, out of `git status`; writers
        # that commit and writers that do not take the same one.
        self.lock_path = (
            found.git_dir / "reconcile-store.lock" if found else self.root / LOCK_FILE
        )
        lock = self.lock_path
        # Every server of one state shares the key, so their ETags agree.
        self._etag_key = _shared_key(self.lock_path.with_name(ETAG_KEY_FILE))
        self._lock = FileLock(lock, timeout=LOCK_TIMEOUT)
        self._writing = threading.Lock()
        self._index: dict[tuple[str, str], Entry] = {}
        self._mutex = threading.Lock()

    # -- paths

    def path(self, kind: str, key: str) -> Path:
        """The file of one object; ObjectNotFound for an id that is not valid."""
        return Path(self._path_text(kind, key))

    def _path_text(self, kind: str, key: str) -> str:
        # Plain strings: this runs on every read, where pathlib costs more
        # than the stat itself.
        if not valid_id(kind, key):
            raise ObjectNotFound(f"{key!r} is not a valid {kind} id")
        if kind in _NESTED_FOLDER_OF:
            instance, _, name = key.partition("/")
            folder = _NESTED_FOLDER_OF[kind]
            return f"{self._root_text}/instances/{instance}/{folder}/{name}{SUFFIX}"
        return f"{self._root_text}/{_FOLDER_OF[kind]}/{key}{SUFFIX}"

    def _folders(self, kind: str) -> list[tuple[Path, str | None]]:
        if kind not in _NESTED_FOLDER_OF:
            return [(self.root / _FOLDER_OF[kind], None)]
        found = []
        instances = self.root / "instances"
        if instances.is_dir():
            for entry in sorted(instances.iterdir()):
                if (
                    entry.is_dir()
                    and not entry.is_symlink()
                    and valid_id("instance", entry.name)
                ):
                    folder = entry / _NESTED_FOLDER_OF[kind]
                    found.append((folder, entry.name))
        return found

    # -- reading

    def _load(
        self,
        kind: str,
        key: str,
        path: Path,
        info: os.stat_result,
        instance: str | None,
    ) -> Entry:
        obj, problems = read_object(self.root, path, kind, instance)
        entry = Entry(key, _signature(info), obj, problems)
        if obj is not None:
            entry.etag = etag_of(obj.doc.data, self._etag_key)
        return entry

    def _fresh(self, kind: str, key: str) -> Entry | None:
        path = self._path_text(kind, key)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            with self._mutex:
                self._index.pop((kind, key), None)
            return None
        except OSError as error:
            raise WriteFailed(f"cannot read {path}: {error.strerror}") from None
        with self._mutex:
            entry = self._index.get((kind, key))
        if entry is None or entry.signature != _signature(info):
            instance = key.partition("/")[0] if kind in _NESTED_FOLDER_OF else None
            entry = self._load(kind, key, Path(path), info, instance)
            with self._mutex:
                self._index[(kind, key)] = entry
        return entry

    def exists(self, kind: str, key: str) -> bool:
        """Whether the object's file is there, valid or not."""
        return valid_id(kind, key) and self._fresh(kind, key) is not None

    def get(self, kind: str, key: str) -> StateObject:
        """One object, read again if its file changed; BrokenObject if invalid."""
        return self.get_tagged(kind, key)[0]

    def etag(self, kind: str, key: str) -> str:
        entry = self._fresh(kind, key)
        return entry.etag if entry else ""

    def get_tagged(self, kind: str, key: str) -> tuple[StateObject, str]:
        """One object and its ETag, from one look at its file."""
        entry = self._fresh(kind, key)  # ObjectNotFound for an invalid id
        if entry is None:
            raise ObjectNotFound(f"{kind} {key!r} does not exist")
        if entry.obj is None:
            raise BrokenObject(entry.problems)
        return entry.obj, entry.etag

    def _scan(self, kind: str) -> list[Entry]:
        """Every entry of a kind, re-reading the files that changed."""
        seen: set[tuple[str, str]] = set()
        entries = []
        for folder, instance in self._folders(kind):
            try:
                listing = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for item in listing:
                if item.name.startswith(".") or not item.name.endswith(SUFFIX):
                    continue
                name = item.name[: -len(SUFFIX)]
                key = f"{instance}/{name}" if instance else name
                info = item.stat(follow_symlinks=False)
                with self._mutex:
                    entry = self._index.get((kind, key))
                if entry is None or entry.signature != _signature(info):
                    entry = self._load(kind, key, Path(item.path), info, instance)
                    with self._mutex:
                        self._index[(kind, key)] = entry
                seen.add((kind, key))
                entries.append(entry)
        with self._mutex:
            for gone in [k for k in self._index if k[0] == kind and k not in seen]:
                del self._index[gone]
        return entries

    def all(self, kind: str) -> list[StateObject]:
        """Every object of a kind, sorted by key; BrokenObject if any is invalid."""
        entries = self._scan(kind)
        problems = [p for entry in entries for p in entry.problems]
        if problems:
            raise BrokenObject(problems)
        return sorted((e.obj for e in entries if e.obj), key=lambda o: o.key)

    def all_keys(self, kind: str) -> list[str]:
        """The keys of every object of a kind whose file is there, valid or not."""
        return sorted(entry.key for entry in self._scan(kind))

    def read_ids(self) -> dict[str, int]:
        """The highest number each generated kind of id has had."""
        path = self.root / IDS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise WriteFailed(f"{IDS_FILE} cannot be read: {error}") from None
        wrong = [
            k for k, v in getattr(data, "items", dict)() if type(v) is not int or v < 0
        ]
        if not isinstance(data, dict) or wrong:
            raise WriteFailed(
                f"{IDS_FILE} should hold a JSON object of whole numbers, such as "
                '{"instance": 3}' + (f"; {wrong[0]!r} is not one" if wrong else "")
            )
        return data

    def snapshot(self) -> State:
        """The whole state from the index, as `state.load` would give it."""
        state = State(root=self.root)
        problems = []
        for kind in schemas.KINDS:
            for entry in self._scan(kind):
                if entry.obj is None:
                    problems.extend(entry.problems)
                else:
                    state.add(entry.obj)
        if problems:
            raise StateError(problems)
        return state

    def warm(self) -> tuple[int, list[Problem]]:
        """Read every object once, so that first requests are fast.

        Returns the number of files read and the problems of invalid ones.
        """
        entries = [entry for kind in schemas.KINDS for entry in self._scan(kind)]
        return len(entries), [p for entry in entries for p in entry.problems]

    def is_empty(self) -> bool:
        """Whether the folder holds none of the state's folders at all."""
        return not any((self.root / folder).is_dir() for folder in FOLDERS)

    # -- writing

    @contextmanager
    def change(self, message: str) -> Iterator[Change]:
        """A set of writes made under the store lock, committed as one."""
        with self._writing:
            try:
                self._lock.acquire()
            except Timeout:
                raise WriteFailed(
                    f"another writer has held the store lock for {LOCK_TIMEOUT:.0f}s"
                ) from None
            try:
                change = Change(self, message)
                try:
                    yield change
                except BaseException:
                    change.rollback()
                    raise
                change.finish()
            finally:
                self._lock.release()

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _forget(self, kind: str, key: str) -> None:
        with self._mutex:
            self._index.pop((kind, key), None)


@dataclass
class Change:
    """Files written (or removed) so far, and how to put them back."""

    store: Store
    message: str
    details: list[str] = field(default_factory=list)
    _before: dict[Path, bytes | None] = field(default_factory=dict)
    _keys: list[tuple[str, str]] = field(default_factory=list)
    _made: list[Path] = field(default_factory=list)  # folders this change made

    def _remember(self, path: Path, kind: str, key: str) -> None:
        if path not in self._before:
            try:
                self._before[path] = path.read_bytes()
            except FileNotFoundError:
                self._before[path] = None
        self._keys.append((kind, key))

    def put(self, kind: str, key: str, data: dict[str, Any], order: list[str]) -> None:
        """Write one object; an existing file keeps its comments and layout."""
        path = self.store.path(kind, key)
        self._remember(path, kind, key)
        old = self._before[path]
        try:
            if old is None:
                text = yamledit.render_new(data)
            else:
                text = yamledit.edited(old.decode("utf-8"), data, order)
        except yamledit.Unstorable as error:
            # A value YAML cannot carry faithfully, such as a lone surrogate.
            raise InvalidObject(
                [("$", f"the {kind} cannot be stored as a state file: {error}")]
            ) from None
        except yamledit.EditError as error:
            raise WriteFailed(f"{self.store.relative(path)}: {error}") from None
        encoded = text.encode()
        if len(encoded) > MAX_FILE_BYTES:
            largest = max(data, key=lambda name: len(json.dumps(data[name])))
            raise InvalidObject(
                [
                    (
                        f"$.{largest}",
                        f"too large: the {kind} would take {len(encoded)} bytes "
                        f"as YAML, over the {MAX_FILE_BYTES}-byte limit of a "
                        "state file",
                    )
                ]
            )
        if old is not None and encoded == old:
            return
        self._write(path, encoded)

    def remove(self, kind: str, key: str) -> None:
        path = self.store.path(kind, key)
        self._remember(path, kind, key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        self._prune(path.parent)

    def put_ids(self, ids: dict[str, int]) -> None:
        path = self.store.root / IDS_FILE
        if path not in self._before:
            self._before[path] = path.read_bytes() if path.exists() else None
        self._write(path, (json.dumps(ids, indent=2, sort_keys=True) + "\n").encode())

    def _write(self, path: Path, data: bytes) -> None:
        folder = path.parent
        while not folder.exists():
            self._made.append(folder)
            folder = folder.parent
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)  # a person's choice stays
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _sync_folder(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove folders a delete left empty, up to the state root's own."""
        while folder != self.store.root and folder.parent != self.store.root:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def rollback(self) -> None:
        for path, data in self._before.items():
            if data is None:
                path.unlink(missing_ok=True)
                self._prune(path.parent)
            else:
                self._write(path, data)
        for folder in sorted(self._made, key=lambda f: len(f.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a folder made meanwhile stays
        self._reindex()

    def _reindex(self) -> None:
        for kind, key in self._keys:
            self.store._forget(kind, key)

    @property
    def changed(self) -> list[Path]:
        found = []
        for path, before in self._before.items():
            now = path.read_bytes() if path.exists() else None
            if now != before:
                found.append(path)
        return found

    def finish(self) -> None:
        paths = self.changed
        if paths and self.store.repo is not None:
            message = self.message
            if self.details:
                message += "\n\n" + "\n".join(self.details)
            try:
                self.store.repo.commit(paths, message)
            except WriteFailed:
                self.rollback()
                raise
        self._reindex()
        if paths:
            log.info(
                "%s (%d file%s)",
                self.message,
                len(paths),
                "" if len(paths) == 1 else "s",
            )


def _shared_key(path: Path) -> bytes:
    """The key in `path`, made there (readable by its owner only) if absent."""
    try:
        if not path.exists():
            # Written whole under another name, then linked: two servers
            # starting at once end up with the same key, never half of one.
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name)
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(secrets.token_bytes(32))
                with contextlib.suppress(FileExistsError):
                    os.link(temporary, path)
            finally:
                os.unlink(temporary)
        key = path.read_bytes()
    except OSError as error:
        # A read-only state can still be served; only its ETags then differ
        # from another server's.
        log.warning(
            "cannot read or make %s (%s): ETags are this process's own",
            path,
            error.strerror,
        )
        return secrets.token_bytes(32)
    if len(key) < 32:
        raise WriteFailed(f"{path} should hold 32 random bytes; remove it")
    return key


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


# New files get the mode the process's umask gives, as any editor's would.
_UMASK = _umask()


def _sync_folder(folder: Path) -> None:
    """Make a rename durable: flush the folder that holds the new name."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
