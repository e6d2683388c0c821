"""The run's Optuna study: a journal file in the run (a local working copy for s3:// and gs:// runs, keyed by the
run's id), the TPE searcher that tells it ASHA's stops as PRUNED, and its upload."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.search.optuna import OptunaSearch

from rnn_core.datasets import cache_dir
from search import storage
from search.meta import experiment_meta

log = logging.getLogger(__name__)


class AshaAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about trials ASHA stopped early.

    Ray's OptunaSearch tells every finished trial as COMPLETE with its last (truncated) loss, so TPE
    learns from low-budget losses as if they were final. Here a trial whose last report says it was
    still running (the scheduler stopped it) or that went non-finite is told as PRUNED; its
    intermediate values (val_loss per epoch) are already in the study. Trials that ended by
    themselves are COMPLETE with their best metric over all epochs (early stopping keeps those weights).
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        try:
            self._tell(trial_id, result, error)
        except OSError:
            raise  # the study's storage failed: the search stops (snapshot.StorageFault), not this trial
        except Exception as exc:  # noqa: BLE001 - an exception here would make Tune restart the trial
            log.warning("could not tell Optuna about trial %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)

    def _tell(self, trial_id: str, result: dict | None, error: bool) -> None:
        ot_trial = self._ot_trials[trial_id]
        status = (result or {}).get("status")
        if error or not result:
            state, value = optuna.trial.TrialState.FAIL, None
        elif status in ("early_stopped", "max_epochs"):
            # its best over all epochs (early stopping keeps those weights), not its last report
            seen = list(self._ot_study.trials[ot_trial.number].intermediate_values.values())
            state, value = optuna.trial.TrialState.COMPLETE, float(min([result[self.metric], *seen]))
        else:  # stopped by the scheduler mid-run, or non-finite
            state, value = optuna.trial.TrialState.PRUNED, None
            # Tune does not pass the result that made the scheduler stop a trial to on_trial_result:
            # record it, so the pruned trial carries all its intermediate values.
            step = int(result.get("training_iteration", result.get("epoch", 0)))
            if step and step not in self._ot_study.trials[ot_trial.number].intermediate_values:
                ot_trial.report(float(result[self.metric]), step)
        try:
            self._ot_study.tell(ot_trial, value, state=state)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - Optuna rejects e.g. a second tell; keep the search going
            log.warning("optuna tell for %s failed: %s", trial_id, exc)


STUDY_FILE = "optuna.journal"


def study_journal(path: str, run_id: str = "") -> Path:
    """The local journal file of an experiment's Optuna study (an Optuna JournalStorage).

    A local run keeps it inside the run. For a run on s3:// or gs:// it is a working copy in the cache at a
    path derived from the run's URI and its run id (stored in the run's metadata), so that a new run at a URI
    used before never starts from an old run's copy; it is uploaded into the run at every saved state and
    after every trial; --resume downloads it first.
    """
    if not storage.is_uri(path):
        return Path(path) / STUDY_FILE
    key = hashlib.sha256(f"{path}\n{run_id}".encode()).hexdigest()[:16]
    return cache_dir() / "studies" / f"{storage.name(path)}-{key}" / STUDY_FILE


def study_storage(journal: Path) -> optuna.storages.JournalStorage:
    """The Optuna storage of an experiment's study: its journal file (made, with its folder, if new)."""
    from optuna.storages.journal import JournalFileBackend

    journal.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))


def study_summary(path: str, journal: Path | None = None) -> str:
    """'N trials (C complete, P pruned), best V' of an experiment's study, from its journal (default: the run's
    own, or for a remote run its local working copy)."""
    journal = journal or study_journal(path, experiment_meta(path).get("run_id", ""))
    if not journal.is_file():
        return "no study"
    study = optuna.load_study(study_name=storage.name(path), storage=study_storage(journal))
    states = [t.state for t in study.trials]
    done = states.count(optuna.trial.TrialState.COMPLETE)
    best = f", best {study.best_value:.4f}" if done else ""
    return f"{len(states)} trials ({done} complete, {states.count(optuna.trial.TrialState.PRUNED)} pruned){best}"


class StudySync(tune.Callback):
    """Copies a remote run's study journal into the run when a trial finishes and at the end (for
    optuna-dashboard; what --resume needs is uploaded with every saved state, see search.snapshot)."""

    def __init__(self, path: str, journal: Path) -> None:
        self.path, self.journal = path, journal

    def upload(self) -> None:
        if storage.is_uri(self.path) and self.journal.is_file():
            storage.upload(self.journal, storage.join(self.path, STUDY_FILE))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.upload()

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.upload()


def download_journal(path: str, journal: Path) -> None:
    remote = storage.join(path, STUDY_FILE)
    if storage.exists(remote):
        journal.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            os.replace(storage.download(remote, tmp), journal)
