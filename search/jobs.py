"""Ray Jobs: submit a search to a cluster's head, follow it, query or stop it."""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from pathlib import Path
from typing import Any

from rnn_core.errors import UserError, first_line
from search.storage import IN_JOB_ENV

log = logging.getLogger(__name__)

#: How long to wait for a freshly started head's job agent.
AGENT_WAIT_S = 60.0
#: Files that never need to travel to the cluster with the working_dir.
EXCLUDES = [".git", "runs", "wandb", "*.pt", "*.csv", "*.zip", ".venv", "venv", "__pycache__", "benchmarks/out", "*.egg-info"]


class JobsError(UserError):
    """The job server could not be reached or refused the request."""


#: What to set when a cluster asks for its token (Ray 2.60 token authentication).
AUTH_HINT = ("authentication required: set RAY_AUTH_MODE=token and the cluster's token "
             "(RAY_AUTH_TOKEN_PATH=FILE, RAY_AUTH_TOKEN=TOKEN, or ~/.ray/auth_token)")



def is_auth_failure(text: str) -> bool:
    """Whether what a Ray job server, GCS or core worker said means a missing or wrong token."""
    low = text.lower()
    return any(w in low for w in ("authentication", "unauthenticated", "invalidauthtoken", "unauthorized",
                                  "status code 401", " 401"))


def explain(exc: BaseException, address: str) -> str:
    """One line for a failed call to a Ray job server or cluster: what went wrong, and what to do."""
    text = str(getattr(exc, "message", None) or exc)
    low = text.lower()
    if is_auth_failure(text):
        return f"{address}: {AUTH_HINT}"
    if "does not exist" in low or "status code 404" in low:
        return f"{address}: {first_line(exc).split(': ', 1)[-1]}"
    if any(w in low for w in ("connection refused", "cannot connect", "failed to connect", "timed out", "timeout",
                              "name or service not known", "no route")):
        return (f"cannot reach the Ray job server at {address}: is the head up, and its dashboard port forwarded "
                "(ray dashboard cluster.yaml)?")
    return f"the Ray job server at {address}: {first_line(exc)}"


def check_job_address(address: str) -> None:
    """A job server is the head's dashboard, an http(s) URL; say so at once instead of letting Ray retry a GCS."""
    if not address.startswith(("http://", "https://")):
        host = address.split("://", 1)[-1]
        raise JobsError(f"--address {address}: not a job server address: did you mean http://{host} "
                        "(the head's dashboard, port 8265 by default) for submit and jobs?")


def _client(address: str):  # -> JobSubmissionClient
    check_job_address(address)
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:  # ray[default] is the `cluster` extra
        raise JobsError(f"job submission needs ray[default]: pip install 'rnn-search[cluster]' ({exc})") from None
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - connection errors come in many types
        raise JobsError(explain(exc, address)) from None


def _call(address: str, fn, *args):  # noqa: ANN001, ANN202
    """A job-server request whose failure becomes one JobsError line."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - RuntimeError with the HTTP status, aiohttp errors, ...
        raise JobsError(explain(exc, address)) from None


def submit(address: str, tune_args: list[str], *, working_dir: str = ".", env: dict[str, str] | None = None) -> tuple[str, str]:
    """Submit `rnn-search tune ...` as a Ray Job with this project as its working_dir; returns (job id, entrypoint)."""
    wd = Path(working_dir).resolve()
    if not (wd / "pyproject.toml").is_file():
        raise JobsError(f"--working-dir {wd} is not the rnn-search project (no pyproject.toml)")
    if "--address" not in tune_args:
        tune_args = [*tune_args, "--address", "auto"]  # the job's driver runs on the head: join its cluster
    entrypoint = "python -m search.cli " + " ".join(shlex.quote(a) for a in tune_args)
    client = _client(address)
    # The job's own marker: in a job, `tune` refuses storage that would land in Ray's temporary working_dir.
    runtime_env: dict = {"working_dir": str(wd), "excludes": EXCLUDES, "env_vars": {IN_JOB_ENV: "1", **(env or {})}}
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env), entrypoint
        except Exception as exc:  # noqa: BLE001 - the server's refusal comes as RuntimeError or HTTP errors
            # A head that has just started answers "No available agent to submit job, please try again
            # later" until its job agent registers: wait for it rather than fail.
            if "try again later" not in str(exc):
                raise JobsError(explain(exc, address)) from None
            if time.monotonic() > deadline:
                raise JobsError(f"the Ray job server at {address} has no job agent after {AGENT_WAIT_S:g} s: the "
                                "head's dashboard agent did not start; see dashboard_agent.log in the head's "
                                "session_latest/logs (/tmp/ray by default), restart the head, then submit again") from None
            log.info("the job server has no agent yet; retrying")
            time.sleep(2)


def follow(address: str, job_id: str, write: Any) -> str:
    """Stream a job's logs to ``write`` until it ends; returns its final status (e.g. SUCCEEDED)."""
    client = _client(address)

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            write(lines)

    asyncio.run(tail())
    return str(client.get_job_status(job_id)).rsplit(".", 1)[-1]


def job_status(address: str, job_id: str) -> tuple[str, str]:
    """(status, message) of a job."""
    info = _call(address, _client(address).get_job_info, job_id)
    return str(info.status).rsplit(".", 1)[-1], info.message or ""


def job_logs(address: str, job_id: str) -> str:
    return _call(address, _client(address).get_job_logs, job_id)


def job_stop(address: str, job_id: str) -> bool:
    """True when a stop was requested, False when the job had already finished."""
    return bool(_call(address, _client(address).stop_job, job_id))


def search_command(command: list[str], env_items: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """`submit`'s arguments: the search after ``--`` (it must be a ``tune``) and the ``--env KEY=VALUE`` items as a
    mapping; either wrong is one line."""
    rest = list(command)
    if rest and rest[0] == "--":
        rest = rest[1:]
    if not rest or rest[0] != "tune":
        raise ValueError("give the search after --, e.g.: rnn-search submit --address http://HEAD:8265 -- tune --preset quick")
    env = {}
    for item in env_items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    return rest, env
