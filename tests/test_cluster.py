"""A real two-node Ray cluster on loopback (ray start --head / ray start --address, 1 CPU each, one
shared token), a search across both nodes, a Ray Job submission, and cluster.yaml validation."""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TINY_SPACE, write_space

pytestmark = pytest.mark.ray

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_tree(marker: str) -> None:
    """SIGKILL every process whose command line mentions this cluster's temp dir (its raylets, GCS, workers)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore")
        except OSError:
            continue
        if marker in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def cluster():
    tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's unix socket paths must fit in 107 bytes
    token = Path(tmp) / "token"
    token.write_text(secrets.token_hex(32))
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", RAY_AIR_NEW_OUTPUT="0")
    port, dash = _free_port(), _free_port()
    ray = str(BIN / "ray")
    try:
        subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                        f"--temp-dir={tmp}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                        # its own agent port: the default 52365 may be held by another Ray on this machine (the
                        # session's embedded one), and then the head never gets a job agent
                        f"--dashboard-agent-listen-port={_free_port()}", "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
        # The second node gets a temp dir of its own, as a second machine would: sharing the head's would let
        # its runtime-env agent delete the job's working_dir package from under the head's job driver.
        subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                        f"--temp-dir={tmp}/w", f"--dashboard-agent-listen-port={_free_port()}", "--disable-usage-stats"], env=env, check=True, capture_output=True,
                       timeout=120)
        yield {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}", "env": env, "tmp": tmp}
    finally:
        _kill_tree(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _without_ray_noise(text: str) -> str:
    """Ray's packaging chatter hides the line that says what went wrong."""
    keep = [line for line in text.splitlines() if not re.search(r"\s(INFO|WARNING)\s", line)]
    return "\n".join(keep)[-4000:]


def _cli(args: list[str], env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_search_runs_on_both_nodes_with_shared_storage(cluster, hour_csv: Path, tmp_path: Path) -> None:
    space = write_space(tmp_path / "space.yaml", TINY_SPACE)
    storage = tmp_path / "shared"
    args = ["tune", "--address", cluster["address"], "--space", str(space), "--num-samples", "4", "--max-epochs", "2",
            "--grace-period", "2", "--storage", str(storage), "--name", "twonode", "--data", str(hour_csv),
            "--progress-interval", "60"]
    # A local --storage on a multi-node cluster is refused before any trial runs ...
    refused = _cli(args, cluster["env"])
    assert refused.returncode == 2 and "2 nodes" in refused.stderr and "s3://" in refused.stderr, refused.stderr
    assert not (storage / "twonode").exists()
    # ... unless it is declared shared (here both nodes are on one machine, so it is).
    done = _cli(args, dict(cluster["env"], RNN_SEARCH_SHARED_STORAGE="1"))
    assert done.returncode == 0, _without_ray_noise(done.stdout + done.stderr)
    path = storage / "twonode"
    trials = sorted(p for p in path.iterdir() if p.name.startswith("train_bikes_"))
    assert len(trials) == 4
    nodes = set()
    for t in trials:
        lines = [json.loads(l) for l in (t / "result.json").read_text().splitlines()]
        nodes |= {r["node_id"] for r in lines}
        assert list(t.glob("checkpoint_*/model.pt")), f"{t.name}: no checkpoint in the shared storage"
    assert len(nodes) == 2, f"trials ran on {len(nodes)} node(s)"


def test_job_submission_follow_then_best(cluster, hour_csv: Path, tmp_path: Path) -> None:
    space = write_space(tmp_path / "space.yaml", TINY_SPACE)
    storage = tmp_path / "jobruns"
    sub = _cli(["submit", "--address", cluster["dashboard"], "--follow", "--env", "RNN_SEARCH_SHARED_STORAGE=1", "--env", "RNN_SEARCH_DEBUG=1", "--",
                "tune", "--space", str(space), "--num-samples", "2", "--max-epochs", "1", "--storage", str(storage),
                "--name", "jobrun", "--data", str(hour_csv), "--progress-interval", "60"], cluster["env"])
    assert sub.returncode == 0, _without_ray_noise(sub.stdout + sub.stderr)
    assert "submitted job" in sub.stdout and "SUCCEEDED" in sub.stdout and "best trial:" in sub.stdout
    job_id = sub.stdout.split("submitted job ", 1)[1].split(":", 1)[0]
    status = _cli(["jobs", "status", job_id, "--address", cluster["dashboard"]], cluster["env"])
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    best = _cli(["best", str(storage / "jobrun"), "--json"], cluster["env"])
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)["best"]["checkpoint"]


def _validate(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` checks before it starts anything


def test_cluster_yaml_passes_rays_schema_and_a_typo_is_rejected() -> None:
    import jsonschema

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    _validate(config)
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}  # head runs no trials
    workers = [v for k, v in config["available_node_types"].items() if k != config["head_node_type"]]
    assert workers and all(w["resources"].get("GPU") == 1 and w["min_workers"] == 0 for w in workers)
    assert "RAY_AUTH_MODE=token" in " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    typo = copy.deepcopy(config)
    typo["max_worker"] = typo.pop("max_workers")
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        _validate(typo)
    typo = copy.deepcopy(config)
    typo["available_node_types"]["gpu_worker"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        _validate(typo)
