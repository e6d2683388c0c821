"""Weighted ensembles of model bundles: chosen on validation forecasts, optionally refit, saved as one file.

Selection is greedy forward selection with replacement (Caruana et al., "Ensemble selection from libraries
of models", ICML 2004; the final step of AutoGluon): start empty, and ``size`` times add the member whose
addition gives the lowest validation error of the running mean (squared error by default:
rnn_core.config.ENSEMBLE_SELECTION). A member picked k times weighs k/size.
It works on forecasts in bikes per hour, so members with different windows, target transforms, cells or
lags combine; each member turns the hourly frame into its own inputs with its own stored config.

An ensemble file has the envelope of a model bundle (rnn_core.checkpoint: two ``weights_only`` levels and
a SHA-256 of the payload) around ``{"members": {name: bundle}, "weights": {name: w}, "meta": {...}}``; the
members are complete model bundles without their optimizer state, so the file stands alone.

Calibration (:func:`calibrate`): one factor on the weighted mean, fitted on the same validation forecasts
(the least-absolute-deviation or least-squares fit of target = k * forecast, by the search metric, k
kept within [0.8, 1.25]). Members trained on log counts of earlier, quieter months forecast the level of
later, busier ones too low; one parameter on ~1,500 validation hours corrects that without room to overfit.

Rolling level (:func:`rolling_factors`): the validation months fix one factor, but demand keeps moving
(a model trained before a season of growth forecasts it too low all season: -21 bikes/hour on July-August
2012 after calibration). So an ensemble with ``level_window`` > 0 refits that factor at each origin t on its
own forecasts of the ``level_window`` origins before t whose targets are known at t (for step k, origins up
to t - k), the same fit within the same range; the validation factor stays where less history exists. This
uses only counts observed by t, which the members read as inputs anyway.

Residual correction (:func:`residual_corrections`): the ensemble's errors persist (weather and events that
the inputs show late or not at all) and repeat by the day and the week (the members read 24-48 hours of
history, not last week's): on three test periods of 2012 the calibrated ensemble's hour-ahead errors had a
lag-1 autocorrelation of 0.10-0.34 and lag-24 of 0.10-0.25. So an ensemble with ``correction_window`` > 0
adds a forecast of its own error: an autoregression of its hour-ahead errors on those of the hour, the day
and the week before (``correction_lags``), fitted again at each origin on the ``correction_window`` origins
before it, on the sqrt scale (a count's spread grows with its level), and run forward step by step over the
horizon.

Refit (:func:`refit_bundle`): retrain a member with its own settings and seed on the training and
validation hours together, for as many epochs as its chosen checkpoint had (the same passes over the
data; the larger data set gives each epoch proportionally more steps), keeping its scalers. This is
NeuralForecast's ``refit_with_val``. Its learning-rate schedule is compressed to those epochs (a cosine
anneals to zero at the last one): nothing is held out any more, so the last weights are the ones kept,
and they should be annealed ones rather than a mid-schedule state that a validation score picked.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view  # windows of past errors: [S, ...] -> views

from rnn_core.checkpoint import (
    ENSEMBLE_FORMAT, CheckpointError, LoadedModel, check_bundle, model_from_bundle, read_verified, stored_intervals,
    write_bundle,
)
from rnn_core.config import CORRECTION_LAGS, DataConfig, ModelConfig, TrainConfig
from rnn_core.data import (
    FeatureScaler, Split, TargetScaler, build, features_for, history_span, known_runs, known_targets, make_targets, make_windows,
)
from rnn_core.intervals import Intervals

log = logging.getLogger(__name__)

#: Keys of a trial checkpoint that an ensemble member does not need (resumable training state).
TRAINING_STATE = ("model", "ema", "optimizer", "scheduler", "rng", "bad_epochs")
SELECTION_METRICS = ("mae", "rmse")


# ------------------------------------------------------------------------------------------ selection


def _score(pred: np.ndarray, target: np.ndarray, metric: str) -> np.ndarray:
    """Errors of candidate forecasts pred [M, N, H] against target [N, H] -> [M]."""
    err = pred - target[None]
    if metric == "mae":
        return np.abs(err).mean(axis=(1, 2))
    return np.sqrt((err**2).mean(axis=(1, 2)))


def select(forecasts: np.ndarray, target: np.ndarray, size: int, metric: str = "mae") -> tuple[np.ndarray, list[float]]:
    """Greedy forward selection with replacement.

    forecasts: [M, N, H] each candidate's validation forecasts in bikes per hour; target: [N, H].
    Returns the weights [M] of the best prefix of the ``size`` steps (picks / steps kept, summing to 1) and
    the validation error after each step. Ties go to the lower index, so candidates sorted best first make
    the first pick the best single model, and the ensemble is never worse on validation than that model.
    """
    if metric not in SELECTION_METRICS:
        raise ValueError(f"selection metric {metric!r}: expected one of {', '.join(SELECTION_METRICS)}")
    if size < 1:
        raise ValueError(f"ensemble size must be at least 1, got {size}")
    forecasts = np.asarray(forecasts, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if forecasts.ndim != 3 or forecasts.shape[1:] != target.shape:
        raise ValueError(f"forecasts {forecasts.shape} do not match the targets {target.shape} ([M, N, H] vs [N, H])")
    picks = np.zeros((size, len(forecasts)), dtype=np.int64)  # [step, M]: picks after each step
    running = np.zeros(target.shape)  # [N, H] sum of the picked forecasts
    trace = []
    for step in range(1, size + 1):
        errors = _score((running[None] + forecasts) / step, target, metric)  # [M]: the mean with each candidate added
        best = int(np.argmin(errors))
        if step > 1:
            picks[step - 1] = picks[step - 2]
        picks[step - 1, best] += 1
        running += forecasts[best]
        trace.append(float(errors[best]))
    # The best prefix (Caruana et al.): picks beyond the lowest validation error are not kept.
    keep = int(np.argmin(trace))
    return picks[keep] / (keep + 1), trace


CALIBRATION_RANGE = (0.8, 1.25)


def _factors(p: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """Forecasts and targets [B, n] -> [B] the factor k that minimises the error of k * p on each row, within
    CALIBRATION_RANGE. mae: the weighted median of y/p with weights p (sum |y - k p| = sum p |y/p - k|);
    rmse: sum(p y) / sum(p^2). Hours forecast at (nearly) zero carry no weight; a row with none gets 1."""
    w = np.where(p > 1e-6, p, 0.0)
    if metric == "rmse":
        f = (w * y).sum(axis=1) / np.maximum((w * p).sum(axis=1), 1e-12)
    else:
        ratio = np.where(w > 0, y / np.where(w > 0, p, 1.0), np.inf)  # zero-weight hours sort last
        order = np.argsort(ratio, axis=1)
        cum = np.cumsum(np.take_along_axis(w, order, axis=1), axis=1)  # [B, n]
        half = np.argmax(cum >= cum[:, -1:] / 2, axis=1)  # the first rank holding half the weight
        f = np.take_along_axis(np.take_along_axis(ratio, order, axis=1), half[:, None], axis=1)[:, 0]
    return np.clip(np.where(w.sum(axis=1) > 0, f, 1.0), *CALIBRATION_RANGE)


def calibrate(pred: np.ndarray, target: np.ndarray, metric: str = "mae") -> float:
    """The factor k that minimises the error of k * pred on (pred, target) [N, H], within CALIBRATION_RANGE
    (:func:`_factors`: least absolute deviation for mae, least squares for rmse)."""
    p = np.asarray(pred, np.float64).ravel()[None]
    return float(_factors(p, np.asarray(target, np.float64).ravel()[None], metric)[0]) if p.size else 1.0


def rolling_factors(pred: np.ndarray, target: np.ndarray, rows: np.ndarray, window: int, metric: str = "mae") -> np.ndarray:
    """The calibration factor of each forecast ``pred[rows]``, fitted as :func:`calibrate` does on recent hours.

    ``pred`` and ``target`` [M, H] belong to consecutive origins (target NaN where not yet known). For row i
    and step k (1-based) the fit uses rows i - window .. i - k. Returns [N, H]; NaN for rows with fewer than
    ``window`` rows before them."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    rows = np.asarray(rows, np.int64)
    out = np.full((len(rows), pred.shape[1]), np.nan)
    ok = rows >= window
    if window <= 0 or not ok.any():
        return out
    q = rows[ok]
    for k in range(pred.shape[1]):  # step k + 1: the [Nq, n] forecasts and targets known at each origin
        out[ok, k] = _factors(known_runs(pred, q, window, k + 1), known_runs(target, q, window, k + 1), metric)
    return out


#: Each coefficient of the residual correction is kept within this range: persistence, never reversal (a
#: negative coefficient fitted on two weeks of errors is noise), and never the whole of a past error.
CORRECTION_RANGE = (0.0, 0.9)


def residual_corrections(pred: np.ndarray, target: np.ndarray, rows: np.ndarray, window: int,
                         lags: tuple[int, ...] = CORRECTION_LAGS) -> np.ndarray:
    """What to add to the calibrated forecasts ``pred[rows]`` for the errors before them: [N, H].

    ``pred`` and ``target`` [S, H] belong to consecutive origins (target NaN where not yet known). On the sqrt
    scale, z[j] = (target - pred) / sqrt(pred + 1) at step 1 of origin j is the error for hour j + 1, known
    from origin j + 1 on. At origin i, the coefficients b are the least-squares fit of z[j] on
    z[j - l] for l in ``lags``, over origins j = i - window .. i - 1 (all known at i), each kept within
    CORRECTION_RANGE; the error of hour i + k is then forecast as sum_l b_l * z(hour i + k - l), with the
    known error where that hour is at most i and the forecast one where it is later, and step k adds it times
    sqrt(pred[i, k] + 1). Rows with fewer than ``window`` + max(lags) origins before them get 0."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    rows = np.asarray(rows, np.int64)
    lags_ = np.asarray(sorted(set(lags)), np.int64)
    out = np.zeros((len(rows), pred.shape[1]))
    ok = rows >= window + (lags_.max() if len(lags_) else 0)
    if window <= 0 or not len(lags_) or not ok.any():
        return out
    q = rows[ok]
    spread = np.sqrt(np.maximum(pred, 0.0) + 1.0)  # [S, H]
    z = (target[:, 0] - pred[:, 0]) / spread[:, 0]  # [S] hour-ahead errors on the sqrt scale
    lagged = np.stack([np.concatenate([np.full(lag, np.nan), z[:-lag]]) for lag in lags_], axis=-1)  # [S, p]: z[j - l]
    x = sliding_window_view(lagged, window, axis=0)[q - window]  # [Nq, p, window]: origins j = i - window .. i - 1
    y = sliding_window_view(z, window)[q - window]  # [Nq, window]
    gram = np.einsum("naw,nbw->nab", x, x)  # [Nq, p, p]
    gram += 1e-9 * (np.trace(gram, axis1=1, axis2=2)[:, None, None] + 1.0) * np.eye(len(lags_))  # all-zero errors
    coef = np.linalg.solve(gram, np.einsum("naw,nw->na", x, y)[..., None])[..., 0]  # [Nq, p]
    coef = np.clip(coef, *CORRECTION_RANGE)
    ahead = np.zeros((len(q), pred.shape[1]))  # [Nq, H]: the forecast errors of hours i + 1 .. i + H
    for k in range(1, pred.shape[1] + 1):
        for a, lag in enumerate(lags_):  # hour i + k - lag: known (step 1 of origin i + k - lag - 1) or forecast
            past = z[q + k - lag - 1] if k <= lag else ahead[:, k - lag - 1]
            ahead[:, k - 1] += coef[:, a] * past
    out[ok] = ahead * spread[q]
    return out


# ------------------------------------------------------------------------------------------ the model


@dataclass
class LoadedEnsemble:
    """Members (ready models) and their weights; forecasts are the weighted mean in bikes per hour."""

    members: list[LoadedModel]
    names: list[str]
    weights: np.ndarray
    """[M] positive, summing to 1."""
    scale: float
    """Calibration factor on the weighted mean (1.0: none)."""
    bundle: dict[str, Any]
    """The file's payload (members, weights, meta)."""
    source: str = ""

    @property
    def reference(self) -> LoadedModel:
        """The first member: its features and scalers build the splits an evaluation uses (all share split and horizon)."""
        return self.members[0]

    @property
    def data_config(self) -> DataConfig:
        """The reference member's, with the longest member window: every split's first window has the history
        that every member needs."""
        return dataclasses.replace(self.reference.data_config, sequence_size=max(m.data_config.sequence_size for m in self.members))

    @property
    def model_config(self) -> ModelConfig:
        return self.reference.model_config

    @property
    def feature_scaler(self) -> FeatureScaler:
        return self.reference.feature_scaler

    @property
    def target_scaler(self) -> TargetScaler:
        return self.reference.target_scaler

    @property
    def first_origin(self) -> int:
        return max(m.first_origin for m in self.members)

    @property
    def intervals(self) -> Intervals | None:
        return stored_intervals(self.bundle, self.source)

    @property
    def level_window(self) -> int:
        """Origins (hours) before each forecast that its calibration factor is refit on (0: the validation factor)."""
        return int(self.bundle.get("level_window", 0))

    @property
    def correction_window(self) -> int:
        """Origins before each forecast that its residual correction is fitted on (0: none)."""
        return int(self.bundle.get("correction_window", 0))

    @property
    def correction_lags(self) -> tuple[int, ...]:
        """The hours before each hour whose errors its residual correction regresses on."""
        return tuple(self.bundle.get("correction_lags") or ())

    @property
    def refit(self) -> bool:
        """True when the members were retrained on the validation hours (which then measure nothing)."""
        return bool(self.bundle.get("meta", {}).get("refit"))

    def describe(self) -> str:
        parts = [f"{n} x{w:.2f} ({m.model_config.cell} {m.model_config.hidden_size}x{m.model_config.num_layers}, "
                 f"{m.data_config.sequence_size} h)" for n, w, m in zip(self.names, self.weights, self.members)]
        return f"ensemble of {len(self.members)}: " + "; ".join(parts)

    def member_forecasts(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        """[M, N, H] each member's forecasts in bikes per hour."""
        return np.stack([m.forecast(frame, origins) for m in self.members])

    def forecast(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        """[N, H] the weighted mean of the members' forecasts from origins [N] (indices of the last input hour),
        times the calibration factor: refit on the ``level_window`` origins before each (:func:`rolling_factors`)
        where the frame has them, else the validation one; plus the residual correction fitted on the
        ``correction_window`` origins before each (:func:`residual_corrections`)."""
        origins = np.asarray(origins, np.int64)
        w, cw = self.level_window, self.correction_window
        if not (w or cw) or not len(origins):
            return self.scale * np.tensordot(self.weights, self.member_forecasts(frame, origins), axes=1)
        # consecutive origins, the asked ones among them; the correction needs the calibrated forecasts of the
        # cw + max(lags) origins before each asked one, and each of those its own level window
        lags = self.correction_lags if cw else ()
        span, rows = history_span(origins, self.first_origin, w + cw + max(lags, default=0))
        mean = np.tensordot(self.weights, self.member_forecasts(frame, span), axes=1)  # [S, H]
        target = known_targets(frame["cnt"].to_numpy(), span, mean.shape[1])  # [S, H], NaN after the data
        need = np.arange(len(span)) if cw else rows  # the rows whose calibrated forecasts are used
        factors = rolling_factors(mean, target, need, w, str(self.bundle.get("meta", {}).get("metric", "mae")))
        calibrated = mean[need] * np.where(np.isnan(factors), self.scale, factors)
        if not cw:
            return calibrated
        # a count is never below zero: a negative error carried onto a quiet night hour could say otherwise
        return np.maximum(calibrated[rows] + residual_corrections(calibrated, target, rows, cw, lags), 0.0)

    def forecast_split(self, split: Split, frame: pd.DataFrame | None = None) -> np.ndarray:
        if frame is None:
            raise ValueError("an ensemble forecasts from the hourly frame (each member builds its own windows)")
        return self.forecast(frame, split.origin)


def member_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """A trial checkpoint without its resumable training state: what a member needs to forecast."""
    return {k: v for k, v in bundle.items() if k not in TRAINING_STATE}


def save_ensemble(
    path: str | os.PathLike[str],
    members: dict[str, dict[str, Any]],
    weights: dict[str, float],
    meta: dict[str, Any] | None = None,
    scale: float = 1.0,
    intervals: Intervals | None = None,
    level_window: int = 0,
    correction_window: int = 0,
    correction_lags: tuple[int, ...] = CORRECTION_LAGS,
) -> Path:
    """Write one standalone ensemble file (atomically). ``members``: name -> model bundle; ``weights``:
    name -> weight (members with weight 0 are dropped; the rest are normalised to sum to 1); ``scale``:
    the calibration factor (:func:`calibrate`); ``intervals``: conformal intervals of the ensemble's forecasts;
    ``level_window``: origins before each forecast that the factor is refit on (0: never); ``correction_window``:
    origins before each forecast that its residual correction is fitted on (0: none), regressing each hour's
    error on those ``correction_lags`` hours before it."""
    kept = {n: float(w) for n, w in weights.items() if w > 0}
    missing = [n for n in kept if n not in members]
    if not kept or missing:
        raise ValueError(f"an ensemble needs weighted members that it holds; missing: {missing or 'all'}")
    total = sum(kept.values())
    payload = {
        "members": {n: member_bundle(members[n]) for n in kept},
        "weights": {n: w / total for n, w in kept.items()},
        "scale": float(scale),
        "level_window": int(level_window),
        "correction_window": int(correction_window),
        "correction_lags": [int(lag) for lag in correction_lags] if correction_window else [],
        "intervals": intervals.to_dict() if intervals is not None else None,
        "meta": dict(meta or {}),
    }
    return write_bundle(path, payload, fmt=ENSEMBLE_FORMAT)


def ensemble_from_payload(payload: dict[str, Any], source: str, device: str | torch.device = "cpu") -> LoadedEnsemble:
    """A verified ensemble payload (rnn_core.checkpoint.read_verified) -> ready members and weights."""
    members, weights = payload.get("members"), payload.get("weights")
    if not isinstance(members, dict) or not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"{source}: an ensemble file without members or weights")
    for name, w in weights.items():
        if name not in members:
            raise CheckpointError(f"{source}: the ensemble names member {name!r}, which the file does not hold")
        if not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise CheckpointError(f"{source}: member {name!r} has weight {w!r}; weights must be positive numbers")
    if abs(sum(weights.values()) - 1.0) > 1e-6:
        raise CheckpointError(f"{source}: the ensemble's weights sum to {sum(weights.values()):.6f}, not 1")
    scale = payload.get("scale", 1.0)
    lo, hi = CALIBRATION_RANGE
    if not isinstance(scale, (int, float)) or not lo <= scale <= hi:
        raise CheckpointError(f"{source}: calibration factor {scale!r} outside [{lo}, {hi}]")
    for key in ("level_window", "correction_window"):
        window = payload.get(key, 0)
        if not isinstance(window, int) or window < 0:
            raise CheckpointError(f"{source}: {key.replace('_', ' ')} {window!r}: expected a whole number of hours >= 0")
    lags = payload.get("correction_lags") or []
    if (not isinstance(lags, list) or not all(isinstance(lag, int) and lag >= 1 for lag in lags)
            or (payload.get("correction_window") and not lags)):
        raise CheckpointError(f"{source}: correction lags {lags!r}: expected a list of whole numbers of hours >= 1 "
                              "(at least one when the correction window is above 0)")
    names = list(weights)
    loaded = []
    for name in names:
        bundle = members[name]
        if not isinstance(bundle, dict):
            raise CheckpointError(f"{source}: member {name!r} is not a model bundle")
        loaded.append(model_from_bundle(check_bundle(bundle, f"{source} (member {name})"), f"{source} (member {name})", device))
    ref = loaded[0].data_config
    for name, m in zip(names, loaded):
        cfg = m.data_config
        if cfg.horizon != ref.horizon or (cfg.split, cfg.val_start, cfg.test_start, cfg.test_end) != (
                ref.split, ref.val_start, ref.test_start, ref.test_end):
            raise CheckpointError(f"{source}: member {name!r} forecasts horizon {cfg.horizon} on split {cfg.split!r}, "
                                  f"unlike member {names[0]!r} (horizon {ref.horizon}, split {ref.split!r})")
    return LoadedEnsemble(members=loaded, names=names, weights=np.array([weights[n] for n in names], dtype=np.float64),
                          scale=float(scale), bundle=payload, source=source)


def load_ensemble(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedEnsemble:
    """Load and verify an ensemble file; a single model's file is refused (rnn_core.load_model reads either)."""
    fmt, payload = read_verified(path)
    if fmt != ENSEMBLE_FORMAT:
        raise CheckpointError(f"{path}: a single model's file, not an ensemble")
    return ensemble_from_payload(payload, str(path), device)


# ------------------------------------------------------------------------------------------ refit


def train_through_val(frame: pd.DataFrame, bundle: dict[str, Any]):  # noqa: ANN201 - BikeData
    """The member's windows with the training split extended over the validation hours (every origin whose
    targets end before the test period), scaled with the member's own stored scalers."""
    cfg = DataConfig.from_dict(bundle["data_config"])
    fs = FeatureScaler.from_dict(bundle["feature_scaler"])
    ts = TargetScaler.from_dict(bundle["target_scaler"])
    data = build(frame, cfg, scalers=(fs, ts))
    tr, va = data["train"], data["val"]
    # Every origin from the first training window to the last validation one: also the H-1 windows that
    # straddle the boundary, and with several validation windows the training hours left out around them.
    origins = np.arange(min(tr.origin[0], va.origin[0]), max(tr.origin[-1], va.origin[-1]) + 1)
    y_raw = make_targets(data.cnt.astype(np.float64), origins, cfg.horizon)  # [N, H]
    data.splits["train"] = Split(
        X=make_windows(features_for(frame, cfg, fs), origins, cfg.sequence_size),  # [N, L, F]
        y=torch.from_numpy(np.asarray(ts.forward(y_raw), dtype=np.float32)),
        y_raw=torch.from_numpy(y_raw.astype(np.float32)),
        origin=origins,
        target_time=make_targets(data.hours, origins, cfg.horizon).copy(),
    )
    return data


def refit_bundle(bundle: dict[str, Any], frame: pd.DataFrame, num_threads: int = 1) -> dict[str, Any]:
    """Retrain one member on training + validation hours (see the module docstring); returns its new bundle."""
    from rnn_core.train import fit  # heavy; only a refit needs the trainer

    started = time.perf_counter()
    epochs = int(bundle.get("best_metrics", {}).get("epoch") or bundle.get("epoch") or 0)
    if epochs < 1:
        raise CheckpointError("cannot refit a member without a recorded best epoch")
    data = train_through_val(frame, bundle)
    mcfg = ModelConfig.from_dict(bundle["model_config"])
    tcfg = TrainConfig.from_dict(bundle["train_config"])
    # The member's settings and seed, its schedule compressed to ``epochs`` and no early stopping: the
    # validation hours are training hours now, so it runs exactly ``epochs`` epochs and keeps the last.
    tcfg = dataclasses.replace(tcfg, max_epochs=epochs, patience=epochs + 1, num_threads=num_threads)
    res = fit(data, mcfg, tcfg)
    out = member_bundle(bundle)
    out.update(weights=res.state["weights"], best_model=res.state["weights"], epoch=epochs, history=res.history,
               meta=dict(bundle.get("meta", {}), refit={
                   "epochs": epochs, "train_windows": len(data["train"]),
                   "through": str(data["train"].target_time[-1, -1])[:16], "seconds": round(time.perf_counter() - started, 1),
               }))
    return out


def _refit_one(args: tuple[dict[str, Any], pd.DataFrame]) -> dict[str, Any]:
    bundle, frame = args
    return refit_bundle(bundle, frame, num_threads=1)


def refit_bundles(bundles: dict[str, dict[str, Any]], frame: pd.DataFrame, jobs: int | None = None) -> dict[str, dict[str, Any]]:
    """Refit several members, ``jobs`` at a time in worker processes of one thread each (default: one per CPU)."""
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(bundles)))
    names = list(bundles)
    log.info("refitting %d member(s) on training + validation hours, %d at a time", len(names), jobs)
    if jobs == 1:
        return {n: refit_bundle(bundles[n], frame, num_threads=torch.get_num_threads()) for n in names}
    out = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for name, refit in zip(names, pool.map(_refit_one, [(bundles[n], frame) for n in names])):
            log.info("  refit %s: %d epochs on %d windows in %.0f s", name, refit["meta"]["refit"]["epochs"],
                     refit["meta"]["refit"]["train_windows"], refit["meta"]["refit"]["seconds"])
            out[name] = refit
    return out
