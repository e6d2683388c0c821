"""Shared fixtures: the real hour.csv from ../shared, a private cache, and one real Ray instance."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Where this project's CI keeps the data (a checkout beside ../shared).
SHARED_CSV = ROOT.parent / "shared" / "data" / "bike-sharing" / "hour.csv"


def find_test_data(env: dict[str, str], shared: Path = SHARED_CSV) -> tuple[Path | None, str]:
    """The real hour.csv for the tests: $RNN_SEARCH_TEST_DATA, then what `rnn-search` itself would use
    ($RNN_SEARCH_DATA, then the cache), then ../shared. Never downloads. Returns (path or None, message)."""
    if env.get("RNN_SEARCH_TEST_DATA"):
        p = Path(env["RNN_SEARCH_TEST_DATA"])
        return (p, "") if p.is_file() else (None, f"RNN_SEARCH_TEST_DATA={p}: no such file")
    from rnn_core.data import DataError
    from rnn_core.datasets.bikes import find_data

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return find_data(download=False)[0], ""
    except DataError:
        pass
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if shared.is_file():
        return shared, ""
    return None, ("the tests need the real hour.csv and found none: run `rnn-search data info` once (it downloads "
                  "and caches it), or set RNN_SEARCH_DATA or RNN_SEARCH_TEST_DATA to the file")


HOUR_CSV, NO_DATA = find_test_data(dict(os.environ))  # before any test isolates the environment

# The whole session, and every process it starts (Ray nodes, the installed command, moto), gets a HOME and a
# cache of its own: nothing a test does reaches the runner's ~/.cache (module-scoped fixtures such as the
# cluster start before any per-test fixture could isolate them). Removed when the session ends.
SESSION_HOME = Path(tempfile.mkdtemp(prefix="rnn-search-tests-home-"))
os.environ.update(HOME=str(SESSION_HOME), XDG_CACHE_HOME=str(SESSION_HOME / ".cache"),
                  RNN_SEARCH_CACHE=str(SESSION_HOME / ".cache" / "rnn-search"))
atexit.register(shutil.rmtree, SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def hour_csv() -> Path:
    if HOUR_CSV is None:
        pytest.exit(NO_DATA, returncode=2)  # once, not once per test
    return HOUR_CSV


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the user's cache or the network: the cache is private, the download URL local."""
    monkeypatch.setenv("RNN_SEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("RNN_SEARCH_DATA", raising=False)
    monkeypatch.setenv("RNN_SEARCH_DATA_URL", "http://127.0.0.1:9/nothing-here.zip")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def bikes(hour_csv: Path):
    from rnn_core.data import DataConfig, load

    return load(DataConfig(), hour_csv)


@pytest.fixture(scope="session")
def ray_local():
    """One embedded Ray for the session (tests run inside a private network namespace).

    4 logical CPUs and 1 logical GPU: the fractional-GPU test packs four 0.25-GPU trials on it (they
    train on the CPU where CUDA is absent).
    """
    import ray

    if ray.is_initialized():  # one that an in-process `rnn-search tune` started: not the shape this session needs
        ray.shutdown()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from search.connection import WORKER_NICENESS

    os.environ.setdefault(WORKER_NICENESS, "0")  # trials at Ray's nice 15 starve on a busy machine (search.tuner)
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def write_space(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TINY_SPACE = """
cell: {choice: [gru, lstm, rnn]}
hidden_size: {choice: [8, 16]}
num_layers: 1
sequence_size: 24
learning_rate: {loguniform: [1.0e-3, 1.0e-2]}
batch_size: 512
"""


@pytest.fixture(scope="session")
def experiment(ray_local, hour_csv: Path, tmp_path_factory: pytest.TempPathFactory):
    """One small real search shared by the search/results tests: 4 trials x <= 3 epochs, hidden <= 16.

    One trial at a time, so that ASHA's decisions are deterministic (seeded TPE, seeded trials).
    """
    from search.tuner import SearchOptions, run_search

    root = tmp_path_factory.mktemp("exp")
    space = write_space(root / "space.yaml", TINY_SPACE)
    opts = SearchOptions(preset="quick", space_file=str(space), num_samples=4, max_epochs=3, grace_period=1,
                         reduction_factor=2, storage=str(root / "runs"), name="tiny", data_path=str(hour_csv),
                         seed=3, max_concurrent=1, progress_interval_s=60)
    grid, path = run_search(opts)
    return {"grid": grid, "path": path, "storage": str(root / "runs"), "opts": opts}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3():
    """A real S3 API on loopback: moto's standalone server, with authentication on (a wrong secret is refused).

    Returns the environment a process needs to use it (endpoint, credentials) and a bucket, 'runs', made
    through the API.
    """
    import subprocess
    import sys
    import time
    import urllib.request

    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    exe = str(Path(sys.executable).parent / "moto_server")
    # The first 4 requests need no credentials: they make the IAM user, its policy and its key; then every
    # request must be signed by a known key.
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="4"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        anon = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
        iam = boto3.client("iam", **anon)
        iam.create_user(UserName="rnn")
        iam.put_user_policy(UserName="rnn", PolicyName="all", PolicyDocument='{"Version": "2012-10-17", "Statement": '
                            '[{"Effect": "Allow", "Action": "*", "Resource": "*"}]}')
        key = iam.create_access_key(UserName="rnn")["AccessKey"]
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
               "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"], "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket="runs")
        yield {"endpoint": endpoint, "env": env, "bucket": "runs"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def said_last(stderr: str, start: str) -> str:
    """The one line a command ends with on stderr (its error or its interruption), checked: the last line, the only
    one that starts with ``start``, no traceback; progress said before it is talk on stderr too."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith(start), stderr[-3000:]
    assert sum(line.startswith(start) for line in lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[-1]
