"""The Tuner: the search options, the searcher (search.study) and ASHA, resources per trial, the callbacks, the
run and its resume. The Ray connection is search.connection, the study search.study, the record search.meta."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from rnn_core.config import COUNT_TRANSFORMS, DataConfig
from rnn_core.errors import first_line
from rnn_core.data import WindowData, load
from search.show import decimals
from search import space as spaces
from search import snapshot, storage
from search.connection import check_shared, init_ray
from search.errors import SearchError
from search.options import SearchOptions
from search.meta import METRIC, MODE, data_file, experiment_meta, write_experiment_meta
from search.runlock import RunLock
from search.study import AshaAwareOptunaSearch, StudySync, download_journal, study_journal, study_storage, study_summary
from search.history import CsvHistory, JsonHistory
from search.retention import CheckpointRetention
from search.trainable import train_forecaster

#: Tune names each trial's folder after its trainable: train_forecaster_<trial id>_...
TRIAL_PREFIX = train_forecaster.__name__

log = logging.getLogger(__name__)



class SearchInterrupted(KeyboardInterrupt):
    """The search was stopped (Ctrl-C, SIGINT/SIGUSR1) before it finished; its saved state resumes it."""

    def __init__(self, path: str) -> None:
        super().__init__(f"interrupted: rnn-search tune --resume {storage.name(path)} "
                         f"--storage {snapshot.posix_parent(path)} continues it")


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
        self._text = ""

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
        best = ""
        if self._best:  # values in the target's units with >= 3 significant digits (a GW series' 0.0376, rentals' 41.23)
            v, mae = self._best[0], self._best_mae if self._best_mae is not None else float("nan")
            also = f" (val MAE {mae:.{decimals([mae])}f})" if self.metric != "val_mae" else ""
            best = f" | best {self.metric} {v:.{decimals([v])}f}{also} trial {self._best[1]} epoch {self._best[2]}"
        line = "[%5.0fs] %d trials: %d running, %d pending, %d done (%d stopped by ASHA), %d errored%s" % (
            time.monotonic() - self._start, len(trials), counts.get(Trial.RUNNING, 0), counts.get(Trial.PENDING, 0),
            counts.get(Trial.TERMINATED, 0), asha, counts.get(Trial.ERROR, 0), best)
        if line != self._text:  # a trial's last result and its end come in one step: one line, not the same twice
            self._text = line
            log.info("%s", line)


def search_metric(opts: SearchOptions, space: dict[str, Any]) -> str:
    """val_loss, unless trials compute it differently (a choice of target transform, change target or loss): then the
    validation MAE in the target's units, the one score every trial shares."""
    if opts.metric:
        return opts.metric
    varies = any(isinstance(space.get(k), tune.search.sample.Domain) for k in ("target_transform", "target_form", "loss"))
    return "val_mae" if varies else METRIC


class StorageFaults(tune.Callback):
    """Ends the search at the first trial that failed because the run's storage did (full, read-only): its
    retries would fail the same way and burn its --max-failures. The saved state resumes it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._check(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._check(trial)

    def _check(self, trial: Trial) -> None:
        try:
            text = Path(trial.error_file).read_text(errors="replace") if trial.error_file else ""
        except OSError:
            text = ""
        why = snapshot.storage_fault(text)
        if why:
            raise snapshot.StorageFault(snapshot.fault_message(self.path, why))


def _searcher(opts: SearchOptions, space: dict[str, Any], num_samples: int, metric: str, path: str,
              journal: Path) -> snapshot.SnapshotSearchGenerator | snapshot.SnapshotVariantGenerator:
    """The search algorithm, one that snapshots the run after each of Tune's saves (search.snapshot)."""
    if opts.searcher == "random" or spaces.is_fixed(space):
        # Tune's BasicVariantGenerator: random sampling (or the one fixed config)
        return snapshot.SnapshotVariantGenerator(max_concurrent=opts.max_concurrent or 0)
    # TPE samples at random for its first n_startup_trials (Optuna's default 10): with 8 trials it would
    # never model anything, so small searches start modelling after a third of their trials.
    startup = opts.n_startup_trials or min(10, max(3, num_samples // 3))
    sampler = optuna.samplers.TPESampler(seed=opts.seed, n_startup_trials=startup)
    cls = AshaAwareOptunaSearch if opts.searcher == "optuna-asha" else OptunaSearch
    # A durable study: optuna-dashboard reads it, --resume continues it.
    alg = cls(sampler=sampler, metric=metric, mode=MODE, study_name=storage.name(path), storage=study_storage(journal))
    return snapshot.SnapshotSearchGenerator(ConcurrencyLimiter(alg, max_concurrent=opts.max_concurrent)
                                            if opts.max_concurrent else alg)


def load_datasets(opts: SearchOptions, space: dict[str, Any]) -> dict[DataConfig, WindowData]:
    """Every data variant the space can ask for, built ONCE on the driver (before Ray starts: a data error
    needs no Ray)."""
    datasets = {}
    for cfg in spaces.data_variants(space, opts.data):
        data = load(cfg, opts.data_path)
        datasets[cfg] = data
        log.info("data: %s; L=%d, target %s, lags %s: windows train/val/test = %s", data.source, cfg.sequence_size,
                 cfg.target_transform + ("" if cfg.target_form == "level" else f" ({cfg.target_form})"), list(cfg.seasonal_lags) or "none", "/".join(str(len(s)) for s in data.splits.values()))
    return datasets


def build_trainable(opts: SearchOptions, datasets: dict[DataConfig, WindowData], max_epochs: int, name: str,
                    metric: str = METRIC) -> Any:
    """The trainable with the data bound through with_parameters (the object store), and its resources."""
    trainable = tune.with_parameters(train_forecaster, datasets=datasets, base=opts.data, max_epochs=max_epochs,
                                     experiment=name, report_every=opts.report_every,
                                     checkpoint_every=opts.checkpoint_every, metric=metric)
    return tune.with_resources(trainable, {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})


def check_wandb(mode: str) -> None:
    """Refuse W&B settings that would fail inside the search, before anything is written.

    Offline runs need no key; Ray's WandbLoggerCallback tells that from WANDB_MODE alone, so it is set here.
    """
    if mode == "offline":
        os.environ["WANDB_MODE"] = "offline"
    elif mode == "online" and not os.environ.get("WANDB_API_KEY"):
        import wandb

        if not wandb.api.api_key:
            raise SearchError("--wandb online needs a W&B API key: run `wandb login` or set WANDB_API_KEY "
                              "(or use --wandb offline, which needs none)")


def _callbacks(opts: SearchOptions, path: str, metric: str, journal: Path) -> list[Any]:
    name = storage.name(path)
    cbs: list[Any] = [JsonHistory(), CsvHistory(),  # in place of Tune's own (search.history says why)
                      ProgressLine(opts.progress_interval_s, metric), StudySync(path, journal), StorageFaults(path),
                      CheckpointRetention(opts.keep_checkpoints, metric, MODE), *opts.callbacks]
    if opts.wandb != "off":
        from ray.air.integrations.wandb import WandbLoggerCallback

        cbs.append(WandbLoggerCallback(project="rnn-search", group=name, mode=opts.wandb, excludes=["node_id"]))
    return cbs


def preset_data(opts: SearchOptions, settings: dict[str, Any]) -> DataConfig:
    """The search's DataConfig with the preset's data settings (day-ahead: horizon 24; default: 4 validation
    windows) where the command line left the default; one the other settings rule out (4 windows on the
    lecture split) is left out, with a note."""
    data, defaults = opts.data, DataConfig()
    for k, v in settings.items():
        if k in opts.data_given or getattr(data, k) != getattr(defaults, k):
            continue
        try:
            data = dataclasses.replace(data, **{k: v})
        except ValueError as exc:
            log.info("the preset's %s=%s does not apply here (%s)", k, v, exc)
    return data


#: On resume the recorded data config is the run's own: nothing of it is chosen again.
DATA_GIVEN_ON_RESUME = ("target_transform", "val_windows")


def fit_to_dataset(opts: SearchOptions, space: dict[str, Any]) -> tuple[SearchOptions, dict[str, Any]]:
    """A search on a user's series: its description with what the file tells (the frequency), a target transform
    that fits the target (log1p for counts, else standardising: a preset's log1p or sqrt is replaced, with a note; a
    --space or --target-transform that asks either of negative values is refused when the data is built), and one
    validation window unless --val-windows is given (a preset's year-spread windows assume a long series)."""
    ds = opts.data.dataset
    from rnn_core.data import read_frame
    from rnn_core.series import suited_transform

    frame, _, _, _, resolved = read_frame(opts.data_path, ds)
    suited, data = suited_transform(frame, resolved), dataclasses.replace(opts.data, dataset=resolved)
    if "target_transform" not in opts.data_given and data.target_transform != suited:
        data = dataclasses.replace(data, target_transform=suited)
    preset_transform = space.get("target_transform")
    if preset_transform in COUNT_TRANSFORMS and suited not in COUNT_TRANSFORMS and not opts.space_file:
        log.info("target %s is not a count (negative or fractional values): the preset's %s target transform is "
                 "replaced by %s", ds.target, preset_transform, suited)
        space = dict(space, target_transform=suited)
    span, year = frame.index.max() - frame.index.min(), pd.Timedelta(days=365)
    # the default split's validation period is the tenth before the test tenth; several windows of it spread
    # over the year before the test period need it to be at most a year long (rnn_core.data.split_origins)
    val = pd.Timestamp(data.test_start) - pd.Timestamp(data.val_start) if data.split == "custom" else span / 10
    if "val_windows" not in opts.data_given and data.val_windows != 1 and (span < 2 * year or val > year):
        log.info("one validation window: the preset's %d, spread over the year before the test period, need two years "
                 "of data and a validation period of at most a year; this series covers %d days, its validation "
                 "period %d days (give --val-windows to choose)", data.val_windows, span.days, val.days)
        data = dataclasses.replace(data, val_windows=1)
    return dataclasses.replace(opts, data=data), space


def _asha_settings(opts: SearchOptions, budget: Any) -> tuple[int, int, float]:
    """(max epochs, grace period, reduction factor): the options' or the preset's, checked."""
    max_epochs = opts.max_epochs or budget.max_epochs
    grace = min(budget.grace_period, max_epochs) if opts.grace_period is None else opts.grace_period
    reduction = budget.reduction_factor if opts.reduction_factor is None else opts.reduction_factor
    if not 1 <= grace <= max_epochs:
        raise SearchError(f"--grace-period {grace}: expected 1 to --max-epochs ({max_epochs})")
    return max_epochs, grace, reduction


def knee_stop(opts: SearchOptions, budget: Any, metric: str) -> Any:
    """The knee rule's callback and stopper (search.knee) for the options or the preset, or None when it is off."""
    patience = budget.stop_patience if opts.stop_patience is None else opts.stop_patience
    margin = budget.stop_margin if opts.stop_margin is None else opts.stop_margin
    if not patience:
        return None
    from search.knee import KneeRule, KneeStop
    from search.results import calibration_loss

    return KneeStop(KneeRule(patience, margin / 100, opts.stop_every), opts.data_path, opts.data.dataset, calibration_loss(metric))


def _run_config(opts: SearchOptions, name: str, path: str, metric: str, journal: Any, knee: Any) -> tune.RunConfig:
    """A new search's run config: storage, checkpoints, failures, its stoppers and callbacks."""
    return tune.RunConfig(
        name=name,
        storage_path=opts.storage,
        # Tune keeps every checkpoint; CheckpointRetention (in the callbacks) deletes those beyond the best
        # --keep-checkpoints once no saved experiment state can still name them (see search/retention.py).
        checkpoint_config=tune.CheckpointConfig(checkpoint_score_attribute=metric, checkpoint_score_order=MODE),
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        # the options' stopper (benchmarks cap the epochs) and the knee rule's: Tune combines a list of stoppers
        stop=[s for s in (opts.stop, knee.stopper if knee else None) if s is not None] or None,
        callbacks=_callbacks(opts, path, metric, journal) + ([knee] if knee else []),
        verbose=0,
    )


def run_search(opts: SearchOptions) -> tuple[tune.ResultGrid, str]:
    """Run a new search. Returns the results and the experiment path."""
    space = spaces.build_space(opts.preset, opts.space_file, seed=opts.seed)  # errors before Ray starts
    budget = spaces.preset(opts.preset)
    num_samples = opts.num_samples or (1 if spaces.is_fixed(space) else budget.trials)
    max_epochs, grace, reduction = _asha_settings(opts, budget)
    check_wandb(opts.wandb)
    name = opts.name or time.strftime(f"{opts.preset}-%Y%m%d-%H%M%S")
    opts, space = fit_to_dataset(dataclasses.replace(opts, data=preset_data(opts, budget.data), storage=storage.resolve(
        opts.storage), data_path=data_file(opts.data_path)), space)
    path = storage.join(opts.storage, name)
    if storage.is_uri(opts.storage):
        storage.check_writable(opts.storage)  # a missing bucket or wrong credentials: one line, before Ray
    lock = RunLock(path, new_run=True)
    lock.refuse_existing()  # a run name belongs to one run: a clash is refused before the data is read or Ray starts
    datasets = load_datasets(opts, space)
    init_ray(opts.address)
    check_shared(opts.storage)
    with lock:  # held until the search ends; two searches cannot write one run
        metric = search_metric(opts, space)
        trainable = build_trainable(opts, datasets, max_epochs, name, metric)
        knee = knee_stop(opts, budget, metric)
        run_id = uuid.uuid4().hex
        journal = study_journal(path, run_id)
        write_experiment_meta(path, {
            "preset": opts.preset, "space_file": opts.space_file, "seed": opts.seed, "data": opts.data.to_dict(),
            "space_entries": spaces.read_yaml(opts.space_file) if opts.space_file else {},
            "data_path": opts.data_path, "max_epochs": max_epochs, "report_every": opts.report_every,
            "checkpoint_every": opts.checkpoint_every, "metric": metric, "run_id": run_id})
        if opts.wandb == "offline":
            log.info("W&B offline runs go to %s/<trial>/wandb/offline-run-*; upload them later with `wandb sync DIR`", path)
        if not opts.max_concurrent:
            # Without a limit Tune starts one searcher trial at a time; allow as many as the cluster holds now.
            opts = dataclasses.replace(opts, max_concurrent=trials_that_fit(opts))
        scheduler = (tune.schedulers.FIFOScheduler() if opts.searcher == "random" else
                     ASHAScheduler(time_attr="epoch", max_t=max_epochs, grace_period=grace, reduction_factor=reduction))
        search_alg = _searcher(opts, space, num_samples, metric, path, journal)
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=metric, mode=MODE, search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
                reuse_actors=opts.reuse_actors, time_budget_s=opts.time_budget_s,
            ),
            run_config=_run_config(opts, name, path, metric, journal, knee),
        )
        log.info("search %s: preset %s, %d trials x <= %d epochs (ASHA grace %d, reduction %g), %s per trial, storage %s",
                 name, opts.preset, num_samples, max_epochs, grace, reduction,
                 f"{opts.cpus_per_trial:g} CPU" + (f" + {opts.gpus_per_trial:g} GPU" if opts.gpus_per_trial else ""),
                 opts.storage)
        if knee:
            log.info("the search ends by itself once its ensemble's validation MAE gains less than %g%% over %d finished "
                     "trials (--stop-patience, --stop-margin)%s", 100 * knee.rule.margin, knee.rule.patience,
                     f", or after {opts.time_budget_min:g} min" if opts.time_budget_min else "")
        search_alg.bind(path, journal, lock.heartbeat)
        return fit(tuner, search_alg, path), path


def fit(tuner: tune.Tuner, alg: Any, path: str) -> tune.ResultGrid:
    """tuner.fit(), with its endings told apart: a storage fault (StorageFault, one line), an interruption
    (SearchInterrupted: Ctrl-C, a signal) or a finished search (its results, errored trials included)."""
    try:
        grid = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C while Tune saved its state
        raise SearchInterrupted(path) from None
    except Exception as exc:
        why = getattr(alg, "fault", None) or snapshot.storage_fault(exc)
        if why:
            raise snapshot.StorageFault(snapshot.fault_message(path, why)) from None
        raise
    if getattr(alg, "fault", None):  # Tune's last save failed (it logs and returns)
        raise snapshot.StorageFault(snapshot.fault_message(path, alg.fault))
    unfinished = [t for t in grid._experiment_analysis.trials if t.status not in (Trial.TERMINATED, Trial.ERROR)]
    if unfinished or not alg.is_finished():  # Tune ends its loop on SIGINT and returns as if done
        raise SearchInterrupted(path)
    return grid


#: Ray versions whose restored Tuner the resume reaches into (tests/test_tune.py's resume tests cover them; the
#: pyproject's ray range matches).
RAY_RANGE = ((2, 50), (2, 61))


def restored_parts(tuner: tune.Tuner) -> tuple[Any, list[Any]]:
    """The search algorithm and the callbacks a restored Tuner unpickled from the run. Ray has no public way to them
    (Tuner.restore takes neither a new searcher nor new callbacks, and only it resumes the trials), so this is the one
    place that reads Ray's private attributes, for the pinned range RAY_RANGE; elsewhere it fails in one line."""
    try:
        local = tuner._local_tuner
        return local._tune_config.search_alg, list(local.get_run_config().callbacks or [])
    except AttributeError:
        (lo, hi), version = RAY_RANGE, ray.__version__
        raise SearchError(f"ray {version}: its Tuner.restore is not one this version resumes with (ray {lo[0]}.{lo[1]} "
                          f"to below {hi[0]}.{hi[1]}); install a ray in that range to resume") from None


def drop_empty_trial_folders(path: str) -> None:
    """A run killed (or stopped by a full disk) while trials were starting leaves their folders empty, and its saved
    state may not name them: on resume, a trial folder with nothing in it is removed (nothing is lost: a restored trial
    makes its folder again). A bucket has no empty folders."""
    if storage.is_uri(path):
        return
    for d in Path(path).glob(f"{TRIAL_PREFIX}_*"):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
            log.info("removed %s: a trial folder left empty by the interrupted run", d.name)


def resume_search(run: str, opts: SearchOptions) -> tuple[tune.ResultGrid, str]:
    """Continue an interrupted experiment (unfinished and errored trials; finished ones are kept)."""
    path = storage.experiment_path(run, opts.storage)
    if not storage.exists(storage.join(path, "tuner.pkl")):
        raise SearchError(f"{path}: not a resumable experiment (no tuner.pkl); give a run name under "
                          f"--storage {opts.storage} or the experiment's path")
    meta = experiment_meta(path)
    # the space file's entries as the run recorded them (a run before they were recorded reads the file again)
    space = spaces.build_space(meta["preset"], meta.get("space_file"), seed=meta["seed"],
                               recorded=meta.get("space_entries"))
    keys = ("preset", "report_every", "checkpoint_every")
    # an explicit --data wins over the recorded path (the run moved to a machine where the file lies elsewhere)
    opts = dataclasses.replace(opts, data=DataConfig.from_dict(meta["data"]), **{k: meta[k] for k in keys},
                               data_path=data_file(opts.data_path) or meta["data_path"])
    opts, space = fit_to_dataset(dataclasses.replace(opts, data_given=frozenset(DATA_GIVEN_ON_RESUME)), space)
    journal = study_journal(path, meta.get("run_id", ""))
    with RunLock(path, new_run=False) as lock:  # a run in use is refused before the data is read or Ray starts
        datasets = load_datasets(opts, space)  # the same data as the original run
        if not snapshot.restore(path, journal) and storage.is_uri(path):
            download_journal(path, journal)  # a run saved before its first snapshot
        drop_empty_trial_folders(path)
        init_ray(opts.address)
        if not tune.Tuner.can_restore(path):
            raise SearchError(f"{path}: Tune cannot restore this experiment")
        trainable = build_trainable(opts, datasets, meta["max_epochs"], storage.name(path), meta.get("metric", METRIC))
        log.info("resuming %s; its Optuna study: %s", path, study_summary(path, journal))
        try:
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
        except (ValueError, RuntimeError, OSError) as exc:
            raise SearchError(f"{path}: Tune cannot restore this experiment: {first_line(exc)}") from None
        alg, callbacks = restored_parts(tuner)  # restored from the run: bind them to this run again
        from search.knee import KneeStop

        for cb in callbacks:
            if isinstance(cb, KneeStop):  # the knee rule reads the data where this machine has it
                cb.data_path = opts.data_path
        alg.bind(path, journal, lock.heartbeat)
        results = fit(tuner, alg, path)
        StudySync(path, journal).upload()
        log.info("study after the resume: %s", study_summary(path, journal))
        return results, path


__all__ = ["SearchInterrupted", "SearchOptions", "run_search", "resume_search"]
