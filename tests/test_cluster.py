"""A real two-node Ray cluster on loopback (ray start --head / ray start --address, 1 CPU each, one
shared token), a search across both nodes, a Ray Job submission, and cluster.yaml validation."""

from __future__ import annotations

import contextlib
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
import time
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
def cluster(s3):
    with _two_nodes(s3) as started:
        yield started


@contextlib.contextmanager
def _two_nodes(s3):
    """A head and a worker node on loopback, 1 CPU each, one token; yields what tests need; kills both after."""
    tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's unix socket paths must fit in 107 bytes
    token = Path(tmp) / "token"
    token.write_text(secrets.token_hex(32))
    # Every node reaches the loopback S3 server: the cluster's only shared storage.
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", RAY_AIR_NEW_OUTPUT="0",
               RAY_worker_niceness="0", **s3["env"])  # as cluster.yaml starts its nodes
    port, dash = _free_port(), _free_port()
    ray = str(BIN / "ray")
    try:
        subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                        f"--temp-dir={tmp}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                        # the agent binds a port of its own choosing (0): the default 52365 may be held by another
                        # Ray on this machine, and a port picked here and freed can be taken before the agent binds
                        # it; either way its HTTP server fails, and the head never gets a job agent
                        "--dashboard-agent-listen-port=0", "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
        # The second node gets a temp dir of its own, as a second machine would: sharing the head's would let
        # its runtime-env agent delete the job's working_dir package from under the head's job driver.
        def worker(folder: str) -> None:
            subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                            f"--temp-dir={tmp}/{folder}", "--dashboard-agent-listen-port=0",
                            "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)

        worker("w")
        _wait_for_dashboard(f"http://127.0.0.1:{dash}")
        _wait_for_job_agent(Path(tmp))
        yield {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}", "env": env, "tmp": tmp,
               "add_worker": worker}
    finally:
        _kill_tree(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_for_dashboard(url: str, timeout: float = 90) -> None:
    """`ray start` returns before the head's dashboard (the job server) listens: poll it, on a busy machine too."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers (authentication asked for is an answer)
        except OSError:
            assert time.monotonic() < deadline, f"the dashboard at {url} did not answer within {timeout:g} s"
            time.sleep(0.2)


def _wait_for_job_agent(tmp: Path, timeout: float = 120) -> None:
    """The job server takes jobs only once the head's agent has its HTTP server up: poll the port file it writes.

    The agent writes -1 there when its HTTP server failed; then no job can ever be submitted: say why at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        files = list((tmp / "session_latest").glob("dashboard_agent_listen_port_*"))  # the head's own: one
        port = files[0].read_text().strip() if files else ""
        assert port != "-1", f"the head's dashboard agent has no HTTP server:\n{_head_log(tmp, 'dashboard_agent.log')}"
        if port:
            return
        assert time.monotonic() < deadline, (f"the head's dashboard agent did not start within {timeout:g} s:\n"
                                             f"{_head_log(tmp, 'dashboard_agent.log')}")
        time.sleep(0.2)


def _head_log(tmp: str | Path, name: str, tail: int = 3000) -> str:
    """The end of one of the head's Ray logs, for an assertion message: what Ray said when a job was refused."""
    try:
        return (Path(tmp) / "session_latest" / "logs" / name).read_text(errors="replace")[-tail:]
    except OSError as exc:
        return f"({name}: {exc})"


def _without_ray_noise(text: str) -> str:
    """Ray's packaging chatter hides the line that says what went wrong."""
    keep = [line for line in text.splitlines() if not re.search(r"\s(INFO|WARNING)\s", line)]
    return "\n".join(keep)[-4000:]


def _cli(args: list[str], env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_search_runs_on_both_nodes_with_s3_storage(cluster, hour_csv: Path, tmp_path: Path) -> None:
    import pyarrow.fs as pafs

    from search import storage

    space = write_space(tmp_path / "space.yaml", TINY_SPACE)
    local = tmp_path / "local"
    args = ["tune", "--address", cluster["address"], "--space", str(space), "--num-samples", "4", "--max-epochs", "2",
            "--grace-period", "2", "--name", "twonode", "--data", str(hour_csv), "--progress-interval", "60"]
    # A local --storage on a multi-node cluster is refused before any trial runs ...
    refused = _cli([*args, "--storage", str(local)], cluster["env"])
    assert refused.returncode == 2 and "2 nodes" in refused.stderr and "s3://" in refused.stderr, refused.stderr
    assert not (local / "twonode").exists()
    # ... and s3:// works with no folder shared between the nodes.
    done = _cli([*args, "--storage", "s3://runs/cluster"], cluster["env"])
    assert done.returncode == 0, _without_ray_noise(done.stdout + done.stderr)
    run = "s3://runs/cluster/twonode"
    old = {k: os.environ.get(k) for k in cluster["env"] if k.startswith("AWS_")}
    os.environ.update({k: cluster["env"][k] for k in old})
    try:
        fs, path = storage.filesystem(run)
        results = _bucket_results(run)
        assert len(results) == 4
        nodes = set()
        for t, lines in results.items():
            nodes |= {r["node_id"] for r in lines}
            ckpts = [i for i in fs.get_file_info(pafs.FileSelector(f"{path}/{t}", recursive=True))
                     if i.base_name == "model.pt"]
            assert ckpts, f"{t}: no checkpoint in the bucket"
        assert len(nodes) == 2, f"trials ran on {len(nodes)} node(s)"
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _bucket_results(run: str) -> dict[str, list[dict]]:
    """Trial folder -> its reports (result.json), read from the run in the bucket (credentials in os.environ)."""
    import pyarrow.fs as pafs

    from search import storage

    fs, path = storage.filesystem(run)
    trials = [i.base_name for i in fs.get_file_info(pafs.FileSelector(path)) if i.base_name.startswith("train_forecaster_")]
    return {t: [json.loads(line) for line in (storage.read_text(storage.join(run, t, "result.json")) or "").splitlines()]
            for t in trials}


def test_job_submission_follow_then_best(cluster, hour_csv: Path, tmp_path: Path) -> None:
    space = write_space(tmp_path / "space.yaml", TINY_SPACE)
    tune = ["tune", "--space", str(space), "--num-samples", "2", "--max-epochs", "1", "--name", "jobrun",
            "--data", str(hour_csv), "--progress-interval", "60"]
    # Without --storage, and with no storage declared by the cluster, the job is refused before any trial: its
    # working directory is a temporary folder that Ray deletes.
    refused = _cli(["submit", "--address", cluster["dashboard"], "--follow", "--", *tune], cluster["env"])
    assert refused.returncode == 1 and "FAILED" in refused.stdout, (_without_ray_noise(refused.stdout + refused.stderr)
                                                                   + _head_log(cluster["tmp"], "dashboard_agent.log"))
    assert "declares no storage" in refused.stdout and "trials" not in refused.stdout.split("declares no storage")[0][-300:]
    # The storage the cluster declares (RNN_SEARCH_STORAGE, as cluster.yaml sets it) takes its place.
    sub = _cli(["submit", "--address", cluster["dashboard"], "--follow", "--env", "RNN_SEARCH_STORAGE=s3://runs/jobs",
                "--", *tune], cluster["env"])
    assert sub.returncode == 0, _without_ray_noise(sub.stdout + sub.stderr)
    assert "submitted job" in sub.stdout and "SUCCEEDED" in sub.stdout and "best trial:" in sub.stdout
    assert "rnn-search test s3://runs/jobs/jobrun" in sub.stdout  # the next-step hints name the bucket
    job_id = sub.stdout.split("submitted job ", 1)[1].split(":", 1)[0]
    status = _cli(["jobs", "status", job_id, "--address", cluster["dashboard"]], cluster["env"])
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    best = _cli(["best", "s3://runs/jobs/jobrun", "--json"], cluster["env"])
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)["best"]["checkpoint"].startswith("s3://runs/jobs/jobrun/")


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
    assert "RNN_SEARCH_STORAGE=s3://" in " ".join(config["head_start_ray_commands"])  # where jobs without --storage write
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    typo = copy.deepcopy(config)
    typo["max_worker"] = typo.pop("max_workers")
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        _validate(typo)
    typo = copy.deepcopy(config)
    typo["available_node_types"]["gpu_worker"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        _validate(typo)


def _one_line_error(run: subprocess.CompletedProcess) -> str:
    from tests.conftest import said_last

    assert run.returncode == 2, run.stderr[-3000:]
    return said_last(run.stderr, "error: ")


def test_job_errors_are_one_line(cluster, tmp_path: Path) -> None:
    dash = cluster["dashboard"]
    err = _one_line_error(_cli(["jobs", "status", "raysubmit_nope", "--address", dash], cluster["env"]))
    assert "raysubmit_nope does not exist" in err
    # Without the token: the server was reached, it asks for authentication; say what to set.
    no_token = {k: v for k, v in cluster["env"].items() if not k.startswith("RAY_AUTH")}
    no_token["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    err = _one_line_error(_cli(["submit", "--address", dash, "--", "tune", "--preset", "quick"], no_token, timeout=120))
    assert "authentication required: set RAY_AUTH_MODE=token" in err
    # A host:port without http:// is not a job server address: refused at once, not after retries.
    start = time.monotonic()
    err = _one_line_error(_cli(["submit", "--address", dash.removeprefix("http://"), "--", "tune"], cluster["env"], timeout=60))
    assert f"did you mean {dash}" in err and time.monotonic() - start < 20


def test_tune_address_errors_are_one_line_and_quick(cluster, hour_csv: Path, tmp_path: Path) -> None:
    host, _port = cluster["address"].split(":")
    dash_port = cluster["dashboard"].rsplit(":", 1)[1]
    cases = [
        (["--address", f"127.0.0.1:{_free_port()}"], cluster["env"], "cannot reach the Ray cluster"),
        (["--address", cluster["dashboard"]], cluster["env"], "not a Ray address"),
        (["--address", f"{host}:{dash_port}"], cluster["env"], f"did you mean {cluster['dashboard']}"),
    ]
    no_token = {k: v for k, v in cluster["env"].items() if not k.startswith("RAY_AUTH")}
    no_token["HOME"] = str(tmp_path)
    cases.append((["--address", cluster["address"]], no_token, "authentication required"))
    for args, env, pattern in cases:
        start = time.monotonic()
        run = _cli(["tune", *args, "--num-samples", "1", "--max-epochs", "1", "--storage", "s3://runs/addr",
                    "--data", str(hour_csv)], env, timeout=120)
        err = _one_line_error(run)
        assert pattern in err and time.monotonic() - start < 30, (args, err)


def test_tune_without_address_starts_its_own_ray(cluster, hour_csv: Path, tmp_path: Path) -> None:
    # RAY_ADDRESS names the running two-node cluster: a plain ray.init() would attach to it, and its two nodes
    # would then refuse the local --storage. Without --address the search must start a Ray of its own.
    space = write_space(tmp_path / "one.yaml", "cell: gru\nhidden_size: 8\nbatch_size: 512\n")
    env = dict(cluster["env"], RAY_ADDRESS=cluster["address"])
    run = _cli(["tune", "--space", str(space), "--num-samples", "1", "--max-epochs", "1", "--storage",
                str(tmp_path / "runs"), "--name", "own", "--data", str(hour_csv), "--progress-interval", "60"], env)
    assert run.returncode == 0, _without_ray_noise(run.stdout + run.stderr)
    assert (tmp_path / "runs" / "own" / "rnn_search.json").is_file()


def test_a_lost_node_costs_no_trial_and_no_reported_epoch(s3, hour_csv: Path, tmp_path: Path, monkeypatch) -> None:
    """Fault 4: the worker node of a two-node cluster dies (its raylet and workers SIGKILLed) while a trial trains
    there, and a new node joins: the trial is retried from its checkpoint on a live node, the search exits 0, and every trial's
    history (result.json in the bucket, what best/plots/summaries read) has every epoch 1..N."""
    from search import storage

    for k, v in s3["env"].items():  # this process reads the bucket too
        monkeypatch.setenv(k, v)
    space = write_space(tmp_path / "space.yaml", "cell: gru\nhidden_size: 8\nbatch_size: 512\nsequence_size: 24\n"
                                                 "patience: 100\nlearning_rate: {choice: [0.003, 0.005]}\n")
    with _two_nodes(s3) as c:
        proc = subprocess.Popen([sys.executable, "-m", "search.cli", "tune", "--address", c["address"], "--space",
                                 str(space), "--num-samples", "2", "--max-epochs", "60", "--grace-period", "60",
                                 "--storage", "s3://runs/nodeloss", "--name", "lost", "--data", str(hour_csv),
                                 "--progress-interval", "1000", "--no-ensemble"],
                                env=c["env"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Killed when, for both trials (one on each node, one CPU each), the bucket holds a synced result.json
            # and the driver's own copy (in the head's session folder) already has epochs more: the moment a
            # restart's download of the bucket's copy would lose them.
            # 60 epochs (about 0.3 s each here): Tune's first sync to the bucket comes some 7 s into a trial, and
            # with 20 epochs the trials had finished about 1 s later, often before this loop saw that moment
            # (patience 100: no trial stops early, so each history must hold all 60).
            def ahead() -> bool:
                local = {f.parent.name: len(f.read_text().splitlines()) for f in Path(c["tmp"]).glob(
                    "session_latest/artifacts/*/lost/driver_artifacts/*/result.json")}
                synced = {t: len((storage.read_text(f"s3://runs/nodeloss/lost/{t}/result.json") or "").splitlines())
                          for t in local}
                return len(local) == 2 and all(0 < synced[t] < local[t] for t in local)

            deadline = time.monotonic() + 300
            while not ahead():
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
                time.sleep(0.1)
            # the worker node (its raylet, object store and trial worker), not its replacement in {tmp}/w2
            _kill_tree(f"{c['tmp']}/w\x00")
            _kill_tree(f"{c['tmp']}/w/")
            c["add_worker"]("w2")  # a node takes its place at once, as an autoscaler's would: the retry runs there
            out, err = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, _without_ray_noise(out + err)
    results = _bucket_results("s3://runs/nodeloss/lost")
    assert len(results) == 2
    nodes = set()
    for t, lines in results.items():
        epochs = [r["epoch"] for r in lines]
        nodes |= {r["node_id"] for r in lines}
        assert sorted(set(epochs)) == list(range(1, 61)), f"{t}: epochs {epochs}"
    assert len(nodes) >= 2, "no trial ran on the lost node"  # its retry ran on the head or on the new node
