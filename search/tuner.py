"""The Tuner: OptunaSearch (TPE, ASHA-aware) + ASHA, resources per trial, storage, resume."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from rnn_core.config import DataConfig, UserError
from rnn_core.data import load
from search import space as spaces
from search.trainable import train_bikes

log = logging.getLogger(__name__)

METRIC, MODE = "val_loss", "min"  # the default search metric; see search_metric()


class SearchError(UserError):
    """A search that cannot start or resume; the message says what to do."""


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
        except Exception as exc:  # noqa: BLE001 - Optuna rejects e.g. a second tell; keep the search going
            log.warning("optuna tell for %s failed: %s", trial_id, exc)


@dataclass
class SearchOptions:
    """Everything `rnn-search tune` takes (see the CLI for help texts)."""

    preset: str = "quick"
    space_file: str | None = None
    num_samples: int | None = None
    max_concurrent: int = 0
    max_epochs: int | None = None
    grace_period: int | None = None
    """ASHA: epochs before a trial may be stopped (None: the preset's, see search.space.PRESETS)."""
    reduction_factor: float | None = None
    """ASHA: 1/N of the trials go on at each rung (None: the preset's)."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    storage: str = "./runs"
    name: str | None = None
    keep_checkpoints: int = 2
    max_failures: int = 2
    address: str | None = None
    data_path: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    """The windows every trial trains on; the space's data keys (sequence_size, ...) vary it per trial."""
    seed: int = 0
    report_every: int = 1
    """Report to Tune every N epochs (ASHA and the searcher see only reported epochs)."""
    checkpoint_every: int = 1
    """Attach a checkpoint every N epochs (and always at a new best epoch and the last one)."""
    reuse_actors: bool = True
    """Reuse trial actors: cuts per-trial start-up (benchmarks/tune_overhead.py, figures in RESULTS.md)."""
    searcher: str = "optuna-asha"
    """'optuna-asha' (ours), 'optuna' (Ray's stock OptunaSearch + ASHA) or 'random' (random + FIFO)."""
    wandb: str = "off"
    progress_interval_s: float = 15.0
    n_startup_trials: int | None = None
    """TPE's random start-up trials (default: a third of the trials, 3 to 10)."""
    metric: str | None = None
    """The search metric (min): val_loss, val_mae or val_rmse; default: see search_metric()."""
    time_budget_s: float | None = None
    """Stop the search after this many seconds (running trials stop; their best checkpoints stay)."""
    stop: Any = None
    """A Tune stopper for the whole run (benchmarks use one that caps the total epochs)."""
    callbacks: list[Any] = field(default_factory=list)
    """Extra Tune callbacks (tests use one to watch logical resources)."""


def storage_uri(storage: str) -> str:
    """Tune wants an absolute local path or a URI (s3://, gs://)."""
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def experiment_path(run: str, storage: str = "./runs") -> str:
    """RUN is a path to an experiment directory, or a run name under the storage."""
    if "://" in run:
        return run
    p = Path(run).expanduser()
    if p.is_dir() or "/" in run:  # a path (existing or not) rather than a run name
        return str(p.resolve())
    return storage_uri(storage).rstrip("/") + "/" + run


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join a cluster (``--address``) or start an embedded local Ray, quietly."""
    # Quiet Tune: our ProgressLine replaces its tables; the snapshot warning fires on every checkpoint.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)


def check_storage(storage: str) -> None:
    """A multi-node cluster needs shared storage: refuse a local path before any trial runs."""
    if "://" in storage:
        return
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) > 1 and not os.environ.get("RNN_SEARCH_SHARED_STORAGE"):
        raise SearchError(
            f"this Ray cluster has {len(alive)} nodes but --storage {storage} is a local path: trials on other "
            "nodes could not save their checkpoints there. Use --storage s3://BUCKET/PATH (or gs://), or, if "
            "this path is a shared filesystem mounted on every node, set RNN_SEARCH_SHARED_STORAGE=1."
        )


def trials_that_fit(opts: SearchOptions) -> int:
    """How many trials the cluster's current logical resources hold at once (at least 1)."""
    res = ray.cluster_resources()
    fit = res.get("CPU", 1) / opts.cpus_per_trial if opts.cpus_per_trial else math.inf
    if opts.gpus_per_trial:
        fit = min(fit, res.get("GPU", 0) / opts.gpus_per_trial)
    return max(1, int(fit + 1e-9)) if math.isfinite(fit) else 1


class ProgressLine(tune.Callback):
    """One concise line per interval (and when a trial ends) instead of Ray's tables."""

    def __init__(self, interval_s: float = 15.0, metric: str = METRIC) -> None:
        self.interval_s = interval_s
        self.metric = metric
        self._last = 0.0
        self._start = time.monotonic()
        self._best: tuple[float, str, int] | None = None

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        v = result.get(self.metric)
        if v is not None and (self._best is None or v < self._best[0]):
            self._best = (float(v), trial.trial_id, int(result.get("epoch", 0)))
            self._best_mae = result.get("val_mae")
        if time.monotonic() - self._last >= self.interval_s:
            self._line(trials)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._line(trials)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._line(trials)

    def _line(self, trials: list[Trial]) -> None:
        self._last = time.monotonic()
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        asha = sum(1 for t in trials if t.status == Trial.TERMINATED and (t.last_result or {}).get("status") == "running")
        best = (
            f" | best {self.metric} {self._best[0]:.4f} (val MAE {self._best_mae:.1f}) trial {self._best[1]} epoch {self._best[2]}"
            if self._best else ""
        )
        log.info(
            "[%5.0fs] %d trials: %d running, %d pending, %d done (%d stopped by ASHA), %d errored%s",
            time.monotonic() - self._start, len(trials), counts.get(Trial.RUNNING, 0), counts.get(Trial.PENDING, 0),
            counts.get(Trial.TERMINATED, 0), asha, counts.get(Trial.ERROR, 0), best,
        )


def search_metric(opts: SearchOptions, space: dict[str, Any]) -> str:
    """val_loss, unless trials compute it differently (a choice of target transform or loss): then the
    validation MAE in bikes per hour, the one score every trial shares."""
    if opts.metric:
        return opts.metric
    varies = any(isinstance(space.get(k), tune.search.sample.Domain) for k in ("target_transform", "loss"))
    return "val_mae" if varies else METRIC


def _searcher(opts: SearchOptions, space: dict[str, Any], num_samples: int, metric: str) -> Any:
    if opts.searcher == "random" or spaces.is_fixed(space):
        return None  # Tune's default BasicVariantGenerator: random sampling (or the one fixed config)
    # TPE samples at random for its first n_startup_trials (Optuna's default 10): with 8 trials it would
    # never model anything, so small searches start modelling after a third of their trials.
    startup = opts.n_startup_trials or min(10, max(3, num_samples // 3))
    sampler = optuna.samplers.TPESampler(seed=opts.seed, n_startup_trials=startup)
    cls = AshaAwareOptunaSearch if opts.searcher == "optuna-asha" else OptunaSearch
    alg = cls(sampler=sampler, metric=metric, mode=MODE)
    return ConcurrencyLimiter(alg, max_concurrent=opts.max_concurrent) if opts.max_concurrent else alg


def build_trainable(opts: SearchOptions, space: dict[str, Any], max_epochs: int, name: str, metric: str = METRIC) -> Any:
    """Load the data ONCE on the driver (one BikeData per data variant of the space) and bind it with with_parameters."""
    datasets = {}
    for cfg in spaces.data_variants(space, opts.data):
        data = load(cfg, opts.data_path)
        datasets[cfg] = data
        log.info("data: %s; L=%d, target %s, lags %s: windows train/val/test = %s", data.source, cfg.sequence_size,
                 cfg.target_transform, list(cfg.seasonal_lags) or "none", "/".join(str(len(s)) for s in data.splits.values()))
    trainable = tune.with_parameters(train_bikes, datasets=datasets, base=opts.data, max_epochs=max_epochs,
                                     experiment=name, report_every=opts.report_every,
                                     checkpoint_every=opts.checkpoint_every, metric=metric)
    return tune.with_resources(trainable, {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})


def _callbacks(opts: SearchOptions, name: str, metric: str) -> list[Any]:
    cbs: list[Any] = [ProgressLine(opts.progress_interval_s, metric), *opts.callbacks]
    if opts.wandb != "off":
        from ray.air.integrations.wandb import WandbLoggerCallback

        cbs.append(WandbLoggerCallback(project="rnn-search", group=name, mode=opts.wandb, excludes=["node_id"]))
    return cbs


def run_search(opts: SearchOptions) -> tuple[tune.ResultGrid, str]:
    """Run a new search. Returns the results and the experiment path."""
    space = spaces.build_space(opts.preset, opts.space_file, seed=opts.seed)  # errors before Ray starts
    budget = spaces.preset(opts.preset)
    num_samples = opts.num_samples or (1 if spaces.is_fixed(space) else budget.trials)
    max_epochs = opts.max_epochs or budget.max_epochs
    grace = min(budget.grace_period, max_epochs) if opts.grace_period is None else opts.grace_period
    reduction = budget.reduction_factor if opts.reduction_factor is None else opts.reduction_factor
    if not 1 <= grace <= max_epochs:
        raise SearchError(f"--grace-period {grace}: expected 1 to --max-epochs ({max_epochs})")
    if reduction <= 1:
        raise SearchError(f"--reduction-factor {reduction:g}: expected a number above 1 (2 keeps half the trials at each rung)")
    name = opts.name or time.strftime(f"{opts.preset}-%Y%m%d-%H%M%S")
    path = storage_uri(opts.storage).rstrip("/") + "/" + name
    init_ray(opts.address)
    if opts.address:
        check_storage(opts.storage)
    metric = search_metric(opts, space)
    trainable = build_trainable(opts, space, max_epochs, name, metric)
    write_experiment_meta(path, opts, max_epochs, metric)
    if not opts.max_concurrent:
        # Without a limit Tune starts one searcher trial at a time; allow as many as the cluster holds now.
        opts = dataclasses.replace(opts, max_concurrent=trials_that_fit(opts))
    if opts.searcher == "random":
        scheduler: Any = tune.schedulers.FIFOScheduler()
    else:
        scheduler = ASHAScheduler(
            time_attr="epoch", max_t=max_epochs, grace_period=grace, reduction_factor=reduction
        )
    search_alg = _searcher(opts, space, num_samples, metric)
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=metric, mode=MODE, search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
            # a searcher is limited by its ConcurrencyLimiter; random search by Tune itself
            max_concurrent_trials=None if search_alg is not None else (opts.max_concurrent or None),
            reuse_actors=opts.reuse_actors, time_budget_s=opts.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_uri(opts.storage),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=opts.keep_checkpoints, checkpoint_score_attribute=metric, checkpoint_score_order=MODE
            ),
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            stop=opts.stop,
            callbacks=_callbacks(opts, name, metric),
            verbose=0,
        ),
    )
    log.info("search %s: preset %s, %d trials x <= %d epochs (ASHA grace %d, reduction %g), %s per trial, storage %s",
             name, opts.preset, num_samples, max_epochs, grace, reduction,
             f"{opts.cpus_per_trial:g} CPU" + (f" + {opts.gpus_per_trial:g} GPU" if opts.gpus_per_trial else ""),
             storage_uri(opts.storage))
    return tuner.fit(), path


def resume_search(run: str, opts: SearchOptions) -> tuple[tune.ResultGrid, str]:
    """Continue an interrupted experiment (unfinished and errored trials; finished ones are kept)."""
    path = experiment_path(run, opts.storage)
    if "://" not in path and not (Path(path) / "tuner.pkl").is_file():
        raise SearchError(f"{path}: not a resumable experiment (no tuner.pkl); give a run name under "
                          f"--storage {opts.storage} or the experiment's path")
    init_ray(opts.address)
    # The trainable is rebuilt with the same data as the original run: read its param_space back.
    if not tune.Tuner.can_restore(path):
        raise SearchError(f"{path}: Tune cannot restore this experiment")
    meta = _experiment_meta(path)
    space = spaces.build_space(meta["preset"], meta.get("space_file"), seed=meta["seed"])
    keys = ("preset", "data_path", "report_every", "checkpoint_every")
    opts = dataclasses.replace(opts, data=DataConfig.from_dict(meta["data"]), **{k: meta[k] for k in keys})
    trainable = build_trainable(opts, space, meta["max_epochs"], Path(path).name, meta.get("metric", METRIC))
    tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    log.info("resuming %s", path)
    return tuner.fit(), path


META_FILE = "rnn_search.json"


def write_experiment_meta(path: str, opts: SearchOptions, max_epochs: int, metric: str = METRIC) -> None:
    """Record how the experiment was made, so --resume can rebuild the same trainable."""
    import json

    if "://" in path:
        return
    Path(path).mkdir(parents=True, exist_ok=True)
    meta = {"preset": opts.preset, "space_file": opts.space_file, "seed": opts.seed, "data": opts.data.to_dict(),
            "data_path": opts.data_path, "max_epochs": max_epochs, "report_every": opts.report_every,
            "checkpoint_every": opts.checkpoint_every, "metric": metric}
    (Path(path) / META_FILE).write_text(json.dumps(meta, indent=1))


def experiment_metric(path: str) -> str:
    """The metric an experiment was searched on (from its rnn_search.json; val_loss if unknown)."""
    try:
        return str(_experiment_meta(path).get("metric", METRIC))
    except SearchError:
        return METRIC


def _experiment_meta(path: str) -> dict[str, Any]:
    import json

    f = Path(path) / META_FILE
    if not f.is_file():
        raise SearchError(f"{path}: no {META_FILE}; it was not made by rnn-search tune")
    return json.loads(f.read_text())


__all__ = ["AshaAwareOptunaSearch", "SearchError", "SearchOptions", "run_search", "resume_search"]
