"""One consistent, whole snapshot of a run's saved state: what ``--resume`` restores, whatever second the driver died.

Tune saves its experiment state (trials, searcher, callbacks) into a local staging folder every ~10 s and then
copies those files into the run with a background syncer. That copy is not atomic: a kill or a full disk in the
middle leaves a torn ``experiment_state-*.json``, or one from a newer save beside a searcher state from an older
one. And the Optuna journal is appended at once, so it runs ahead of Tune's saved state: a trial told COMPLETE
that the saved state still has RUNNING (its re-run's report then fails with ``UpdateFinishedTrialError``), or an
Optuna trial asked for after the save that no saved Tune trial will ever tell.

So right after Tune has written a save to its staging folder (every file whole, the driver's thread still holding
the searcher), :class:`SnapshotSearchGenerator` (or :class:`SnapshotVariantGenerator` for random search) packs
the experiment state, the searcher state and the journal's length at that moment into one zip in the run,
written whole (write, then rename; an object store's PUT is whole). ``--resume`` puts those files back in place
and cuts the journal back to that length (:func:`restore`), so Tune's state and the study agree by construction:
every Tune trial is one Optuna trial, told at most once. A failure to write the snapshot stops the search with
a :class:`StorageFault` (the last whole snapshot stays).
"""

from __future__ import annotations

import errno
import fnmatch
import io
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

from ray.tune.search import SearchGenerator
from ray.tune.search.basic_variant import BasicVariantGenerator

from rnn_core.errors import UserError, first_line
from search import storage

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "rnn_search_state.zip"
JOURNAL_BYTES = "journal_bytes"  # the zip entry with the journal's length at the snapshot
#: The files of one Tune save that --resume reads, by session; callback states are checked on their own.
STATE_PATTERNS = ("experiment_state-{}.json", "search_gen_state-{}.json", "searcher-state-{}.pkl",
                  "basic-variant-state-{}.json")
CALLBACK_PATTERN = "callback-states-*.pkl"
#: errno values that mean the storage itself failed (not the search): full, read-only, over quota.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)
STORAGE_MESSAGES = tuple(os.strerror(e) for e in STORAGE_ERRNOS)


class StorageFault(UserError):
    """The run's storage failed mid-search (full, read-only, unreachable); the message says what to do."""


def storage_fault(exc: BaseException | str | None) -> str | None:
    """The first line of a storage failure in an exception (its causes included) or an error text, else None."""
    if isinstance(exc, str):
        return _fault_line(exc)
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (StorageFault, storage.StorageError)) or (
                isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS):
            return first_line(exc)
        if line := _fault_line(str(exc)):
            return line
        exc = exc.__cause__ or exc.__context__
    return None


def _fault_line(text: str) -> str | None:
    return next((line.strip() for line in text.splitlines() if any(m in line for m in STORAGE_MESSAGES)), None)


def fault_message(path: str, why: str) -> str:
    """The one line a storage fault ends a search with."""
    run = storage.name(path)
    return (f"storage {posix_parent(path)} failed during the search: {why}. Free space there (or make it writable "
            f"again), then `rnn-search tune --resume {run} --storage {posix_parent(path)}` continues it")


def posix_parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] if storage.is_uri(path) else str(Path(path).parent)


class _Snapshots:
    """Mixed into a Tune search algorithm: after each save, one whole snapshot of it into the run."""

    has_study = False
    """Whether the searcher keeps an Optuna study, whose journal the snapshots measure."""

    def bind(self, path: str, journal: Path, heartbeat: Any = None) -> None:
        """Where snapshots go (the run), the study journal they measure (where the searcher keeps a study), and a
        callable run at each snapshot (the run lock's heartbeat). Called again on --resume (the object is
        unpickled from the run)."""
        self._run_path, self._journal, self._heartbeat = path, journal if self.has_study else None, heartbeat
        self.fault: str | None = None

    _BOUND = ("_run_path", "_journal", "_heartbeat", "fault")

    def get_state(self) -> Any:
        state = super().get_state()  # type: ignore[misc]
        return {k: v for k, v in state.items() if k not in self._BOUND} if isinstance(state, dict) else state

    def __getstate__(self) -> dict[str, Any]:  # the run's tuner.pkl holds the search algorithm, unbound
        return {k: v for k, v in self.__dict__.items() if k not in self._BOUND}

    def save_to_dir(self, dirpath: str, session_str: str) -> None:
        super().save_to_dir(dirpath, session_str)  # type: ignore[misc]
        if getattr(self, "_run_path", None) is None or self.fault:
            return
        try:
            write(self._run_path, Path(dirpath), session_str, self._journal)
            if self._heartbeat is not None:
                self._heartbeat()
        except Exception as exc:  # noqa: BLE001 - any failure to save the state ends the search with one line
            self.fault = storage_fault(exc) or first_line(exc)
            raise StorageFault(fault_message(self._run_path, self.fault)) from None


class SnapshotSearchGenerator(_Snapshots, SearchGenerator):
    """Tune's SearchGenerator (a Searcher such as OptunaSearch, wrapped) that snapshots the run after each save."""

    has_study = True


class SnapshotVariantGenerator(_Snapshots, BasicVariantGenerator):
    """Tune's random/grid BasicVariantGenerator that snapshots the run after each save."""


def write(path: str, staging: Path, session: str, journal: Path | None) -> None:
    """Pack one Tune save (from its staging folder) and the journal's current length into the run, whole."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for pattern in STATE_PATTERNS:
            f = staging / pattern.format(session)
            if f.is_file():
                zf.write(f, f.name)
        if journal is not None and journal.is_file():
            size = journal.stat().st_size  # Optuna appends whole lines from this thread: a line boundary
            if storage.is_uri(path):  # the remote copy holds at least what the snapshot counts
                storage.upload(journal, storage.join(path, journal.name))
            zf.writestr(JOURNAL_BYTES, str(size))
    storage.write_bytes(storage.join(path, SNAPSHOT_FILE), buf.getvalue())


def restore(path: str, journal: Path | None) -> bool:
    """Put the run's last whole snapshot back in place before Tune restores it; False when it has none.

    Tune's own state files are replaced by the snapshot's (others, torn or ahead of it, are removed); a callback
    state that cannot be read is removed (it holds only which checkpoints are left to delete); the study journal
    (downloaded first for a remote run) is cut back to its length at the snapshot."""
    blob = storage.read_bytes(storage.join(path, SNAPSHOT_FILE))
    if blob is None:
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            files = {n: zf.read(n) for n in zf.namelist()}
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise StorageFault(f"{storage.join(path, SNAPSHOT_FILE)}: the run's saved state cannot be read ({exc})") from None
    journal_bytes = files.pop(JOURNAL_BYTES, None)
    state = [n for n in storage.list_names(path) if any(fnmatch.fnmatch(n, p.format("*")) for p in STATE_PATTERNS)]
    for name in state:
        if name not in files:
            storage.delete(storage.join(path, name))
    for name, data in files.items():
        storage.write_bytes(storage.join(path, name), data)
    _drop_unreadable_callback_states(path)
    if journal is not None and journal_bytes is not None:
        _cut_journal(path, journal, int(journal_bytes))
    return True


def _drop_unreadable_callback_states(path: str) -> None:
    import ray.cloudpickle as cloudpickle

    for name in storage.list_names(path):
        if fnmatch.fnmatch(name, CALLBACK_PATTERN):
            try:
                cloudpickle.loads(storage.read_bytes(storage.join(path, name)) or b"")
            except Exception:  # noqa: BLE001 - torn or foreign: Tune would fail the whole resume on it
                log.warning("%s: unreadable (torn by a fault?); removed: which old checkpoints are left to delete "
                            "is forgotten", name)
                storage.delete(storage.join(path, name))


def _cut_journal(path: str, journal: Path, size: int) -> None:
    """The study journal exactly as it was at the snapshot (a remote run's working copy downloaded first)."""
    if storage.is_uri(path):
        data = storage.read_bytes(storage.join(path, journal.name)) or b""
    else:
        data = journal.read_bytes() if journal.is_file() else b""
    if len(data) < size:
        raise StorageFault(f"{journal}: the study journal holds {len(data):,} bytes but the run's saved state counts "
                           f"{size:,}: it was truncated or replaced after the run was saved")
    if len(data) > size:
        log.info("study journal: %d bytes written after the last saved state are dropped (their trials re-run)",
                 len(data) - size)
    if storage.is_uri(path) or len(data) > size:
        journal.parent.mkdir(parents=True, exist_ok=True)
        tmp = journal.with_name(f".{journal.name}.tmp")
        tmp.write_bytes(data[:size])
        os.replace(tmp, journal)


__all__ = ["SnapshotSearchGenerator", "SnapshotVariantGenerator", "StorageFault", "restore", "storage_fault"]
