"""The Tune function trainable: a thin wrapper around ``rnn_core.train.fit``.

It converts the trial config, resumes from ``tune.get_checkpoint()``, and turns ``on_epoch_end`` into
``tune.report(metrics, checkpoint=...)``. Data arrives once per worker through ``tune.with_parameters``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import ray
from ray import tune

from rnn_core.checkpoint import BUNDLE_FILE, load_bundle, save_bundle
from rnn_core.config import DataConfig, ModelConfig, TrainConfig
from rnn_core.settings import pick
from rnn_core.data import WindowData
from rnn_core.train import fit
from search.space import data_config

#: val_loss reported for a non-finite run: finite (Optuna and ASHA reject NaN), and worse than any real loss.
BAD_LOSS = 1e6


def configs_from_trial(config: dict[str, Any], data: WindowData, max_epochs: int, num_threads: int) -> tuple[ModelConfig, TrainConfig]:
    """A trial's flat config -> validated (ModelConfig, TrainConfig): each takes the keys that are its fields."""
    return (data.model_config(**pick(ModelConfig, config)),
            TrainConfig(max_epochs=max_epochs, num_threads=num_threads, **pick(TrainConfig, config)))


def trial_seed(config: dict[str, Any]) -> int:
    """The seed a trial trains with: the search's ``seed`` plus a hash of the trial's other settings.

    Trials that the searcher places close together still start from different weights and batch orders,
    which is what makes them worth combining in an ensemble. The searcher never sees it (it is not a
    searched dimension), and a search run again with the same ``--seed`` proposes the same settings, so
    its trials repeat exactly."""
    rest = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True, default=str)
    return int(config.get("seed", 0)) + zlib.crc32(rest.encode()) % 2**31


def train_forecaster(
    config: dict[str, Any],
    datasets: dict[DataConfig, WindowData],
    base: DataConfig,
    max_epochs: int,
    experiment: str = "",
    report_every: int = 1,
    checkpoint_every: int = 1,
    metric: str = "val_loss",
) -> None:
    """Train one trial. Reports every ``report_every`` epochs (and the last); a report carries a checkpoint
    of the full resumable state every ``checkpoint_every`` epochs, at every new best epoch (so that the
    best checkpoint always exists) and at the last epoch."""
    started_at = time.time()
    data = datasets[data_config(config, base)]  # built once on the driver, shared via the object store
    cpus = int(tune.get_context().get_trial_resources().required_resources.get("CPU", 1)) or 1
    trial_id = tune.get_context().get_trial_id()
    mcfg, tcfg = configs_from_trial(dict(config, seed=trial_seed(config)), data, max_epochs, num_threads=cpus)
    ckpt = tune.get_checkpoint()
    resume = None
    if ckpt is not None:
        with ckpt.as_directory() as d:
            resume = load_bundle(Path(d) / BUNDLE_FILE)
    node_id = ray.get_runtime_context().get_node_id()
    meta = {"experiment": experiment, "trial_id": trial_id}

    best_score = min((h[metric] for h in resume["history"] if math.isfinite(h[metric])), default=math.inf) if resume else math.inf

    def report(epoch: int, metrics: dict[str, Any], snapshot: Any) -> None:
        nonlocal best_score
        last = metrics["status"] != "running"
        new_best = math.isfinite(metrics[metric]) and metrics[metric] < best_score
        best_score = min(best_score, metrics[metric]) if new_best else best_score
        if not last and epoch % report_every and not new_best:
            return
        out = dict(metrics, node_id=node_id, resumed_from=resume["epoch"] if resume else 0, started_at=started_at,
                   setup_s=setup_s)
        for key in ("val_loss", "val_mae", "val_rmse", "best_val_loss"):
            if not math.isfinite(out[key]):
                out[key] = BAD_LOSS  # the trial ends here, seen by ASHA and Optuna as the worst
        # A checkpoint every N epochs, and always at a new best of the search metric and at the end, so
        # that the best epoch's checkpoint always exists.
        if not (last or epoch % checkpoint_every == 0 or new_best):
            tune.report(out)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save_bundle(Path(tmp) / BUNDLE_FILE, snapshot(), data, mcfg, tcfg, meta=meta)
            tune.report(out, checkpoint=tune.Checkpoint.from_directory(tmp))

    setup_s = time.time() - started_at  # data from the object store, configs, checkpoint restore
    fit(data, mcfg, tcfg, on_epoch_end=report, resume=resume)
