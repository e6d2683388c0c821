"""A search that ends at its knee (search.knee): the rule, its flags, a real search that stops itself with the
ensemble it scored being the one `rnn-search ensemble` would choose from the same trials, and a driver killed
mid-search whose resume keeps the rule's count."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.cli import main
from search.knee import KneeRule
from search.show import decimals
from tests.conftest import TINY_SPACE, write_space


def test_the_rule_waits_patience_trials_after_the_last_gain_above_the_margin() -> None:
    rule = KneeRule(patience=20, margin=0.01, every=10)
    # gains of 5% at 10 and 20 trials, then 0.5% gains only (below the margin): ends 20 trials after the last real gain
    history = [(10, 30.0), (20, 28.5), (30, 28.4), (40, 28.3), (50, 20.0)]
    assert rule.stop_at(history) == 3
    assert rule.stop_at(history[:3]) is None  # 10 trials since the gain: goes on
    assert KneeRule(patience=40, margin=0.01).stop_at(history) is None  # 50 stays a real gain
    assert KneeRule(patience=20, margin=0.0).stop_at(history) is None  # any gain counts
    # 0.8% a check: below the margin each, but 1.6% over 20 trials, against the score the clock started from
    creeping = [(10, 20.50), (20, 20.34), (30, 20.18), (40, 20.02), (50, 19.86), (60, 19.86), (70, 19.86)]
    assert rule.stop_at(creeping[:5]) is None
    assert rule.stop_at(creeping[:3]) is None  # 20.18 at 30 is a gain on 20.50 (the old rule ended here)
    assert rule.stop_at(creeping) == 6  # the last gain at 50 (19.86 < 0.99 * 20.18): ends 20 trials later, at 70
    with pytest.raises(ValueError):
        KneeRule(patience=0, margin=0.01)


@pytest.mark.parametrize("args, pattern", [
    (["--stop-patience", "-3"], r"--stop-patience -3: expected a whole number"),
    (["--stop-margin", "120"], r"--stop-margin 120(\.0)?: expected a percentage"),
])
def test_bad_knee_flags_are_one_line_and_exit_2(tmp_path: Path, capsys, args: list[str], pattern: str) -> None:
    assert main(["tune", "--preset", "default", "--storage", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(pattern, err[0]), err


def _checks(text: str) -> list[tuple[int, float]]:
    return [(int(n), float(v)) for n, v in re.findall(r"ensemble of the (\d+) finished trials: val MAE ([\d.]+)", text)]


def _finished_in_order(path: str) -> list[str]:
    """Trial ids by the time of their last report (what the knee rule saw finish, in order)."""
    from search.results import load_experiment

    ea, _, _ = load_experiment(path)
    dfs = [d for d in ea.trial_dataframes.values() if len(d)]
    return [str(d["trial_id"].iloc[-1]) for d in sorted(dfs, key=lambda d: float(d["started_at"].iloc[-1] + d["elapsed_s"].iloc[-1]))]


@pytest.mark.ray
def test_a_search_ends_at_its_knee_with_the_ensemble_it_would_ship(ray_local, hour_csv: Path, tmp_path: Path,
                                                                    caplog, capsys, monkeypatch) -> None:
    from search.results import calibration_loss, candidate_bundles, load_experiment, run_frame, summarize
    from search.tuner import SearchOptions, run_search
    from rnn_core.config import DataConfig
    from rnn_core.ensemble import choose_ensemble
    from rnn_core.forecaster import naive_bundles

    monkeypatch.chdir(tmp_path)
    write_space(tmp_path / "s.yaml", TINY_SPACE)
    # a 90% margin: only the first check is a gain, so the search ends 3 finished trials later, at 6 of 30
    opts = SearchOptions(preset="quick", space_file="s.yaml", num_samples=30, max_epochs=1, grace_period=1,
                         storage=str(tmp_path / "runs"), name="knee", data_path=str(hour_csv), max_concurrent=1,
                         progress_interval_s=60, stop_patience=3, stop_margin=90.0, stop_every=3)
    with caplog.at_level(logging.INFO, logger="search"):
        grid, path = run_search(opts)
    checks = _checks(caplog.text)
    assert [n for n, _ in checks] == [3, 6], caplog.text
    assert "the search ends at its knee" in caplog.text
    assert len(grid) <= 7  # the 6 finished and at most the one running when it ended; not 30
    # The score it judged by is the shipped ensemble's own: chosen again from the bundles on disk, as
    # `rnn-search ensemble` does, over the first 3 and 6 trials that finished.
    ea, g, _ = load_experiment(path)
    summaries = {s.trial_id: s for s in summarize(ea, g, path)}
    order, frame = _finished_in_order(path), run_frame(path)
    for n, logged in checks:
        chosen = sorted((summaries[t] for t in order[:n]), key=lambda s: s.best_score)
        pool = candidate_bundles(path, chosen)
        pool.update(naive_bundles(DataConfig.from_dict(next(iter(pool.values()))["data_config"])))  # as build_ensemble
        val = choose_ensemble(pool, frame, 20, "rmse", calibration_loss(chosen[0].metric)).val_mae
        assert f"{val:.{decimals([val])}f}" == f"{logged:.{decimals([val])}f}", (n, val, logged)  # as logged: >= 3 digits
    # Resumed from elsewhere, its space file (a relative path) gone: the run recorded the file's entries. With
    # nothing left to run, Tune ends the resumed search before its first step; it still says why it ended.
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    (tmp_path / "s.yaml").unlink()
    capsys.readouterr()
    assert main(["tune", "--resume", "knee", "--storage", str(tmp_path / "runs"), "--no-ensemble"]) == 0
    text = capsys.readouterr().err  # the command's log lines: talk, on stderr
    assert [n for n, _ in _checks(text)] == [6] and "the search ends at its knee" in text, text[-3000:]
    assert len(load_experiment(path)[0].trials) == len(grid)  # no trial started after the knee


KILLED_SEARCH = """
import logging, sys
from search.tuner import SearchOptions, run_search
logging.basicConfig(level=logging.INFO)
run_search(SearchOptions(preset="quick", space_file=sys.argv[1], num_samples=40, max_epochs=1, grace_period=1,
                         storage=sys.argv[2], name="kneekill", data_path=sys.argv[3], max_concurrent=1,
                         progress_interval_s=60, stop_patience=4, stop_margin=90.0, stop_every=4))
"""


@pytest.mark.ray
def test_a_killed_search_resumes_and_still_ends_at_its_knee(ray_local, hour_csv: Path, tmp_path: Path, capsys) -> None:
    from search.results import load_experiment

    space, storage = write_space(tmp_path / "s.yaml", TINY_SPACE), tmp_path / "runs"
    env = dict(os.environ, TUNE_GLOBAL_CHECKPOINT_S="1")  # snapshots every second: the first check is saved
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", KILLED_SEARCH, str(space), str(storage), str(hour_csv)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + 300
    try:  # kill the driver once its first check (4 finished trials) is logged and a snapshot came after it
        while time.monotonic() < deadline and proc.poll() is None and not _checks(log.read_text()):
            time.sleep(0.2)
        seen = time.time()
        while time.monotonic() < deadline and proc.poll() is None and not any(
                f.stat().st_mtime > seen + 0.5 for f in (storage / "kneekill").glob("experiment_state-*.json")):
            time.sleep(0.1)
    finally:
        ended_by_itself = proc.poll() is not None
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert not ended_by_itself and _checks(log.read_text()), log.read_text()[-3000:]
    assert main(["tune", "--resume", "kneekill", "--storage", str(storage), "--no-ensemble"]) == 0
    text = capsys.readouterr().err  # the command's log lines (talk, on stderr)
    # The resumed search counted on from the trials finished before the kill: it ends at 8 finished trials
    # (4 after the first check), not 8 after the resume.
    assert "the search ends at its knee" in text, text[-3000:]
    assert [n for n, _ in _checks(text)] == [8], text[-3000:]
    ea, _, _ = load_experiment(str(storage / "kneekill"))
    assert len(ea.trials) <= 10 and all(t.status == "TERMINATED" for t in ea.trials)


def test_a_search_killed_at_its_knee_says_so_again_on_resume(caplog) -> None:
    """A driver killed after its knee was reached and saved: the resumed search ends at once, with its lines."""
    from rnn_core.config import default_dataset

    BIKES = default_dataset()  # noqa: N806
    from search.knee import KneeStop

    knee = KneeStop(KneeRule(patience=4, margin=0.9, every=4), None, BIKES, "mae")
    assert not knee.stopper.stop_all()
    knee.set_state({"history": [(4, 0.5, 30.0), (8, 1.0, 29.0)], "stopped": True,
                    "finished": [f"t{i}" for i in range(8)], "elapsed": 60.0})
    assert knee.stopper.stop_all()
    with caplog.at_level(logging.INFO, logger="search"):
        knee.on_step_begin(0, [])
        knee.on_step_begin(1, [])  # said once, not every step
    assert _checks(caplog.text) == [(8, 29.0)], caplog.text
    assert caplog.text.count("the search ends at its knee") == 1, caplog.text
    # With nothing left to run, Tune ends a resumed search before its first step: its end says so instead.
    knee = KneeStop(KneeRule(patience=4, margin=0.9, every=4), None, BIKES, "mae")
    knee.set_state({"history": [(4, 0.5, 30.0), (8, 1.0, 29.0)], "stopped": True,
                    "finished": [f"t{i}" for i in range(8)], "elapsed": 60.0})
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="search"):
        knee.on_experiment_end([])
    assert _checks(caplog.text) == [(8, 29.0)] and "the search ends at its knee" in caplog.text, caplog.text
