"""`rnn-search dashboard RUN`: optuna-dashboard on an experiment's Optuna study, bound to loopback.

A local run's journal is served in place (the dashboard sees new trials as the search writes them). A run on
s3:// or gs:// is served from a downloaded copy, fetched again every ``refresh_s`` seconds while it runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from search import storage
from search.results import ResultsError
from search.study import STUDY_FILE

log = logging.getLogger(__name__)


def _executable() -> str:
    beside = Path(sys.executable).parent / "optuna-dashboard"  # the environment rnn-search runs in
    exe = str(beside) if beside.is_file() else shutil.which("optuna-dashboard")
    if not exe:
        raise ResultsError("optuna-dashboard is not installed: pip install optuna-dashboard")
    return exe


def serve(run: str, where: str | None = None, host: str = "127.0.0.1", port: int = 8080, refresh_s: float = 30.0,
          stop_after_s: float | None = None) -> int:
    """Run optuna-dashboard on the run's study until Ctrl-C (or ``stop_after_s``); returns its exit status."""
    path = storage.experiment_path(run, where)
    remote = storage.join(path, STUDY_FILE)
    if not storage.exists(remote):
        raise ResultsError(f"{path}: no Optuna study ({STUDY_FILE}); the run was made with --searcher random, a fixed "
                           "space or an older rnn-search, or it is not an experiment")
    exe = _executable()
    with tempfile.TemporaryDirectory(prefix="rnn-search-dashboard-") as tmp:
        local = storage.download(remote, tmp)
        # Its request log goes to a file (a pipe nobody reads would fill and stall it); read only if it fails.
        errors = Path(tmp) / "optuna-dashboard.log"
        with errors.open("w") as err:
            proc = subprocess.Popen([exe, str(local), "--host", host, "--port", str(port)],
                                    stdout=subprocess.DEVNULL, stderr=err)
        log.info("optuna-dashboard for study %s (%s) at http://%s:%d%s; Ctrl-C stops it", storage.name(path), path,
                 host, port, f", refreshed from storage every {refresh_s:g} s" if storage.is_uri(path) else "")
        start = last = time.monotonic()
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                now = time.monotonic()
                if stop_after_s is not None and now - start > stop_after_s:
                    break
                if storage.is_uri(path) and now - last > refresh_s:
                    last = now
                    fresh = storage.download(remote, Path(tmp) / "fresh")
                    os.replace(fresh, local)  # the journal only grows: the dashboard reads on from where it was
        except KeyboardInterrupt:
            pass
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        if proc.returncode not in (0, None, -15):
            said = errors.read_text().strip().splitlines()
            raise ResultsError(f"optuna-dashboard stopped: {said[-1] if said else f'exit status {proc.returncode}'}")
    return 0
