"""`rnn-search tune` on a real Ray instance: checkpoints, best-over-all-epochs, PRUNED trials, resume,
fault tolerance, NaN trials, bad spaces, wandb offline, fractional GPUs. Run inside a private network
namespace (see README)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from ray import tune

from search.cli import main
from search.results import best_trial, load_experiment, summarize
from search import tuner
from search.connection import WORKER_NICENESS
from search.study import AshaAwareOptunaSearch
from search.tuner import SearchOptions, run_search
from tests.conftest import write_space

pytestmark = pytest.mark.ray


def _trial_dirs(path: str) -> list[Path]:
    return sorted(p for p in Path(path).iterdir() if p.is_dir() and p.name.startswith("train_forecaster_"))


def _saved_trials(path: Path) -> dict[str, dict]:
    """trial id -> last result, from the experiment state Tune last saved into the run (what --resume reads);
    empty while there is none or while Tune is rewriting it."""
    files = sorted(path.glob("experiment_state-*.json")) if path.is_dir() else []
    try:
        state = json.loads(files[-1].read_text()) if files else {"trial_data": []}
        return {r["trial_id"]: r for r in (json.loads(meta)["last_result"] for _, meta in state["trial_data"]) if r}
    except (json.JSONDecodeError, KeyError, OSError):
        return {}


def test_every_trial_has_a_checkpoint(experiment) -> None:
    dirs = _trial_dirs(experiment["path"])
    assert len(dirs) == 4
    for d in dirs:
        ckpts = list(d.glob("checkpoint_*/model.pt"))
        assert ckpts, f"{d.name} has no checkpoint"


def test_best_is_the_minimum_over_all_epochs_of_the_reported_histories(experiment) -> None:
    """Recompute the best from each trial's own result.json lines, independently of search.results."""
    rows = []
    for d in _trial_dirs(experiment["path"]):
        for line in (d / "result.json").read_text().splitlines():
            r = json.loads(line)
            rows.append((r["val_loss"], r["trial_id"], r["epoch"]))
    loss, trial_id, epoch = min(rows)
    best, summaries, _ = best_trial(experiment["path"])
    assert (best.trial_id, best.best_epoch) == (trial_id, epoch)
    assert best.best_val_loss == pytest.approx(loss)
    # ... and its checkpoint is the one saved at that epoch, not the trial's latest
    from rnn_core.checkpoint import load_bundle

    assert load_bundle(Path(best.checkpoint) / "model.pt")["epoch"] == epoch


def test_asha_stopped_trials_are_pruned_in_optuna(experiment) -> None:
    path = experiment["path"]
    searcher = AshaAwareOptunaSearch(metric="val_loss", mode="min")
    searcher.restore_from_dir(path)
    states = {tid: searcher._ot_study.trials[t.number].state for tid, t in searcher._ot_trials.items()}
    ea, grid, _ = load_experiment(path)
    summaries = {s.trial_id: s for s in summarize(ea, grid)}
    stopped = [tid for tid, s in summaries.items() if s.stop_reason == "ASHA"]
    assert stopped, "ASHA stopped no trial in this search; the test needs at least one"
    for tid, s in summaries.items():
        expected = optuna.trial.TrialState.PRUNED if s.stop_reason == "ASHA" else optuna.trial.TrialState.COMPLETE
        assert states[tid] == expected, (tid, s.stop_reason, states[tid])
    pruned = searcher._ot_study.trials[searcher._ot_trials[stopped[0]].number]
    assert pruned.intermediate_values  # told with its per-epoch losses


def test_each_trial_reports_its_node(experiment) -> None:
    ea, grid, _ = load_experiment(experiment["path"])
    assert all(s.nodes and all(len(n) > 20 for n in s.nodes) for s in summarize(ea, grid))


def _killed_once_after_report(epoch: int, marker: Path):
    """The trainable, wrapped so that its worker process is SIGKILLed right after it reports ``epoch``, once
    (the marker file is created atomically, across restarts)."""
    real = tuner.train_forecaster

    def killed_once(config, **params):  # runs in the trial's worker; cloudpickle ships it by value
        report = tune.report

        def report_then_die(metrics, *args, **kwargs):
            report(metrics, *args, **kwargs)
            if metrics["epoch"] == epoch:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return
                os.kill(os.getpid(), signal.SIGKILL)

        tune.report = report_then_die  # the trainable calls ray.tune.report
        try:
            real(config, **params)
        finally:
            tune.report = report

    return killed_once


def test_worker_killed_at_epoch_2_resumes_at_epoch_3(ray_local, hour_csv: Path, tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "killed"
    monkeypatch.setattr(tuner, "train_forecaster", _killed_once_after_report(2, marker))
    space = write_space(tmp_path / "one.yaml", "cell: gru\nhidden_size: 8\nbatch_size: 512\nlearning_rate: 0.003\n")
    opts = SearchOptions(preset="quick", space_file=str(space), num_samples=1, max_epochs=3, storage=str(tmp_path / "runs"),
                         name="killtest", data_path=str(hour_csv), max_failures=2, progress_interval_s=60)
    grid, path = run_search(opts)
    assert marker.exists(), "the worker was not killed"
    res = grid[0]
    assert res.error is None
    df = res.metrics_dataframe
    assert list(df["epoch"]) == [1, 2, 3]  # not 1, 2, 1, 2, 3
    assert list(df["resumed_from"]) == [0, 0, 2]


def test_nan_trial_ends_as_a_bad_trial_and_the_search_goes_on(ray_local, hour_csv: Path, tmp_path: Path) -> None:
    space = write_space(tmp_path / "nan.yaml", "cell: gru\nhidden_size: 8\nbatch_size: 512\nclip_norm: 0.0\n"
                                               "learning_rate: {choice: [1.0e+30, 0.003]}\n")
    opts = SearchOptions(preset="quick", space_file=str(space), num_samples=4, max_epochs=2, storage=str(tmp_path / "runs"),
                         name="nan", data_path=str(hour_csv), seed=1, max_concurrent=2, progress_interval_s=60)
    grid, path = run_search(opts)
    assert not grid.errors
    best, summaries, _ = best_trial(path)
    reasons = {s.config["learning_rate"]: s.stop_reason for s in summaries}
    bad = [s for s in summaries if s.config["learning_rate"] > 1]
    good = [s for s in summaries if s.config["learning_rate"] < 1]
    assert bad and good, reasons
    assert all(s.stop_reason == "non-finite loss" for s in bad)
    assert best.config["learning_rate"] < 1
    searcher = AshaAwareOptunaSearch(metric="val_loss", mode="min")
    searcher.restore_from_dir(path)
    for s in bad:
        assert searcher._ot_study.trials[searcher._ot_trials[s.trial_id].number].state == optuna.trial.TrialState.PRUNED


@pytest.mark.parametrize("text, pattern", [
    ("hiden_size: {choice: [8]}\n", "unknown key 'hiden_size'"),
    ("hidden_size: {choice: [8.5]}\n", "'hidden_size' takes int values, got 8.5"),
    ("learning_rate: {loguniform: [0.01, 0.001]}\n", "empty range"),
    ("dropout: {normal: [0, 1]}\n", "unknown distribution 'normal'"),
    ("cell: {choice: [gru, transformer]}\n", "'cell' must be one of"),
    ("num_layers: {randint: [2, 2]}\n", "empty range"),
    ("[1, 2\n", "not valid YAML"),
])
def test_bad_spaces_are_refused_before_ray_starts(tmp_path: Path, capsys, text: str, pattern: str) -> None:
    space = write_space(tmp_path / "bad.yaml", text)
    storage = tmp_path / "runs"
    assert main(["tune", "--space", str(space), "--storage", str(storage), "--data", "/nonexistent.csv"]) == 2
    assert pattern in capsys.readouterr().err
    assert not storage.exists()


@pytest.mark.parametrize("args, pattern", [
    (["--preset", "default", "--grace-period", "21"], "--grace-period 21: expected 1 to --max-epochs (20)"),
    (["--preset", "quick", "--grace-period", "0"], "--grace-period 0: expected 1 to --max-epochs (6)"),
    (["--preset", "default", "--reduction-factor", "1"], "--reduction-factor 1: expected a number above 1"),
    (["--preset", "default", "--keep-checkpoints", "0"], "--keep-checkpoints 0: expected 1 or more"),
])
def test_asha_settings_are_checked_against_the_presets_budget(tmp_path: Path, capsys, args: list[str], pattern: str) -> None:
    storage = tmp_path / "runs"
    assert main(["tune", *args, "--storage", str(storage), "--data", "/nonexistent.csv"]) == 2
    assert pattern in capsys.readouterr().err
    assert not storage.exists()


def test_the_presets_grace_period_shrinks_to_a_shorter_max_epochs(tmp_path: Path, capsys) -> None:
    # default's grace (3) with --max-epochs 2 becomes 2: the search gets past the ASHA checks to the missing data file
    assert main(["tune", "--preset", "default", "--max-epochs", "2", "--storage", str(tmp_path / "runs"),
                 "--data", "/nonexistent.csv"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent.csv" in err and "--grace-period" not in err


def test_wandb_offline_needs_no_key_and_no_wandb_mode(hour_csv: Path, tmp_path: Path) -> None:
    """The installed command, as a user runs it: no WANDB_API_KEY, no WANDB_MODE, no ~/.netrc."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path / "home")  # no wandb login, no netrc
    space = write_space(tmp_path / "w.yaml", "cell: gru\nhidden_size: 8\nbatch_size: 512\n")
    run = subprocess.run([sys.executable, "-m", "search.cli", "tune", "--wandb", "offline", "--space", str(space),
                          "--num-samples", "1", "--max-epochs", "1", "--storage", str(tmp_path / "runs"), "--name", "wb1",
                          "--data", str(hour_csv), "--progress-interval", "60"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "W&B offline runs go to" in run.stderr and "wandb sync" in run.stderr  # talk on stderr
    assert list((tmp_path / "runs" / "wb1").rglob("offline-run-*"))


def test_a_data_error_comes_before_ray_starts(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "search.cli", "tune", "--storage", str(tmp_path / "runs"),
                          "--data", str(tmp_path / "missing.csv")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "missing.csv: no such file" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr  # no Ray start-up lines before it
    assert not (tmp_path / "runs").exists()


def test_wandb_offline_writes_run_files(ray_local, hour_csv: Path, tmp_path: Path) -> None:
    space = write_space(tmp_path / "w.yaml", "cell: gru\nhidden_size: 8\nbatch_size: 512\n")
    opts = SearchOptions(preset="quick", space_file=str(space), num_samples=2, max_epochs=1, storage=str(tmp_path / "runs"),
                         name="wb", data_path=str(hour_csv), wandb="offline", progress_interval_s=60)
    grid, path = run_search(opts)
    runs = list(Path(path).rglob("offline-run-*"))
    assert len(runs) == 2, runs
    assert all(any(f.suffix == ".wandb" for f in r.iterdir()) for r in runs)


class _Packing(tune.Callback):
    """Watches Ray's logical resources: the most trials (and GPU share) running at once."""

    def __init__(self) -> None:
        self.max_running = 0
        self.max_gpu = 0.0

    def on_step_begin(self, iteration, trials, **info) -> None:
        running = [t for t in trials if t.status == "RUNNING"]
        self.max_running = max(self.max_running, len(running))
        self.max_gpu = max(self.max_gpu, sum(t.placement_group_factory.required_resources.get("GPU", 0) for t in running))


def test_quarter_gpus_pack_four_trials_on_one_gpu(ray_local, hour_csv: Path, tmp_path: Path) -> None:
    import ray

    assert ray.cluster_resources().get("GPU") == 1
    space = write_space(tmp_path / "g.yaml", "cell: gru\nhidden_size: 8\nbatch_size: 128\n")
    watch = _Packing()
    opts = SearchOptions(preset="quick", space_file=str(space), num_samples=4, max_epochs=3, grace_period=3,
                         gpus_per_trial=0.25, cpus_per_trial=1, storage=str(tmp_path / "runs"), name="gpu",
                         data_path=str(hour_csv), callbacks=[watch], progress_interval_s=60)
    grid, _ = run_search(opts)
    assert not grid.errors
    assert watch.max_running == 4 and watch.max_gpu == pytest.approx(1.0)


def test_resume_after_the_driver_is_killed(ray_local, hour_csv: Path, tmp_path: Path) -> None:
    space = write_space(tmp_path / "r.yaml", "cell: gru\nhidden_size: {choice: [8, 16]}\nbatch_size: 128\n")
    storage, trials = tmp_path / "runs", 16
    cmd = [sys.executable, "-m", "search.cli", "tune", "--space", str(space), "--num-samples", str(trials),
           "--max-epochs", "3", "--grace-period", "3", "--max-concurrent", "1", "--storage", str(storage), "--name", "killed",
           "--data", str(hour_csv), "--progress-interval", "60", "--keep-checkpoints", "1"]
    # Tune saves the experiment state every 10 s or more; every second here, so that the state names finished
    # and running trials before this small search ends.
    # Sixteen trials: on a busy machine Tune spaces its state saves out (it keeps their cost small), a save can
    # fall between a trial's start and its first checkpoint, and six trials once ended before any save named a
    # finished trial and a running one. The kill comes at the first such save; the resume runs the rest.
    env = dict(os.environ, TUNE_GLOBAL_CHECKPOINT_S="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    path = storage / "killed"
    deadline = time.monotonic() + 240
    finished: set[str] = set()
    missing: list[str] = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            saved = _saved_trials(path)
            dirs = _trial_dirs(str(path)) if path.is_dir() else []
            # What a resume would restore from must exist at every moment: the latest checkpoint the saved state
            # names for each unfinished trial (Tune alone deletes it as soon as a better one comes).
            missing += [f"{tid}/{r['checkpoint_dir_name']}" for tid, r in saved.items()
                        if not r.get("done") and r.get("checkpoint_dir_name")
                        and not any((d / r["checkpoint_dir_name"]).is_dir() for d in dirs if f"_{tid}_" in d.name)]
            finished = {d.name for d in dirs for tid, r in saved.items()
                        if r.get("done") and f"_{tid}_" in d.name}
            running = [r for r in saved.values() if not r.get("done") and r.get("checkpoint_dir_name")]
            if finished and running:  # kill with a trial done and one to restore from a checkpoint
                break
            time.sleep(0.2)
    finally:
        ended_by_itself = proc.poll() is not None
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it embedded
        except ProcessLookupError:
            pass
        proc.wait()
    assert not ended_by_itself, "the search ended before its saved state named a finished and a running trial"
    assert finished, "no finished trial in the saved experiment state before the deadline"
    assert not missing, f"the saved state named deleted checkpoints: {sorted(set(missing))}"
    # Only the finished trials are compared after the resume.
    reports_before = {d.name: len((d / "result.json").read_text().splitlines())
                      for d in _trial_dirs(str(path)) if d.name in finished}
    # what a kill while a trial was starting leaves: its folder, empty, which the saved state may not name
    empty = path / "train_forecaster_0badcafe_99_cell=gru_2026-01-01_00-00-00"
    empty.mkdir()

    assert main(["tune", "--resume", "killed", "--storage", str(storage)]) == 0
    assert not empty.exists(), "the resume left an empty trial folder of the killed run"
    ea, grid, _ = load_experiment(str(path))
    assert len(ea.trials) == trials
    assert all(t.status in ("TERMINATED", "ERROR") for t in ea.trials)
    assert all(t.status == "TERMINATED" for t in ea.trials)
    # A checkpoint the saved state still named was not deleted (the resume restored every unfinished trial),
    # and by the end each trial kept only its best and its latest.
    for s in summarize(ea, grid):
        assert s.checkpoint and (Path(s.checkpoint) / "model.pt").is_file(), s.trial_id
    for d in _trial_dirs(str(path)):
        assert 1 <= len(list(d.glob("checkpoint_*/model.pt"))) <= 2, d.name
        if d.name in finished:  # not re-run: no new report lines
            assert len((d / "result.json").read_text().splitlines()) == reports_before[d.name]


def test_trials_in_a_ray_of_our_own_run_at_normal_priority() -> None:
    """Ray's workers run at nice 15 by default: beside two busy processes a search's trials then got ~1 % of the
    CPU (a 20 s test took 274 s). The Ray a search starts runs them at nice 0."""
    probe = ("import os, ray\nfrom search.connection import init_ray\ninit_ray(None, num_cpus=1)\n"
             "print('nice', ray.get(ray.remote(lambda: os.nice(0)).remote()))\n")
    env = {k: v for k, v in os.environ.items() if k != WORKER_NICENESS}  # as a user's shell has it
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-2:] == ["nice", str(os.nice(0))], run.stdout


def test_a_trials_last_result_and_its_end_make_one_progress_line(caplog) -> None:
    import logging

    from ray.tune.experiment import Trial

    from search.tuner import ProgressLine

    line, trial = ProgressLine(interval_s=0.0), Trial("t", stub=True)
    trial.set_status(Trial.RUNNING)
    with caplog.at_level(logging.INFO, logger="search"):
        line.on_trial_result(1, [trial], trial, {"val_loss": 0.5, "val_mae": 30.0, "epoch": 3})
        trial.set_status(Trial.TERMINATED)
        line.on_trial_result(1, [trial], trial, {"val_loss": 0.4, "val_mae": 29.0, "epoch": 4})
        line.on_trial_complete(1, [trial], trial)  # the same step: nothing new to say
    lines = [r.getMessage() for r in caplog.records if "trials:" in r.getMessage()]
    assert len(lines) == 2 and "1 running" in lines[0], lines
    assert "1 done" in lines[1] and "val MAE 29.0" in lines[1], lines
    small = ProgressLine(interval_s=0.0)  # a series in GW: the errors keep 3 significant digits
    with caplog.at_level(logging.INFO, logger="search"):
        small.on_trial_result(1, [trial], trial, {"val_loss": 0.0123, "val_mae": 0.0376, "epoch": 3})
    assert "best val_loss 0.0123 (val MAE 0.0376)" in caplog.records[-1].getMessage(), caplog.records[-1].getMessage()
