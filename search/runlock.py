"""A run name belongs to one run: a new search refuses a run that exists, and one search at a time holds a run.

A local run is held with ``flock`` on a lock file inside it: the kernel releases it when the driver ends in any
way (``kill -9`` included), so ``--resume`` right after a crash finds it free. Object stores (s3://, gs://) have
no such lock: the lock there is an object naming its holder (host, pid, a random owner id), written and read
back, refreshed at every saved state (the heartbeat), and taken over when its holder is gone: a dead process
on this host, or no heartbeat for :data:`STALE_S` seconds.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from rnn_core.errors import UserError
from search import storage

LOCK_FILE = ".rnn-search.lock"
#: A remote lock whose holder has not saved its state for this long is taken to be gone.
STALE_S = 300.0


class RunLockError(UserError):
    """A run that exists already, or that another search holds; the message says what to do."""


def holds_a_run(path: str) -> bool:
    """True when anything but a lock is stored at the run's location."""
    return any(n != LOCK_FILE for n in storage.list_names(path))


class RunLock:
    """``with RunLock(path, new_run=...)``: hold a run for one search, released on exit."""

    def __init__(self, path: str, new_run: bool) -> None:
        self.path, self.new_run = path, new_run
        self.location = storage.join(path, LOCK_FILE)
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "owner": uuid.uuid4().hex}
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.refuse_existing()
        if storage.is_uri(self.path):
            self._take_remote()
        else:
            self._take_local()
        try:
            self.refuse_existing()  # made by another search between the first look and the lock
        except RunLockError:
            self.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def refuse_existing(self) -> None:
        """A new run whose name is taken is refused (also called before the lock, to refuse before Ray starts)."""
        if self.new_run and holds_a_run(self.path):
            name, where = storage.name(self.path), self.path.rstrip("/").rsplit("/", 1)[0]
            raise RunLockError(f"run {name} already exists in {where}: `rnn-search tune --resume {name}` continues it, "
                               "or choose another --name")

    def refuse_held(self) -> None:
        """A run another search holds is refused, without taking its lock (a quick look before anything loads)."""
        if storage.is_uri(self.path):
            holder = _parse(storage.read_bytes(self.location))
            if holder and not _gone(holder):
                raise self._in_use(holder)
            return
        try:
            fd = os.open(self.location, os.O_RDONLY)
        except OSError:
            return  # no lock file: nobody holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            raise self._in_use(_parse(os.pread(fd, 4096, 0))) from None
        finally:
            os.close(fd)

    def _in_use(self, holder: dict[str, Any]) -> RunLockError:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("time", 0))))
        return RunLockError(f"run {storage.name(self.path)} is in use by another search (pid {holder.get('pid')} on "
                            f"{holder.get('host')}, last saved {since}): wait for it to end, or choose another --name")

    def _take_local(self) -> None:
        Path(self.path).mkdir(parents=True, exist_ok=True)
        # Held through a read-only descriptor: a file open for writing would keep the storage from being
        # remounted (read-only, say) while the search runs.
        fd = os.open(self.location, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _parse(os.pread(fd, 4096, 0))
            os.close(fd)
            raise self._in_use(holder) from None
        with open(self.location, "r+b") as f:  # who holds it, for the message another search gets
            f.truncate(0)
            f.write(json.dumps(dict(self.owner, time=time.time())).encode())
        self._fd = fd

    def _take_remote(self) -> None:
        self.refuse_held()
        self.heartbeat()
        if _parse(storage.read_bytes(self.location)).get("owner") != self.owner["owner"]:  # another took it at once
            raise self._in_use(_parse(storage.read_bytes(self.location)))

    def heartbeat(self) -> None:
        """Refresh a remote lock (each saved state calls this); a local lock needs none."""
        if storage.is_uri(self.path):
            storage.write_text(self.location, json.dumps(dict(self.owner, time=time.time())))

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        elif storage.is_uri(self.path):
            try:
                if _parse(storage.read_bytes(self.location)).get("owner") == self.owner["owner"]:
                    storage.delete(self.location)
            except storage.StorageError:
                pass  # the storage failed: the lock expires by itself


def _parse(data: bytes | None) -> dict[str, Any]:
    try:
        holder = json.loads(data or b"{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _gone(holder: dict[str, Any]) -> bool:
    """Whether a remote lock's holder has ended: a process of this host that is no more, or a stale heartbeat."""
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder.get("pid", 0)), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, OverflowError):
            pass
    return time.time() - float(holder.get("time", 0)) > STALE_S


__all__ = ["LOCK_FILE", "RunLock", "RunLockError", "holds_a_run"]


def refuse_taken(resume: str | None, name: str | None, where: str | None) -> None:
    """A run that exists (a new ``name``) or that another search holds (``resume``) is refused at once, before
    torch, Ray and Optuna load; the search checks again under the run's lock."""
    from search import storage

    if resume:
        RunLock(storage.experiment_path(resume, where), new_run=False).refuse_held()
    elif name:
        root = storage.resolve(where)
        if storage.is_uri(root):
            storage.check_writable(root)  # a missing bucket or wrong credentials: that, in one line, first
        RunLock(storage.join(root, name), new_run=True).refuse_existing()
