"""A search that ends at its knee: the ensemble the search would ship, chosen again as trials finish, and
the end of the search once its validation score has stopped improving.

Every ``every`` finished trials the driver chooses the ensemble from all finished trials' best checkpoints,
exactly as `rnn-search ensemble` would (rnn_core.ensemble: greedy selection, the standard post-processing
chain), and scores it by its own validation forecast. Each trial is forecast once, when it finishes; a check
is then a selection and one fit of the chain (seconds). The search ends (Tune's ``stop_all``: running trials
stop, their best checkpoints stay) once that score has not improved by ``margin`` (relative) over the last
``patience`` finished trials. The figures behind the defaults are in benchmarks/RESULTS.md (budget curves).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.stopper import Stopper

from rnn_core.checkpoint import BUNDLE_FILE, load_bundle
from rnn_core.config import ENSEMBLE_SIZE, Dataset
from rnn_core.ensemble import ENSEMBLE_SELECTION
from search.show import decimals

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KneeRule:
    """Stop once the ensemble's validation MAE has not fallen by ``margin`` (a fraction) below the score at the
    last gain for ``patience`` finished trials, judged every ``every`` finished trials. Small gains add up: two
    checks 0.6% better each are one gain of 1.2% against the score they started from (Keras' min_delta rule)."""

    patience: int
    margin: float
    every: int = 10

    def __post_init__(self) -> None:
        if self.patience < 1 or self.every < 1 or not 0 <= self.margin < 1:
            raise ValueError(f"knee rule {self}: expected patience and every >= 1 and a margin in [0, 1)")

    def stop_at(self, history: list[tuple[int, float]]) -> int | None:
        """history: (finished trials, ensemble validation MAE) at each check, in order -> the index of the check
        at which the search ends, or None while it goes on."""
        for i, ((n, _), since) in enumerate(zip(history, self.last_gains(history))):
            if n - since >= self.patience:
                return i
        return None

    def last_gains(self, history: list[tuple[int, float]]) -> list[int]:
        """The finished trials at the last gain above the margin, as of each check (where the clock restarted)."""
        ref, since, out = math.inf, 0, []  # ref: the score at the last gain
        for n, score in history:
            if score < ref * (1 - self.margin):
                ref, since = score, n  # a gain on the last one, however many small steps it took
            out.append(since)
        return out


def _best_checkpoint(trial: Trial) -> tuple[float, Any] | None:
    """(best score, checkpoint) of a trial, from Tune's own bookkeeping (ordered by the search metric)."""
    res = trial.run_metadata.checkpoint_manager.best_checkpoint_result
    if res is None:
        return None
    score = res.metrics.get(trial.run_metadata.checkpoint_manager.checkpoint_config.checkpoint_score_attribute)
    return (float(score), res.checkpoint) if isinstance(score, (int, float)) and math.isfinite(score) else None


#: The knee callbacks of this process by key: how a stopper finds its callback. Tune saves its stopper inside the
#: experiment state and restores a copy of it on resume, apart from the callbacks; the key survives that copy.
_LIVE: dict[str, "KneeStop"] = {}


class KneeStopper(Stopper):
    """Ends the search (Tune's ``stop_all``: running trials stop, their best checkpoints stay) once the knee
    callback of its key has decided."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        knee = _LIVE.get(self.key)
        return bool(knee and knee.stopped)


class KneeStop(tune.Callback):
    """The knee rule inside a search: a callback that chooses the ensemble as trials finish, and decides; its
    ``stopper`` ends the search. Its history is saved with Tune's experiment snapshots, so a resumed search keeps
    counting; the frame and the forecasts are rebuilt after a resume."""

    def __init__(self, rule: KneeRule, data_path: str | None, dataset: Dataset, loss: str,
                 size: int = ENSEMBLE_SIZE, selection: str = ENSEMBLE_SELECTION) -> None:
        self.rule, self.data_path, self.dataset = rule, data_path, dataset
        self.loss, self.size, self.selection = loss, size, selection
        self.history: list[tuple[int, float, float]] = []  # (finished trials, minutes into the search, val MAE)
        self.stopped = False
        self._finished: set[str] = set()
        self._start = time.time()
        self._resumed = False  # set by set_state: the first step of a resumed search catches up (_catch_up)
        self._frame: Any = None
        # trial id -> (best score, model, the validation origins [N] it was forecast at, those forecasts [N, H])
        self._cache: dict[str, tuple[float, Any, np.ndarray, np.ndarray]] = {}
        self.key = uuid.uuid4().hex
        self.stopper = KneeStopper(self.key)
        _LIVE[self.key] = self

    def __getstate__(self) -> dict[str, Any]:  # pickled into tuner.pkl: no data, no models
        return dict(self.__dict__, _frame=None, _cache={})

    def setup(self, **info: Any) -> None:  # at the start of every fit, a resumed one too (this object then unpickled)
        _LIVE[self.key] = self

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finished.add(trial.trial_id)
        if not self.stopped and len(self._finished) % self.rule.every == 0:
            self.check(trials)

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if self._resumed:
            self._resumed = False
            self._catch_up(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        # A resumed search with nothing left to run (every trial finished, the searcher done: a driver killed after
        # the knee was reached and saved) ends before its first step: catch up here, so it still says why it ended.
        self.on_step_begin(0, trials)

    def _catch_up(self, trials: list[Trial]) -> None:
        """The first step after a resume: the driver may have died between a trial's end and the next snapshot of
        this state, or just after the search reached its knee. Count the trials Tune restored as finished, run a
        check that fell due meanwhile, and say again that a search already at its knee ends there."""
        done = {t.trial_id for t in trials if t.status == Trial.TERMINATED}
        last = self.history[-1][0] if self.history else 0
        self._finished |= done
        if self.stopped and self.history:
            n, minutes, score = self.history[-1]
            log.info("ensemble of the %d finished trials: val MAE %s (checked before the resume)", n, _sig(score))
            self._announce(n, minutes)
        elif len(self._finished) // self.rule.every > last // self.rule.every:
            self.check(trials)

    def get_state(self) -> dict[str, Any] | None:
        return {"history": self.history, "stopped": self.stopped, "finished": sorted(self._finished),
                "elapsed": time.time() - self._start}

    def set_state(self, state: dict[str, Any]) -> None:
        self.history, self.stopped = [tuple(h) for h in state["history"]], state["stopped"]
        self._finished, self._start = set(state["finished"]), time.time() - state["elapsed"]
        self._resumed = True

    def check(self, trials: list[Trial]) -> float:
        """Choose the ensemble of the finished trials, record its validation MAE, and decide."""
        from rnn_core.ensemble import choose_from_forecasts

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the driver shares the machine with the trials
        try:
            models, F = self._candidates([t for t in trials if t.trial_id in self._finished])
            if not models:
                return math.nan
            score = choose_from_forecasts(models, F, self._frame, self.size, self.selection, self.loss).val_mae
        finally:
            torch.set_num_threads(threads)
        n, minutes = len(self._finished), (time.time() - self._start) / 60
        self.history.append((n, round(minutes, 2), score))
        best = min(h[2] for h in self.history)
        log.info("ensemble of the %d finished trials: val MAE %s (best %s); the search ends when %d more trials "
                 "bring no %.1f%% gain", n, _sig(score), _sig(best), self.rule.patience, 100 * self.rule.margin)
        i = self.rule.stop_at([(h[0], h[2]) for h in self.history])
        if i is not None:
            self.stopped = True
            self._announce(n, minutes)
        return score

    def _announce(self, n: int, minutes: float) -> None:
        best = min(h[2] for h in self.history)
        log.info("the search ends at its knee: its ensemble's validation MAE (%s) improved by less than %.1f%% "
                 "over the last %d finished trials (%d trials, %.1f min; --stop-patience 0 searches on)",
                 _sig(best), 100 * self.rule.margin, self.rule.patience, n, minutes)

    def _candidates(self, finished: list[Trial]) -> tuple[dict[str, Any], np.ndarray]:
        """The finished trials' best checkpoints as forecasters (best first; the naive forecasts after them) and their validation forecasts [M, N, H]; each trial is forecast once (again only when its
        validation hours differ from the best trial's: a user's series whose trials' windows differ in length)."""
        from rnn_core.data import load_frame
        from rnn_core.ensemble import validation_targets
        from rnn_core.forecaster import member_bundle, member_from_bundle, naive_bundles

        if self._frame is None:
            self._frame = load_frame(self.data_path, dataset=self.dataset)[0]
        for t in finished:
            best = _best_checkpoint(t)
            if best is None or (t.trial_id in self._cache and self._cache[t.trial_id][0] == best[0]):
                continue
            with best[1].as_directory() as d:
                model = member_from_bundle(member_bundle(load_bundle(f"{d}/{BUNDLE_FILE}")), t.trial_id)
            self._cache[t.trial_id] = (best[0], model, np.empty(0, np.int64), np.empty(0))
        ids = {t.trial_id for t in finished}
        models = {k: self._cache[k][1] for _, k in sorted((v[0], k) for k, v in self._cache.items() if k in ids)}
        if not models:
            return {}, np.empty(0)
        cfg = next(iter(models.values())).data_config  # the candidate policy: rnn_core.forecaster.naive_bundles
        models.update({n: member_from_bundle(b, n) for n, b in naive_bundles(cfg).items()})
        origins = validation_targets(models, self._frame)[0]  # those every candidate can forecast
        forecasts = []
        for name, model in models.items():
            score, _, done, F = self._cache.get(name, (math.nan, model, np.empty(0, np.int64), np.empty(0)))
            if not np.array_equal(done, origins):
                F = model.forecast(self._frame, origins)  # [N, H] target units
                if name in self._cache:
                    self._cache[name] = (score, model, origins, F)
            forecasts.append(F)
        return models, np.stack(forecasts)


__all__ = ["KneeRule", "KneeStop", "KneeStopper"]


def _sig(value: float) -> str:
    """A validation MAE in the target's units with >= 3 significant digits (a GW series' 0.0203, rentals' 20.32)."""
    return f"{value:.{decimals([value])}f}"
