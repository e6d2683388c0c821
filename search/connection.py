"""The Ray a search runs on: an embedded local one, or a cluster joined by address, with one line for an
address that does not answer; and whether the run's storage is one every node reaches."""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
from typing import Any

import ray

from search import storage
from search.errors import SearchError
from search.jobs import AUTH_HINT, is_auth_failure


#: Ray's setting (read from the environment by the raylet it starts) for the niceness of its worker processes.
WORKER_NICENESS = "RAY_worker_niceness"


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join a cluster (``--address``) or start an embedded local Ray, quietly."""
    # Quiet Tune: our ProgressLine replaces its tables; the snapshot warning fires on every checkpoint.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if not address:
        # Ray runs its workers (our trials) at nice 15 so that its raylet stays responsive; on a machine doing
        # anything else that starves the trials (a search beside two busy processes ran 13x slower). In a Ray of
        # our own the trials are the work: nice 0. A user's own setting wins.
        os.environ.setdefault(WORKER_NICENESS, "0")
        # "local": a new Ray of our own, never one left running on this machine by an earlier `ray start`
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
        return
    check_ray_address(address)
    # Ray retries a refused connection about once a second for ~20 s; give up sooner (the address answered, so a
    # failure now is authentication or a wrong port). A user's own setting wins.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "8")
    # Ray's C++ core writes its connection errors straight to file descriptor 2, not through Python: hold them
    # until we know whether the connection worked (then they are written out unchanged) or not (one line).
    with tempfile.TemporaryFile() as held:
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            ray.init(address=address, **kwargs)
            failure = None
        except Exception as exc:  # noqa: BLE001 - ConnectionError, AuthenticationError, RuntimeError, ...
            failure = exc
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        said = held.read().decode(errors="replace")
    if failure is None:
        sys.stderr.write(said)
        return
    if is_auth_failure(f"{failure} {said}"):
        raise SearchError(f"--address {address}: {AUTH_HINT}")
    raise SearchError(f"cannot reach the Ray cluster at {address}: {str(failure).strip().splitlines()[0]}")


def check_ray_address(address: str, timeout_s: float = 3.0) -> None:
    """One clear line, within seconds, for an address that is not a reachable Ray cluster (Ray itself would
    retry for minutes)."""
    if address == "auto":
        return
    if address.startswith(("http://", "https://")):
        raise SearchError(f"--address {address}: not a Ray address: a job server (dashboard) URL is for "
                          f"`rnn-search submit --address {address}`; tune takes HOST:6379, ray://HOST:10001 or auto")
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise SearchError(f"--address {address}: expected HOST:PORT (the head's port 6379), ray://HOST:10001 or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = conn.recv(16)
    except OSError as exc:
        raise SearchError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): is the head up "
                          "(ray start --head) and the port open?") from None
    if answer.startswith(b"HTTP/1"):
        raise SearchError(f"--address {address}: not a Ray address: did you mean http://{host}:{port} for "
                          "`rnn-search submit`? (tune takes the head's HOST:6379)")


def check_shared(location: str) -> None:
    """Before any trial: a multi-node cluster needs storage every node reaches (a URI, or a declared shared mount)."""
    if storage.is_uri(location):
        return
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) > 1 and not os.environ.get("RNN_SEARCH_SHARED_STORAGE"):
        raise SearchError(
            f"this Ray cluster has {len(alive)} nodes but --storage {location} is a local path: trials on other "
            "nodes could not save their checkpoints there. Use --storage s3://BUCKET/PATH (or gs://), or, if "
            "this path is a shared filesystem mounted on every node, set RNN_SEARCH_SHARED_STORAGE=1."
        )
