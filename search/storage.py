"""Where runs live: the one place that tells a local path from an ``s3://`` or ``gs://`` URI.

Everything goes through ``pyarrow.fs``, as Ray Tune's own storage does, so a local folder, S3 (or any
S3-compatible server: ``AWS_ENDPOINT_URL``) and GCS behave the same for every command that takes a RUN.
A location is a string: an absolute local path, or a URI that keeps its scheme wherever it is printed.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from pathlib import Path

import pyarrow.fs as pafs

from rnn_core.errors import UserError, first_line

#: Storage when --storage is not given (outside a Ray job).
DEFAULT = "./runs"
#: The storage a cluster declares for jobs submitted without --storage (set it where `ray start` runs).
STORAGE_ENV = "RNN_SEARCH_STORAGE"
#: Set by `rnn-search submit` in the job's environment: a relative path there would land in Ray's temporary
#: working directory, which Ray deletes.
IN_JOB_ENV = "RNN_SEARCH_IN_JOB"


class StorageError(UserError):
    """A storage location that cannot be used; the message says what to give instead."""


def is_uri(location: str) -> bool:
    """True for s3://, gs:// and other pyarrow.fs URIs; False for local paths."""
    return "://" in str(location)


def resolve(storage: str | None) -> str:
    """--storage as given (or $RNN_SEARCH_STORAGE, or ./runs) -> an absolute local path or a URI.

    Inside a submitted job a relative path, or none at all, is refused: it would resolve inside the job's
    temporary working directory, which Ray deletes.
    """
    in_job = bool(os.environ.get(IN_JOB_ENV))
    storage = storage or os.environ.get(STORAGE_ENV) or None
    if storage is None:
        if in_job:
            raise StorageError(
                f"this search runs as a Ray job and the cluster declares no storage: pass --storage s3://BUCKET/PATH "
                f"(or a path every node shares), or set {STORAGE_ENV} on the cluster (cluster.yaml does)"
            )
        storage = DEFAULT
    if is_uri(storage):
        return storage.rstrip("/")
    if in_job and not Path(storage).expanduser().is_absolute():
        raise StorageError(f"--storage {storage}: a relative path inside a Ray job lands in the job's temporary working "
                           "directory, which Ray deletes; give an absolute path every node shares, or s3://...")
    return str(Path(storage).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    """base / parts, keeping a URI's scheme."""
    return posixpath.join(base, *parts) if is_uri(base) else str(Path(base, *parts))


def name(location: str) -> str:
    """The last component (an experiment's name)."""
    return posixpath.basename(location.rstrip("/")) if is_uri(location) else Path(location).name


def experiment_path(run: str, storage: str | None = None) -> str:
    """RUN is an experiment's location (path or URI), or a run name under the storage."""
    if is_uri(run):
        return run.rstrip("/")
    p = Path(run).expanduser()
    if p.is_dir() or "/" in run:  # a path (existing or not) rather than a run name
        return str(p.resolve())
    return join(resolve(storage), run)


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it). Bad URIs and unknown schemes are one StorageError."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).resolve())
    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, ValueError, OSError ...
        raise StorageError(f"{location}: not a usable storage URI ({first_line(exc)})") from None


def exists(location: str) -> bool:
    fs, path = filesystem(location)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except OSError as exc:
        raise StorageError(f"{location}: cannot be read: {first_line(exc)}") from None


def read_bytes(location: str) -> bytes | None:
    """A small file's bytes, or None when it does not exist."""
    fs, path = filesystem(location)
    try:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        with fs.open_input_stream(path) as f:
            return f.read()
    except OSError as exc:
        raise StorageError(f"{location}: cannot be read: {first_line(exc)}") from None


def read_text(location: str) -> str | None:
    """A small file's text, or None when it does not exist."""
    data = read_bytes(location)
    return None if data is None else data.decode()


def list_names(location: str) -> list[str]:
    """The names of the entries directly inside a folder (empty when it does not exist)."""
    fs, path = filesystem(location)
    try:
        return sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))
    except OSError as exc:
        raise StorageError(f"{location}: cannot be listed: {first_line(exc)}") from None


def delete(location: str) -> None:
    """Remove a file if it exists."""
    fs, path = filesystem(location)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            raise StorageError(f"{location}: cannot be removed: {first_line(exc)}") from None


def write_bytes(location: str, data: bytes) -> None:
    """Write a small file whole: a local one through a temporary file and a rename (never half-written);
    an object store's PUT is whole by itself."""
    fs, path = filesystem(location)
    try:
        fs.create_dir(posixpath.dirname(path), recursive=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp" if not is_uri(location) else path
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        if tmp != path:
            fs.move(tmp, path)
    except OSError as exc:
        raise StorageError(f"{location}: cannot be written: {first_line(exc)}") from None


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode())


def location_of(reference: str, fs_path: str) -> str:
    """A path inside the filesystem of ``reference`` (what pyarrow and Ray's Checkpoint.path give: no scheme)
    -> a location with the reference's scheme, so that s3:// is never dropped."""
    if not is_uri(reference):
        return fs_path
    scheme = reference.split("://", 1)[0]
    return f"{scheme}://{fs_path.lstrip('/')}"


def download(location: str, dest: str | os.PathLike[str]) -> Path:
    """A file or a folder at ``location`` as a local path: itself when local, else a copy under ``dest``."""
    if not is_uri(location):
        return Path(location)
    fs, path = filesystem(location)
    target = Path(dest) / name(location)
    try:
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.NotFound:
            raise StorageError(f"{location}: no such file or folder")
        (target.parent if kind == pafs.FileType.File else target).mkdir(parents=True, exist_ok=True)
        pafs.copy_files(path, str(target), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    except OSError as exc:
        raise StorageError(f"{location}: cannot be downloaded: {first_line(exc)}") from None
    return target


def upload(local: str | os.PathLike[str], location: str) -> None:
    """Copy a small local file (a study journal, a model) to ``location`` (local or remote), whole."""
    write_bytes(location, Path(local).read_bytes())


def check_writable(storage: str) -> None:
    """Write and delete a probe file, so that a missing bucket or wrong credentials stop a search before any
    trial starts, with one line."""
    probe = join(storage, f".rnn-search-probe-{uuid.uuid4().hex}")
    fs, path = filesystem(probe)
    try:
        fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as f:
            f.write(b"ok")
        fs.delete_file(path)
    except OSError as exc:
        why = first_line(exc).split(" To create buckets")[0].rstrip(".")  # pyarrow's advice to let it create buckets
        raise StorageError(f"--storage {storage}: cannot write there: {why}. Check that the bucket "
                           "exists and that the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the "
                           "instance profile) may write to it") from None
