"""CheckpointRetention: which checkpoints a search keeps, and that none is deleted while a saved experiment
state may still name it. Real Tune checkpoints on disk and real Trial objects; no Ray instance needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray import tune
from ray.tune.experiment import Trial

from search.retention import CheckpointRetention


def _checkpoint(root: Path, trial: Trial, index: int, val_loss: float) -> tune.Checkpoint:
    d = root / trial.trial_id / f"checkpoint_{index:06d}"
    d.mkdir(parents=True)
    (d / "model.pt").write_bytes(b"x")
    trial.update_last_result({"val_loss": val_loss, "epoch": index + 1})  # as Tune does before on_checkpoint
    return tune.Checkpoint.from_directory(str(d))


def _left(root: Path, trial: Trial) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in (root / trial.trial_id).iterdir())


def test_a_checkpoint_that_falls_out_waits_for_two_snapshots(tmp_path: Path) -> None:
    cb = CheckpointRetention(keep=1, metric="val_loss")
    trial = Trial("train_forecaster", config={}, stub=True)
    for i, loss in enumerate([2.0, 3.0]):
        cb.on_checkpoint(iteration=i, trials=[trial], trial=trial, checkpoint=_checkpoint(tmp_path, trial, i, loss))
    cb.get_state()  # snapshot 1: checkpoint 1 is the trial's latest, the one a resume would restore
    cb.on_checkpoint(iteration=2, trials=[trial], trial=trial, checkpoint=_checkpoint(tmp_path, trial, 2, 4.0))
    # 1 fell out (0 is the best, 2 the latest), but until a newer snapshot is surely on storage, snapshot 1
    # may be the state a resume reads
    assert _left(tmp_path, trial) == [0, 1, 2]
    cb.get_state()  # snapshot 2 is written after 1 fell out
    cb.get_state()  # snapshot 3: 2 was written, and its sync started, before this one
    assert _left(tmp_path, trial) == [0, 1, 2]
    cb.get_state()
    assert _left(tmp_path, trial) == [0, 2]


def test_keeps_the_best_n_and_the_latest_and_the_rest_goes_at_the_end(tmp_path: Path) -> None:
    cb = CheckpointRetention(keep=2, metric="val_loss")
    a, b = Trial("train_forecaster", config={}, stub=True), Trial("train_forecaster", config={}, stub=True)
    for i, (la, lb) in enumerate([(5.0, 1.0), (4.0, 1.0), (6.0, 2.0), (3.0, 9.0), (7.0, float("nan")), (8.0, 3.0)]):
        cb.on_checkpoint(iteration=i, trials=[a, b], trial=a, checkpoint=_checkpoint(tmp_path, a, i, la))
        cb.on_checkpoint(iteration=i, trials=[a, b], trial=b, checkpoint=_checkpoint(tmp_path, b, i, lb))
    assert len(_left(tmp_path, a)) == 6  # nothing deleted without snapshots
    cb.on_experiment_end(trials=[a, b])
    assert _left(tmp_path, a) == [1, 3, 5]  # 4.0 and 3.0 best, 8.0 latest
    assert _left(tmp_path, b) == [0, 1, 5]  # ties go to the earlier checkpoint; NaN never counts as best


def test_a_resumed_search_deletes_what_the_interrupted_one_left(tmp_path: Path) -> None:
    cb = CheckpointRetention(keep=1, metric="val_loss")
    trial = Trial("train_forecaster", config={}, stub=True)
    for i, loss in enumerate([1.0, 2.0, 3.0]):
        cb.on_checkpoint(iteration=i, trials=[trial], trial=trial, checkpoint=_checkpoint(tmp_path, trial, i, loss))
    state = cb.get_state()  # saved with the experiment state; then the driver dies
    resumed = CheckpointRetention(keep=1, metric="val_loss")
    resumed.set_state(state)
    resumed.on_experiment_end(trials=[trial])
    assert _left(tmp_path, trial) == [0, 2]


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keep=0"):
        CheckpointRetention(keep=0, metric="val_loss")
