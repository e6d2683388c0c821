"""Faults a search must survive, each on the real thing: a driver SIGKILLed in the moment between Optuna's journal
and Tune's saved state, a storage that fills up or turns read-only (a small tmpfs in a mount namespace), a run
name used twice (one after the other, and two searches at once), Ctrl-C, and a search resumed from another
folder. Run inside a private network namespace, as root there (see README)."""

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

from search.cli import main
from tests.conftest import ROOT, said_last, write_space

pytestmark = pytest.mark.ray

SPACE = "cell: gru\nhidden_size: {choice: [8, 16]}\nbatch_size: 512\nlearning_rate: {loguniform: [1.0e-3, 1.0e-2]}\n"
RUNNING, TOLD = 0, (1, 2)  # Optuna's TrialState values in the journal: RUNNING; COMPLETE, PRUNED


def _ray_startup_note(line: str) -> bool:
    """A line Ray prints to stderr whenever it starts (its token authentication, its network address)."""
    return "authentication_token_setup.py" in line or "network_util.cc" in line


def _tune(args: list[str], cwd: Path = ROOT, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search.cli", "tune", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kw)


def _journal_ops(journal: Path) -> list[dict]:
    """The whole lines of an Optuna journal (a torn last line is left out, as Optuna reads it)."""
    try:
        text = journal.read_text()
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def _told(journal: Path) -> int:
    return sum(1 for op in _journal_ops(journal) if op.get("op_code") == 6 and op.get("state") in TOLD)


def _poll(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the search ended before {what}: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it embedded
    except ProcessLookupError:
        pass
    proc.wait()


def _study(path: Path) -> list[optuna.trial.FrozenTrial]:
    from search.study import study_storage

    return optuna.load_study(study_name=path.name, storage=study_storage(path / "optuna.journal")).trials


def _statuses(path: Path) -> list[str]:
    from search.results import load_experiment

    ea, _, _ = load_experiment(str(path))
    return [t.status for t in ea.trials]


def _args(space: Path, storage: Path, name: str, data: Path | str, samples: int = 4, epochs: int = 2) -> list[str]:
    return ["--space", str(space), "--num-samples", str(samples), "--max-epochs", str(epochs), "--grace-period",
            str(epochs), "--max-concurrent", "1", "--storage", str(storage), "--name", name, "--data", str(data),
            "--progress-interval", "1000", "--no-ensemble"]


def test_a_driver_killed_right_after_a_trial_is_told_resumes(ray_local, hour_csv: Path, tmp_path: Path) -> None:
    """Fault 1: kill -9 the moment Optuna's journal has a trial told, long before Tune's next saved state
    (every 10 s): that state still has the trial RUNNING (and maybe the next one asked of Optuna only)."""
    space = write_space(tmp_path / "s.yaml", SPACE)
    path = tmp_path / "runs" / "window"
    proc = _tune(_args(space, tmp_path / "runs", "window", hour_csv))
    try:
        _poll(lambda: _told(path / "optuna.journal") >= 1, "a trial was told to Optuna", proc)
    finally:
        _kill(proc)
    assert main(["tune", "--resume", "window", "--storage", str(tmp_path / "runs"), "--no-ensemble"]) == 0
    trials = _study(path)
    # every Tune trial is exactly one Optuna trial, told once
    assert len(trials) == 4 and all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
                                    for t in trials), [t.state for t in trials]
    assert _statuses(path) == ["TERMINATED"] * 4
    # ... and a second resume of the finished run has nothing to do and fails nothing
    assert main(["tune", "--resume", "window", "--storage", str(tmp_path / "runs"), "--no-ensemble"]) == 0
    assert len(_study(path)) == 4


@pytest.mark.parametrize("mode, errno_text", [("full", "No space left on device"), ("ro", "Read-only file system")])
def test_a_full_or_read_only_storage_ends_in_one_line_and_resumes(hour_csv: Path, tmp_path: Path, mode: str,
                                                                   errno_text: str) -> None:
    """Fault 2: the storage (a 64 MiB tmpfs in a mount namespace of this test) fills up or is remounted read-only
    after the first epoch is reported; once the fault is cleared, --resume finishes the search."""
    space = write_space(tmp_path / "s.yaml", SPACE)
    tune_args = ["--space", str(space), "--num-samples", "3", "--max-epochs", "4", "--grace-period", "4",
                 "--max-concurrent", "1", "--data", str(hour_csv), "--progress-interval", "1000", "--no-ensemble"]
    run = subprocess.run(["unshare", "-m", sys.executable, str(ROOT / "tests" / "disk_fault.py"), mode,
                          str(tmp_path / "mnt"), "disk", json.dumps(tune_args)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["faulted_while_running"], "the search ended before the fault"
    first = got["first"]
    # Ray's own start-up notes (token authentication, the network address) may come first; the search itself
    # says one thing: the error, last, with what to do; no traceback.
    assert first["rc"] == 2, first
    line = said_last(first["stderr"], "error: ")
    assert line.startswith("error: storage ") and errno_text in line, line
    assert f"rnn-search tune --resume disk --storage {tmp_path / 'mnt'}" in line, line
    assert got["resume"]["rc"] == 0, got["resume"]
    assert got["tune_statuses"] == ["TERMINATED"] * 3, got
    assert len(got["study_states"]) == 3 and set(got["study_states"]) <= {"COMPLETE", "PRUNED"}, got


def test_a_run_name_belongs_to_one_run(ray_local, hour_csv: Path, tmp_path: Path, capsys) -> None:
    """Fault 3: a second `tune --name` over a finished run is refused (nothing of it changed), and so is a second
    search while the first holds the run."""
    space = write_space(tmp_path / "s.yaml", SPACE)
    storage = tmp_path / "runs"
    assert main(["tune", *_args(space, storage, "fin", hour_csv, samples=2, epochs=1)]) == 0
    before = sorted(p.name for p in (storage / "fin").iterdir())
    journal = (storage / "fin" / "optuna.journal").read_bytes()
    capsys.readouterr()
    assert main(["tune", *_args(space, storage, "fin", hour_csv, samples=2, epochs=1)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: run fin already exists in {storage}: `rnn-search tune --resume fin` continues it, "
                   "or choose another --name"), err
    assert sorted(p.name for p in (storage / "fin").iterdir()) == before
    assert (storage / "fin" / "optuna.journal").read_bytes() == journal

    first = _tune(_args(space, storage, "dup", hour_csv, samples=3, epochs=10))
    try:
        _poll(lambda: (storage / "dup" / "rnn_search.json").is_file(), "the first search held its run", first)
        # both at once, while the first trains: each is refused before it reads the data or starts a Ray
        tries = [subprocess.Popen([sys.executable, "-m", "search.cli", "tune", *args], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for args in (_args(space, storage, "dup", hour_csv), ["--resume", "dup", "--storage", str(storage)])]
        (_, second_err), (_, resume_err) = (t.communicate(timeout=300) for t in tries)
        assert first.poll() is None, "the first search ended before the second was tried: the test proves nothing"
        assert tries[0].returncode == 2 and "error: run dup already exists" in second_err, second_err
        assert tries[1].returncode == 2 and "run dup is in use by another search (pid" in resume_err, resume_err
        out, err = first.communicate(timeout=600)
        assert first.returncode == 0, err[-2000:]
    finally:
        _kill(first)
    assert _statuses(storage / "dup") == ["TERMINATED"] * 3 and len(_study(storage / "dup")) == 3


def test_ctrl_c_stops_the_search_exits_130_and_resume_finishes_it(ray_local, hour_csv: Path, tmp_path: Path) -> None:
    """Fault 5: SIGINT mid-search: exit 130, one line saying how to resume, no ensemble chosen."""
    space = write_space(tmp_path / "s.yaml", SPACE)
    storage = tmp_path / "runs"
    args = _args(space, storage, "int", hour_csv, samples=3, epochs=3)
    proc = _tune(args[:-1])  # with the ensemble at the end, so that its absence is the interruption's doing
    try:
        _poll(lambda: '"op_code":7' in ((storage / "int" / "optuna.journal").read_text()
                                        if (storage / "int" / "optuna.journal").is_file() else ""),
              "a first epoch was reported", proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        _kill(proc)
    assert proc.returncode == 130, err[-2000:]
    assert said_last(err, "interrupted: ") == f"interrupted: rnn-search tune --resume int --storage {storage} continues it"
    assert "best trial" not in out and not (storage / "int" / "ensemble.pt").exists()
    assert main(["tune", "--resume", "int", "--storage", str(storage), "--no-ensemble"]) == 0
    assert _statuses(storage / "int") == ["TERMINATED"] * 3 and len(_study(storage / "int")) == 3


def test_a_search_with_relative_data_resumes_from_another_folder(ray_local, hour_csv: Path, tmp_path: Path) -> None:
    """Fault 8: the recorded data path is absolute, and an explicit --data on --resume wins over it."""
    import shutil

    from search.meta import experiment_meta

    here = tmp_path / "project"
    here.mkdir()
    shutil.copy(hour_csv, here / "hour.csv")
    space = write_space(tmp_path / "s.yaml", SPACE)
    storage = tmp_path / "runs"
    proc = _tune(_args(space, storage, "rel", "hour.csv", samples=2, epochs=2), cwd=here)
    try:
        _poll(lambda: _told(storage / "rel" / "optuna.journal") >= 1, "a trial was told", proc)
    finally:
        _kill(proc)
    assert experiment_meta(str(storage / "rel"))["data_path"] == str(here / "hour.csv")
    (here / "hour.csv").rename(tmp_path / "moved.csv")  # the run moves on; the file lies elsewhere now
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = subprocess.run([sys.executable, "-m", "search.cli", "tune", "--resume", "rel", "--storage", str(storage),
                              "--data", str(tmp_path / "moved.csv"), "--no-ensemble"],
                             cwd=elsewhere, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _statuses(storage / "rel") == ["TERMINATED"] * 2
