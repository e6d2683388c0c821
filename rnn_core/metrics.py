"""Errors in bikes per hour, the naive baselines every model must beat, and a model's evaluation on a split."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rnn_core.checkpoint import CheckpointError, load_model
from rnn_core.data import BikeData, DataError, Split, build, history_span, known_targets, load_frame
from rnn_core.intervals import LEVELS, Intervals, check_levels, conformal, coverage

if TYPE_CHECKING:
    from rnn_core.checkpoint import Forecaster

#: name -> seasonal lag in hours (the forecast for hour t+k is cnt at t+k-lag, or cnt at t for persistence).
BASELINES = {"persistence": 0, "seasonal_24h": 24, "seasonal_168h": 168}


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64))))


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2)))


def baseline_predictions(cnt: np.ndarray, split: Split, name: str) -> np.ndarray:
    """[N, H] naive forecasts for a split's targets from the raw count series cnt [T].

    persistence: cnt at the origin t for every horizon step. seasonal_Nh: cnt at t+k-N for target t+k
    (needs N >= H so that no value after t is used).
    """
    lag = BASELINES[name]
    horizon = split.y_raw.shape[1]
    k = np.arange(1, horizon + 1)  # [H]
    if lag == 0:
        idx = np.repeat(split.origin[:, None], horizon, axis=1)
    else:
        if lag < horizon:
            raise ValueError(f"{name} needs horizon <= {lag}")
        idx = split.origin[:, None] + k[None, :] - lag  # [N, H]
    if idx.min() < 0:
        raise ValueError(f"{name}: the split starts too early for a {lag}h lag")
    return cnt[idx]


def baseline_metrics(cnt: np.ndarray, split: Split) -> dict[str, dict[str, float]]:
    """MAE and RMSE of every baseline on a split's targets."""
    target = split.y_raw.numpy()
    out = {}
    for name in BASELINES:
        try:
            p = baseline_predictions(cnt, split, name)
        except ValueError:
            continue
        out[name] = {"mae": mae(p, target), "rmse": rmse(p, target)}
    return out


def per_step(pred: np.ndarray, target: np.ndarray) -> dict[str, list[float]]:
    """MAE and RMSE of each horizon step: {'mae': [H], 'rmse': [H]} from [N, H] forecasts and targets."""
    err = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return {"mae": np.abs(err).mean(axis=0).tolist(), "rmse": np.sqrt((err**2).mean(axis=0)).tolist()}


def validation_intervals(model: Forecaster, frame: pd.DataFrame, levels: Sequence[float] = LEVELS) -> Intervals:
    """Conformal intervals (rnn_core.intervals) from the model's forecasts of its validation hours, recalibrated
    on recent residuals wherever they are used."""
    if getattr(model, "refit", False):
        raise CheckpointError(f"{model.source}: its members were refit on the validation hours, so intervals at new "
                              "levels cannot be calibrated there; use its stored levels or the ensemble before refit")
    data = build(frame, model.data_config, scalers=(model.feature_scaler, model.target_scaler))
    va = data["val"]
    return conformal(forecast(model, va, frame), va.y_raw.numpy(), levels)


def intervals_for(model: Forecaster, frame: pd.DataFrame, levels: Sequence[float] | None = None) -> Intervals:
    """The model's stored intervals when they have ``levels`` (None: whatever it stores), else new ones
    from its validation hours."""
    stored = model.intervals
    if stored is not None and (levels is None or tuple(levels) == stored.levels):
        return stored
    return validation_intervals(model, frame, levels or LEVELS)


def interval_bands(model: Forecaster, intervals: Intervals, frame: pd.DataFrame, origins: np.ndarray,
                   pred: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """{level: (lower [N, H], upper [N, H])} around the forecasts ``pred`` [N, H] made from ``origins`` [N]
    (indices of the last input hour in ``frame``).

    Intervals with a window are recalibrated at each origin on the model's own residuals over the window of
    origins before it (rnn_core.intervals: only targets already known at that origin), so the model also
    forecasts those origins here; where the data holds less history, and for intervals without a window,
    the validation offsets apply."""
    origins = np.asarray(origins, np.int64)
    if not intervals.window or not len(origins):
        return intervals.bands(pred)
    span, rows = history_span(origins, model.first_origin, intervals.window)  # the bounded origins among them
    if len(rows) == rows[-1] - rows[0] + 1:  # consecutive origins (a split, one origin): forecast the weeks before only
        before = model.forecast(frame, span[: rows[0]]) if rows[0] else np.empty((0, pred.shape[1]))
        span_pred = np.concatenate([before, np.asarray(pred, np.float64)])  # [M, H]
    else:
        span_pred = model.forecast(frame, span)  # [M, H]
        span_pred[rows] = pred  # the forecasts being bounded, as made
    target = known_targets(frame["cnt"].to_numpy(), span, span_pred.shape[1])  # [M, H], NaN after the data
    return intervals.rolling_bands(span_pred, target, rows)


def forecast(model: Forecaster, split: Split, frame: pd.DataFrame | None = None) -> np.ndarray:
    """The forecasts of a split's targets: [N, H] bikes per hour. ``split`` was built from the model's data
    config (an ensemble's reference member's); an ensemble also needs the hourly ``frame``."""
    return model.forecast_split(split, frame)


@dataclass
class Evaluation:
    """A model scored on one split against the naive baselines, in bikes per hour."""

    model: Forecaster
    data: BikeData
    """The windows rebuilt from the model's stored data config and scalers (every split); for an ensemble,
    its reference member's."""
    frame: pd.DataFrame
    """The hourly data the windows come from."""
    split: str
    prediction: np.ndarray
    """[N, H] forecasts."""
    target: np.ndarray
    """[N, H] what happened."""
    mae: float
    rmse: float
    baselines: dict[str, dict[str, float]]
    """name -> {'mae', 'rmse'} on the same targets."""
    steps: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """'model' and each baseline -> per_step() of its forecasts."""
    intervals: Intervals | None = None
    bands: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """level -> (lower, upper) [N, H] around ``prediction``."""
    coverage: dict[float, tuple[float, float]] = field(default_factory=dict)
    """level -> (share of targets inside, mean width in bikes/hour)."""

    def best_baseline(self) -> tuple[str, dict[str, float]]:
        return min(self.baselines.items(), key=lambda kv: kv[1]["mae"])


def evaluate_model(
    model: Forecaster | str | os.PathLike[str],
    data_path: str | os.PathLike[str] | None = None,
    split: str = "test",
    levels: Sequence[float] | None | bool = None,
) -> Evaluation:
    """Load a model or ensemble file (or take a loaded one), rebuild its windows from the stored data config
    and scalers, and score its forecasts on ``split`` next to the baselines, overall and per step.

    ``levels``: the conformal intervals to report (their coverage and width on ``split``): None = the
    model's stored ones (else 80% and 95% from its validation hours), a sequence = those levels, False = none."""
    lm = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    frame, source, n_filled, raw_rows = load_frame(data_path)
    try:  # an ensemble's splits: its first member's, from where every member has a full window
        data = build(frame, lm.data_config, source=source, n_filled=n_filled, raw_rows=raw_rows,
                     scalers=(lm.feature_scaler, lm.target_scaler))
    except DataError as exc:
        raise DataError(f"{lm.source}: its data config cannot be rebuilt: {exc}") from None
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{lm.source}: its data config cannot be rebuilt: {exc}") from None
    s = data[split]
    pred = forecast(lm, s, frame)
    truth = s.y_raw.numpy()
    steps = {"model": per_step(pred, truth)}
    for name in BASELINES:
        try:
            steps[name] = per_step(baseline_predictions(data.cnt, s, name), truth)
        except ValueError:
            continue
    ev = Evaluation(model=lm, data=data, frame=frame, split=split, prediction=pred, target=truth, mae=mae(pred, truth),
                    rmse=rmse(pred, truth), baselines=baseline_metrics(data.cnt, s), steps=steps)
    if levels is not False:
        ev.intervals = intervals_for(lm, frame, None if levels is None else check_levels(levels))
        ev.bands = interval_bands(lm, ev.intervals, frame, s.origin, pred)
        ev.coverage = {a: coverage(lo, hi, truth) for a, (lo, hi) in ev.bands.items()}
    return ev
