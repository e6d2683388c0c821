"""Runs on s3:// against a real S3 API (moto_server on loopback, authentication on): search -> best -> export
-> test entirely from the bucket, a driver killed mid-search and resumed from s3://, refusals before any trial,
and optuna-dashboard on a run's study. Run inside a private network namespace (see README)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from search import storage
from search.cli import main
from tests.conftest import ROOT, free_port, write_space

pytestmark = pytest.mark.ray

SPACE = "cell: gru\nhidden_size: {choice: [8, 16]}\nbatch_size: 512\nlearning_rate: {loguniform: [1.0e-3, 1.0e-2]}\n"


@pytest.fixture
def s3_env(s3, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process and the processes it starts use the loopback S3 server."""
    for k, v in s3["env"].items():
        monkeypatch.setenv(k, v)
    return dict(os.environ)


def _tune(args: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search.cli", "tune", *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, **kw)


def _trial_results(uri: str) -> dict[str, int]:
    """Trial directory name -> report lines in its result.json, read from the bucket."""
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(uri)
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.type == pafs.FileType.Directory and info.base_name.startswith("train_forecaster_"):
            text = storage.read_text(storage.join(uri, info.base_name, "result.json")) or ""
            out[info.base_name] = len(text.splitlines())
    return out


@pytest.fixture(scope="module")
def s3_run(s3, hour_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One small search written to s3://runs/exp/s3q by the installed command (3 trials x 2 epochs)."""
    space = write_space(tmp_path_factory.mktemp("s3space") / "space.yaml", SPACE)
    env = dict(os.environ, **s3["env"])
    proc = _tune(["--space", str(space), "--num-samples", "3", "--max-epochs", "2", "--storage", "s3://runs/exp",
                  "--name", "s3q", "--data", str(hour_csv), "--progress-interval", "60"], env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "rnn-search test s3://runs/exp/s3q" in out  # the next-step hints keep the scheme
    assert "ensemble file: s3://runs/exp/s3q/ensemble.pt" in out  # chosen at the end of the search, in the bucket
    return "s3://runs/exp/s3q"


def test_search_best_export_test_entirely_from_s3(s3_run: str, s3_env, hour_csv: Path, tmp_path: Path, capsys) -> None:
    meta = json.loads(storage.read_text(storage.join(s3_run, "rnn_search.json")) or "{}")
    assert meta["metric"] == "val_loss" and meta["data"]["split"] == "default"  # metadata written to the bucket
    assert main(["best", s3_run, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["best"]["checkpoint"].startswith("s3://runs/exp/s3q/train_forecaster_"), doc["best"]["checkpoint"]
    assert storage.exists(storage.join(doc["best"]["checkpoint"], "model.pt"))
    out = tmp_path / "m.pt"
    assert main(["export", s3_run, "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and out.is_file()
    assert main(["test", s3_run, "--data", str(hour_csv), "--plots", str(tmp_path / "plots")]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^model\s+[\d.]+\s+[\d.]+", text, re.M)
    assert (tmp_path / "plots" / "search_history.png").is_file()
    # The exported model also runs `test` from the bucket.
    storage.upload(out, "s3://runs/models/m.pt")
    assert main(["test", "s3://runs/models/m.pt", "--data", str(hour_csv)]) == 0


@pytest.mark.parametrize("where, env_change, pattern", [
    ("s3://no-such-bucket/exp", {}, "no-such-bucket"),
    ("s3://runs/exp", {"AWS_SECRET_ACCESS_KEY": "wrong"}, "cannot write there"),
])
def test_a_missing_bucket_or_wrong_credentials_is_refused_before_any_trial(s3_env, hour_csv: Path, capsys,
                                                                            monkeypatch, where, env_change, pattern) -> None:
    for k, v in env_change.items():
        monkeypatch.setenv(k, v)
    started = time.monotonic()
    assert main(["tune", "--num-samples", "1", "--max-epochs", "1", "--storage", where, "--name", "refused",
                 "--data", str(hour_csv)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and pattern in err and "credentials" in err, err
    assert time.monotonic() - started < 30


def test_driver_killed_then_resumed_from_s3(s3_env, hour_csv: Path, tmp_path: Path) -> None:
    space = write_space(tmp_path / "r.yaml", SPACE)
    run = "s3://runs/exp/killed"
    proc = _tune(["--space", str(space), "--num-samples", "4", "--max-epochs", "3", "--grace-period", "3",
                  "--max-concurrent", "1", "--storage", "s3://runs/exp", "--name", "killed", "--data", str(hour_csv),
                  "--progress-interval", "1000"], s3_env)
    deadline = time.monotonic() + 240
    try:
        # A progress line is printed whenever a trial ends, just after Optuna was told: killed at once, the run's
        # saved state (every 10 s) still has that trial running.
        for line in proc.stdout:
            if re.search(r"\b([1-9]) done\b", line) or time.monotonic() > deadline:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it embedded
        proc.wait()
    assert time.monotonic() < deadline, "no trial ended before the deadline"
    from search.results import load_experiment

    ea, _, _ = load_experiment(run)
    finished = {t.trial_id for t in ea.trials if t.status == "TERMINATED"}  # in the saved state; maybe none
    before = _trial_results(run)
    from search.study import study_summary

    assert main(["tune", "--resume", run]) == 0
    ea, _, _ = load_experiment(run)
    assert len(ea.trials) == 4 and all(t.status == "TERMINATED" for t in ea.trials)
    after = _trial_results(run)
    for name, lines in before.items():
        if any(tid in name for tid in finished):
            assert after[name] == lines, f"{name} was re-run"
    # The study lives in the run: all four trials, the ones told before the kill among them.
    summary = study_summary(run)
    assert summary.startswith("4 trials") and "(4 complete" in summary, summary


def test_a_new_run_at_a_uri_used_before_starts_a_study_of_its_own(s3_env, hour_csv: Path, tmp_path: Path) -> None:
    """Fault 3 on s3://: the bucket emptied, a new run at the same URI with another space neither refuses its
    space nor learns from the old run's trials (the local working copy of the study belongs to one run)."""

    from search.study import study_summary

    run = "s3://runs/reused/r"
    for i, space in enumerate(("cell: gru\nhidden_size: {choice: [8, 16]}\nbatch_size: 512\n",
                               "cell: gru\nhidden_size: {choice: [12, 24]}\nbatch_size: 512\n")):
        path = write_space(tmp_path / f"s{i}.yaml", space)
        done = _tune(["--space", str(path), "--num-samples", "2", "--max-epochs", "1", "--storage", "s3://runs/reused",
                      "--name", "r", "--data", str(hour_csv), "--progress-interval", "1000", "--no-ensemble"], s3_env)
        out, _ = done.communicate(timeout=300)
        assert done.returncode == 0, out[-3000:]
        assert study_summary(run).startswith("2 trials"), study_summary(run)
        fs, prefix = storage.filesystem(run)
        fs.delete_dir(prefix)  # the bucket emptied, the cache left as it was


def test_dashboard_serves_the_study_of_a_local_and_an_s3_run(experiment, s3_run: str, s3_env) -> None:
    for run in (experiment["path"], s3_run):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "search.cli", "dashboard", run, "--port", str(port)], env=s3_env,
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as resp:
                        body = resp.read().decode()
                    break
                except OSError:
                    assert proc.poll() is None, proc.stdout.read()
                    assert time.monotonic() < deadline, "optuna-dashboard did not answer"
                    time.sleep(0.5)
            assert storage.name(run) in body, body[:500]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
