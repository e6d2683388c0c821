"""Which trial checkpoints a search keeps, deleted only once no saved experiment state can ask for them.

Tune's own ``CheckpointConfig(num_to_keep, checkpoint_score_attribute)`` deletes a checkpoint the moment
a newer one pushes it out of the best N. The experiment state that ``--resume`` reads is saved only every
10 s or more, so for that long it can still name the deleted checkpoint as a running trial's latest one:
a driver killed then (a lost head node, Ctrl-C twice, an OOM kill) leaves a run whose trial cannot be
restored ("Could not recover from checkpoint as it does not exist on storage anymore"), and the resume
fails it. This happens whenever a trial has stopped improving, which is most of the time late in a trial.

So Tune keeps every checkpoint (``num_to_keep=None``) and this callback deletes them: the best N of each
trial by the search metric and its latest are kept, as before; any other is deleted only after two more
experiment snapshots have been written (by then the saved state names a newer latest checkpoint), and
the rest at the end of the experiment, after Tune's final snapshot. The callback learns of snapshots
through ``get_state``, which Tune calls while it saves one; its state is saved with them, so a resumed
search still deletes what the interrupted one had left to delete.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ray import tune
from ray.tune.experiment import Trial

log = logging.getLogger(__name__)


class CheckpointRetention(tune.Callback):
    """Keep each trial's ``keep`` best checkpoints by ``metric`` plus its latest; delete the others safely.

    ``delay``: experiment snapshots that must be written after a checkpoint falls out before it is deleted.
    """

    def __init__(self, keep: int, metric: str, mode: str = "min", delay: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep}: a trial keeps at least its best checkpoint")
        self.keep, self.metric, self.delay = keep, metric, delay
        self.sign = 1.0 if mode == "min" else -1.0
        # trial id -> [(signed score, arrival order, checkpoint)], the checkpoints still kept
        self._kept: dict[str, list[tuple[float, int, tune.Checkpoint]]] = {}
        self._doomed: list[tuple[int, tune.Checkpoint]] = []  # (snapshot count when it fell out, checkpoint)
        self._snapshots = 0
        self._arrivals = 0

    def on_checkpoint(self, iteration: int, trials: list[Trial], trial: Trial, checkpoint: tune.Checkpoint,
                      **info: Any) -> None:
        # Tune has updated trial.last_result with the result this checkpoint came with.
        score = (trial.last_result or {}).get(self.metric)
        signed = self.sign * float(score) if isinstance(score, (int, float)) and math.isfinite(score) else math.inf
        entries = self._kept.setdefault(trial.trial_id, [])
        entries.append((signed, self._arrivals, checkpoint))
        self._arrivals += 1
        # Ties go to the earlier checkpoint, as results.summarize picks the earliest best epoch.
        best = sorted(entries[:-1], key=lambda e: (e[0], e[1]))
        keep = best[: self.keep] + [entries[-1]]
        for _, _, ckpt in best[self.keep:]:
            self._doomed.append((self._snapshots, ckpt))
        self._kept[trial.trial_id] = sorted(keep, key=lambda e: e[1])

    def get_state(self) -> dict[str, Any] | None:
        # Called while Tune writes an experiment snapshot: the count tells how many have been written since a
        # checkpoint fell out.
        self._snapshots += 1
        self._delete(lambda fell_at: self._snapshots - fell_at > self.delay)
        return {"kept": self._kept, "doomed": self._doomed, "snapshots": self._snapshots, "arrivals": self._arrivals}

    def set_state(self, state: dict[str, Any]) -> None:
        self._kept, self._doomed = state["kept"], state["doomed"]
        self._snapshots, self._arrivals = state["snapshots"], state["arrivals"]

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        # Tune calls this after its final snapshot has been written and synced.
        self._delete(lambda fell_at: True)

    def _delete(self, due: Any) -> None:
        left = []
        for fell_at, ckpt in self._doomed:
            if not due(fell_at):
                left.append((fell_at, ckpt))
                continue
            try:
                ckpt.filesystem.delete_dir(ckpt.path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # a storage hiccup costs disk space, never the search
                log.warning("could not delete the superseded checkpoint %s: %s", ckpt.path, exc)
        self._doomed = left


__all__ = ["CheckpointRetention"]
