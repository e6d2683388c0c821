"""Reading an experiment back: per-trial summaries, the best trial over ALL epochs, its BEST checkpoint."""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import ExperimentAnalysis, ResultGrid

from rnn_core.checkpoint import BUNDLE_FILE, load_bundle, model_from_bundle, write_bundle
from rnn_core.config import CORRECTION_WINDOW, ENSEMBLE_SELECTION, ENSEMBLE_SIZE, LEVEL_WINDOW, UserError
from rnn_core.metrics import mae, rmse
from search import storage
from search.tuner import MODE, SearchError, experiment_meta, experiment_metric

log = logging.getLogger(__name__)

STOP_REASONS = {"early_stopped": "early stopping", "max_epochs": "max epochs", "non_finite": "non-finite loss"}


class ResultsError(UserError):
    """An experiment that cannot be read or has nothing to report; the message says why."""


@dataclass
class TrialSummary:
    trial_id: str
    metric: str
    best_score: float
    config: dict[str, Any]
    best_epoch: int
    best_val_loss: float
    best_val_mae: float
    best_val_rmse: float
    epochs: int
    stop_reason: str
    checkpoint: str | None
    nodes: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "history"}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def load_experiment(run: str, where: str | None = None) -> tuple[ExperimentAnalysis, ResultGrid, str]:
    """Read an experiment (finished or still running) from its storage, local or s3:// / gs://."""
    path = storage.experiment_path(run, where)
    if not storage.exists(path):
        raise ResultsError(f"unknown run {run!r}: {path} does not exist (give a run name under --storage "
                           f"{storage.resolve(where)}, or the experiment's path or URI)")
    try:
        ea = ExperimentAnalysis(path, default_metric=experiment_metric(path), default_mode=MODE)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise ResultsError(f"{path} is not a Tune experiment directory ({str(exc).splitlines()[0]})") from None
    return ea, ResultGrid(ea), path


def summarize(ea: ExperimentAnalysis, grid: ResultGrid, path: str | None = None) -> list[TrialSummary]:
    """One summary per trial with at least one report, best first (min of the search metric over all epochs).

    ``path``: the experiment's location as given (a URI keeps its scheme in the checkpoint locations)."""
    metric = ea.default_metric or "val_loss"  # the experiment's own search metric
    out = []
    status_by_id = {t.trial_id: t.status for t in ea.trials}
    for res in grid:
        df = res.metrics_dataframe
        if df is None or df.empty or metric not in df:
            continue
        best = df.loc[df[metric].idxmin()]
        last = df.iloc[-1]
        tid = str(last["trial_id"])
        status = str(last.get("status", ""))
        if res.error is not None or status_by_id.get(tid) == "ERROR":
            reason = "error"
        elif status in STOP_REASONS:
            reason = STOP_REASONS[status]
        elif status_by_id.get(tid) == "TERMINATED":
            reason = "ASHA"
        else:
            reason = "running"
        ckpt = None
        best_ckpts = [(c, m) for c, m in (res.best_checkpoints or []) if m.get(metric) is not None]
        if best_ckpts:
            c, _ = min(best_ckpts, key=lambda cm: (cm[1][metric], cm[1].get("epoch", 0)))
            ckpt = storage.location_of(path or ea.experiment_path, c.path)
        out.append(TrialSummary(
            trial_id=tid,
            metric=metric,
            best_score=float(best[metric]),
            config={k: v for k, v in res.config.items()},
            best_epoch=int(best["epoch"]),
            best_val_loss=float(best["val_loss"]),
            best_val_mae=float(best["val_mae"]),
            best_val_rmse=float(best["val_rmse"]),
            epochs=int(last["epoch"]),
            stop_reason=reason,
            checkpoint=ckpt,
            nodes=sorted({str(n) for n in df.get("node_id", [])}),
            history=df[["epoch", "val_loss", "val_mae"]].to_dict("records"),
        ))
    out.sort(key=lambda s: s.best_score)
    return out


def best_trial(run: str, where: str | None = None) -> tuple[TrialSummary, list[TrialSummary], str]:
    """The best trial (min of the experiment's metric over all epochs of all trials), all summaries, and the path."""
    ea, grid, path = load_experiment(run, where)
    summaries = summarize(ea, grid, path)
    if not summaries:
        raise ResultsError(f"{path}: no trial has reported a result yet")
    best = summaries[0]
    if best.checkpoint is None:
        raise ResultsError(f"{path}: the best trial {best.trial_id} has no checkpoint")
    return best, summaries, path


def best_bundle(run: str, where: str | None = None) -> tuple[dict[str, Any], TrialSummary, list[TrialSummary], str]:
    """The best trial's best checkpoint, loaded and verified, with the trial's identity in its ``meta``;
    also the summaries of all trials and the experiment path."""
    best, summaries, path = best_trial(run, where)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = load_bundle(storage.download(storage.join(best.checkpoint or "", BUNDLE_FILE), tmp))
    bundle["meta"] = dict(bundle.get("meta", {}), experiment_path=path, trial_id=best.trial_id,
                          best_epoch=best.best_epoch, config=best.config)
    return bundle, best, summaries, path


def export_best(run: str, out: str | Path, where: str | None = None, data_path: str | None = None) -> tuple[Path, TrialSummary]:
    """Write the best trial's best checkpoint as one standalone bundle (loads with rnn_core alone), with
    conformal intervals from its validation hours."""
    from rnn_core.data import load_frame
    from rnn_core.metrics import validation_intervals

    bundle, best, _, path = best_bundle(run, where)
    frame, *_ = load_frame(data_path or _recorded_data_path(path))
    bundle["intervals"] = validation_intervals(model_from_bundle(bundle, str(best.checkpoint)), frame).to_dict()
    return write_bundle(out, bundle), best


# ------------------------------------------------------------------------------------------ ensembles

ENSEMBLE_FILE = "ensemble.pt"
REFIT_FILE = "ensemble_refit.pt"
ENSEMBLE_SUMMARY = "ensemble.json"


@dataclass
class EnsembleReport:
    """What :func:`build_ensemble` chose and measured (also written to the experiment as ensemble.json)."""

    file: str
    """The ensemble file in the experiment (ensemble.pt, or ensemble_refit.pt with refit)."""
    members: list[dict[str, Any]]
    """trial_id, weight, config, val_mae, val_rmse (each member alone) per member, heaviest first."""
    size: int
    metric: str
    """The calibration factor's fit (mae: least absolute deviation; rmse: least squares), by the search metric."""
    candidates: int
    val_mae: float
    val_rmse: float
    """The ensemble on the validation hours, bikes/hour (before any refit: afterwards they are training hours)."""
    scale: float
    """The calibration factor (rnn_core.ensemble.calibrate), fitted on the same hours."""
    uncalibrated_val_mae: float
    uncalibrated_val_rmse: float
    best_val_mae: float
    best_val_rmse: float
    """The best trial's checkpoint on the same hours."""
    trials: list[list[Any]]
    """(trial_id, best score) of every trial it chose from: an ensemble is stale when these change."""
    select_s: float
    refit: bool = False
    refit_s: float = 0.0
    refit_file: str | None = None
    selection: str = ""
    """What the greedy selection minimised (rnn_core.config.ENSEMBLE_SELECTION; empty in older reports: the metric)."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _fingerprint(summaries: list[TrialSummary]) -> list[list[Any]]:
    return sorted([s.trial_id, round(s.best_score, 10)] for s in summaries if s.checkpoint)


def read_ensemble_report(path: str) -> EnsembleReport | None:
    """The experiment's ensemble.json, or None when there is none (or it cannot be read)."""
    text = storage.read_text(storage.join(path, ENSEMBLE_SUMMARY))
    if not text:
        return None
    try:
        return EnsembleReport(**json.loads(text))
    except (ValueError, TypeError):
        return None


def current_ensemble(path: str, summaries: list[TrialSummary], refit: bool = False) -> EnsembleReport | None:
    """The experiment's ensemble report when it was built from the trials as they are now (and refit if asked)."""
    rep = read_ensemble_report(path)
    if rep is None or rep.trials != _fingerprint(summaries) or (refit and not rep.refit_file):
        return None
    return rep


def candidate_forecasts(path: str, candidates: list[TrialSummary],
                        frame: Any) -> tuple[dict[str, dict[str, Any]], np.ndarray, np.ndarray]:
    """The candidates' best checkpoints as member bundles (trial id -> bundle, without the optimizer state), their
    validation forecasts [M, N, H] and the validation targets [N, H], in bikes per hour."""
    from rnn_core.data import build
    from rnn_core.ensemble import member_bundle

    bundles, forecasts = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        val = None
        for i, s in enumerate(candidates):
            local = storage.download(storage.join(s.checkpoint or "", BUNDLE_FILE), Path(tmp) / str(i))
            bundle = load_bundle(local)
            lm = model_from_bundle(bundle, str(s.checkpoint))
            if val is None:  # the validation windows and targets (every trial shares the split)
                val = build(frame, lm.data_config, scalers=(lm.feature_scaler, lm.target_scaler))["val"]
            forecasts.append(lm.forecast(frame, val.origin))  # [N, H] bikes/hour
            # without the optimizer state: 200 trials' checkpoints stay small in memory
            bundles[s.trial_id] = dict(member_bundle(bundle), meta=dict(
                bundle.get("meta", {}), trial_id=s.trial_id, config=s.config, experiment_path=path, best_epoch=s.best_epoch))
    if val is None:
        raise ResultsError(f"{path}: no trial has a checkpoint to choose an ensemble from yet")
    return bundles, np.stack(forecasts), val.y_raw.numpy().astype(np.float64)


def build_ensemble(
    run: str,
    where: str | None = None,
    size: int = ENSEMBLE_SIZE,
    refit: bool = False,
    data_path: str | None = None,
    jobs: int | None = None,
    metric: str | None = None,
    selection: str = ENSEMBLE_SELECTION,
) -> EnsembleReport:
    """Choose an ensemble among the trials' best checkpoints on their validation forecasts (bikes/hour), write it
    into the experiment as one standalone file, and with ``refit`` also a copy whose members were retrained on
    training + validation hours. Works on finished and running experiments, local or s3:// / gs://.

    ``selection``: what the greedy selection minimises; ``metric``: the calibration factor's fit (default: the
    search metric's, mae unless it searched val_rmse)."""
    from rnn_core.data import load_frame
    from rnn_core.ensemble import calibrate, refit_bundles, save_ensemble, select
    from rnn_core.intervals import conformal

    t0 = time.perf_counter()
    best, summaries, path = best_trial(run, where)
    candidates = [s for s in summaries if s.checkpoint]  # best first: ties in the selection go to better trials
    metric = metric or ("rmse" if best.metric == "val_rmse" else "mae")
    frame, *_ = load_frame(data_path or _recorded_data_path(path))
    log.info("choosing an ensemble of up to %d picks among %d trials' best checkpoints, by validation %s",
             size, len(candidates), selection.upper())
    bundles, F, target = candidate_forecasts(path, candidates, frame)
    weights, _ = select(F, target, size, selection)
    chosen = [i for i in np.argsort(-weights, kind="stable") if weights[i] > 0]
    mean = np.tensordot(weights, F, axes=1)  # [N, H]
    scale = calibrate(mean, target, metric)
    ens_pred = scale * mean
    members = [{"trial_id": candidates[i].trial_id, "weight": float(weights[i]), "config": candidates[i].config,
                "val_mae": mae(F[i], target), "val_rmse": rmse(F[i], target)} for i in chosen]
    meta = {"experiment_path": path, "size": size, "metric": metric, "selection": selection, "val_mae": mae(ens_pred, target),
            "val_rmse": rmse(ens_pred, target), "scale": scale, "uncalibrated_val_mae": mae(mean, target),
            "uncalibrated_val_rmse": rmse(mean, target), "members": members}
    picked = {candidates[i].trial_id: bundles[candidates[i].trial_id] for i in chosen}
    w = {candidates[i].trial_id: float(weights[i]) for i in chosen}
    file = storage.join(path, ENSEMBLE_FILE)
    intervals = conformal(ens_pred, target)  # from these validation hours; a refit keeps them (its own are in-sample)
    _write_model(file, lambda out: save_ensemble(out, picked, w, meta, scale, intervals, LEVEL_WINDOW, CORRECTION_WINDOW))
    select_s = time.perf_counter() - t0
    report = EnsembleReport(
        file=file, members=members, size=size, metric=metric, candidates=len(candidates),
        val_mae=meta["val_mae"], val_rmse=meta["val_rmse"], scale=scale, uncalibrated_val_mae=meta["uncalibrated_val_mae"],
        uncalibrated_val_rmse=meta["uncalibrated_val_rmse"], best_val_mae=mae(F[0], target),
        best_val_rmse=rmse(F[0], target), trials=_fingerprint(summaries), select_s=round(select_s, 1), selection=selection)
    if refit:
        t1 = time.perf_counter()
        refits = refit_bundles(picked, frame, jobs)
        report.refit_file = storage.join(path, REFIT_FILE)
        _write_model(report.refit_file, lambda out: save_ensemble(out, refits, w, dict(meta, refit=True), scale, intervals,
                                                                  LEVEL_WINDOW, CORRECTION_WINDOW))
        report.refit, report.refit_s = True, round(time.perf_counter() - t1, 1)
    storage.write_text(storage.join(path, ENSEMBLE_SUMMARY), json.dumps(report.to_json(), indent=1, default=str))
    return report


def _recorded_data_path(path: str) -> str | None:
    """The hour.csv the search used, when it is a file on this machine (else the usual lookup applies)."""
    try:
        recorded = experiment_meta(path).get("data_path")
    except (SearchError, ValueError):
        return None
    return recorded if recorded and Path(recorded).is_file() else None


def _write_model(location: str, write: Any) -> None:
    """Write a model file to a local path or a URI (through a local temporary file)."""
    if not storage.is_uri(location):
        write(location)
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = write(Path(tmp) / storage.name(location))
        storage.upload(local, location)


def chosen_model(run: str, where: str | None = None, single: bool = False, refit: bool = False,
                 data_path: str | None = None, size: int | None = None, jobs: int | None = None) -> tuple[Any, str]:
    """What `export` and `test` serve from an experiment: its ensemble (chosen again when the trials changed
    since it was built, or when ``size`` differs; ``refit``: the refit one), or with ``single`` the best trial's
    best checkpoint. Returns (the loaded model or ensemble, a description)."""
    from rnn_core.checkpoint import load_model

    if single:
        bundle, best, _, _ = best_bundle(run, where)
        return model_from_bundle(bundle, str(best.checkpoint)), f"trial {best.trial_id} (epoch {best.best_epoch})"
    _, summaries, path = best_trial(run, where)
    rep = current_ensemble(path, summaries, refit)
    if rep is None or (size is not None and rep.size != size):
        rep = build_ensemble(path, size=size or ENSEMBLE_SIZE, refit=refit, data_path=data_path, jobs=jobs)
    file = rep.refit_file if refit else rep.file
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(storage.download(file or "", tmp))
    model.source = file or ""
    what = (f"ensemble of {len(rep.members)} trial(s){' refit on train+val' if refit else ''}: "
            + ", ".join(f"{m['trial_id']} x{m['weight']:.2f}" for m in rep.members))
    return model, what
