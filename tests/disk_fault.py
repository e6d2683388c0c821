"""Run inside a private mount namespace (``unshare -m``) by tests/test_faults.py: a search whose storage, a small
tmpfs mounted here, fills up or turns read-only after the first epoch is reported; then the fault is cleared
and ``--resume`` finishes the search. Prints one JSON object with what happened (the mount is visible only in
this namespace, so everything to check is gathered here)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def _reported(journal: Path) -> bool:
    """An epoch has been reported to the study (an intermediate value in the journal)."""
    try:
        return '"op_code":7' in journal.read_text(errors="replace")
    except OSError:
        return False


def _fill(mnt: Path) -> None:
    with open(mnt / "fill", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


def _cli(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True, text=True, timeout=timeout)


def main() -> None:
    mode, mnt, run, tune_args = sys.argv[1], Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], check=True)
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "tune", *tune_args, "--storage", str(mnt), "--name", run],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not _reported(mnt / run / "optuna.journal") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    faulted_while_running = proc.poll() is None
    if mode == "full":
        _fill(mnt)
    else:  # a remount fails while a file there is open for writing (a checkpoint being saved): try again
        while subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode:
            assert time.monotonic() < deadline, "the storage could not be remounted read-only"
            time.sleep(0.05)
    out, err = proc.communicate(timeout=300)
    first = {"rc": proc.returncode, "stderr": err, "stdout_tail": out[-2000:]}
    if mode == "full":
        (mnt / "fill").unlink()
    else:
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
    resumed = _cli(["tune", "--resume", run, "--storage", str(mnt), "--no-ensemble"], timeout=400)
    import optuna

    from search.results import load_experiment
    from search.study import study_storage

    study = optuna.load_study(study_name=run, storage=study_storage(mnt / run / "optuna.journal"))
    ea, _, _ = load_experiment(str(mnt / run))
    print(json.dumps({
        "faulted_while_running": faulted_while_running, "first": first,
        "resume": {"rc": resumed.returncode, "stderr": resumed.stderr[-3000:], "stdout_tail": resumed.stdout[-2000:]},
        "study_states": [t.state.name for t in study.trials], "tune_statuses": [t.status for t in ea.trials],
    }))


if __name__ == "__main__":
    main()
