"""Errors in the target's units, the naive baselines every model must beat, and a model's evaluation on a split."""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rnn_core.checkpoint import CheckpointError
from rnn_core.data import WindowData, DataError, Split, build, load_frame
from rnn_core.series import baselines_for, series_frame
from rnn_core.forecaster import PostProcessed, load_model, split_targets
from rnn_core.intervals import LEVELS, Intervals, check_levels, conformal, coverage

def mae(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64))))


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2)))


def baseline_predictions(values: np.ndarray, split: Split, name: str, lags: dict[str, int],
                         starts: np.ndarray | None = None) -> np.ndarray:
    """[N, H] naive forecasts for a split's targets from the raw count series values [T].

    persistence: values at the origin t for every horizon step. seasonal_Nh: values at t+k-N for target t+k
    (needs N >= H so that no value after t is used). ``starts`` [T]: the first row of each row's series (a
    user's file of several), which a lag never reaches before; a missing value is the last one before it.
    """
    lag = lags[name]
    horizon = split.y_raw.shape[1]
    k = np.arange(1, horizon + 1)  # [H]
    if lag == 0:
        idx = np.repeat(split.origin[:, None], horizon, axis=1)
    else:
        if lag < horizon:
            raise ValueError(f"{name} needs horizon <= {lag}")
        idx = split.origin[:, None] + k[None, :] - lag  # [N, H]
    if idx.min() < 0 or (starts is not None and (idx < starts[split.origin][:, None]).any()):
        raise ValueError(f"{name}: the split starts too early for a {lag}-step lag")
    if starts is not None:  # a user's missing steps (NaN): the last known value
        values = pd.Series(values).groupby(starts).ffill().to_numpy()
    return values[idx]


def baseline_metrics(values: np.ndarray, split: Split, lags: dict[str, int],
                     starts: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """MAE and RMSE of every baseline on a split's targets (those whose values are all known)."""
    target = split.y_raw.numpy()
    out = {}
    for name in lags:
        try:
            p = baseline_predictions(values, split, name, lags, starts)
            if not np.isfinite(p).all():
                continue
        except ValueError:
            continue
        out[name] = {"mae": mae(p, target), "rmse": rmse(p, target)}
    return out


def per_step(pred: np.ndarray, target: np.ndarray) -> dict[str, list[float]]:
    """MAE and RMSE of each horizon step: {'mae': [H], 'rmse': [H]} from [N, H] forecasts and targets."""
    err = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return {"mae": np.abs(err).mean(axis=0).tolist(), "rmse": np.sqrt((err**2).mean(axis=0)).tolist()}


def model_frame(model: PostProcessed, data_path: str | os.PathLike[str] | pd.DataFrame | None) -> tuple[pd.DataFrame, str, int, int]:
    """The data a model was trained on, read as its own dataset description says; ``data_path`` None: the file it
    was trained on (its meta records it), else the built-in data set's own. A file that does not fit it is refused
    in one line that names the model."""
    ds = model.data_config.dataset
    if isinstance(data_path, pd.DataFrame):  # a series given in Python
        frame, _, filled = series_frame(data_path, ds, "data frame")
        return frame, "data frame", filled, len(frame) - filled
    if data_path is None and model.meta.get("data") and Path(model.meta["data"]).is_file():
        data_path = model.meta["data"]
    try:
        return load_frame(data_path, dataset=ds)
    except DataError as exc:
        raise DataError(f"{exc} (the model {model.source} was trained on {ds.describe()})") from None


def intervals_at(model: PostProcessed, frame: pd.DataFrame, levels: Sequence[float] | None = None) -> PostProcessed:
    """The forecaster with intervals at ``levels``: its own when they match (None: whatever it has, else 80%
    and 95%), else new ones fitted on its own validation forecasts (rnn_core.intervals.conformal)."""
    stored = model.intervals
    if stored is not None and (levels is None or tuple(levels) == stored.levels):
        return model
    if model.meta.get("refit"):
        raise CheckpointError(f"{model.source}: its members were refit on the validation hours, so intervals at new "
                              "levels cannot be calibrated there; use its stored levels or the ensemble before refit")
    origins, target = split_targets(frame, model.data_config, "val")
    return model.with_intervals(conformal(model.forecast(frame, origins), target, levels or LEVELS))


def split_score(model: PostProcessed, frame: pd.DataFrame, split: str = "val") -> tuple[float, float]:
    """(MAE, RMSE) of the forecaster's own forecasts of a split's targets."""
    origins, target = split_targets(frame, model.data_config, split)
    pred = model.forecast(frame, origins)
    return mae(pred, target), rmse(pred, target)


@dataclass
class Evaluation:
    """A model scored on one split against the naive baselines, in the target's units."""

    model: PostProcessed
    data: WindowData
    """Every split's origins and targets under the forecaster's data config (its windows are not used: the
    forecaster builds its own)."""
    frame: pd.DataFrame
    """The data on its grid the windows come from."""
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
    """level -> (share of targets inside, mean width in the target's units)."""

    def best_baseline(self) -> tuple[str, dict[str, float]]:
        return min(self.baselines.items(), key=lambda kv: kv[1]["mae"])


def evaluate_model(
    model: PostProcessed | str | os.PathLike[str],
    data_path: str | os.PathLike[str] | pd.DataFrame | None = None,
    split: str = "test",
    levels: Sequence[float] | None | bool = None,
) -> Evaluation:
    """Load a model or ensemble file (or take a loaded forecaster) and score its forecasts on ``split`` next to
    the baselines, overall and per step.

    ``levels``: the conformal intervals to report (their coverage and width on ``split``): None = the
    model's stored ones (else 80% and 95% from its validation hours), a sequence = those levels, False = none."""
    lm = load_model(model) if isinstance(model, (str, os.PathLike)) else model
    frame, source, n_filled, raw_rows = model_frame(lm, data_path)
    try:
        data = build(frame, lm.data_config, source=source, n_filled=n_filled, raw_rows=raw_rows)
    except DataError as exc:
        raise DataError(f"{lm.source}: its data config cannot be rebuilt: {exc}") from None
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{lm.source}: its data config cannot be rebuilt: {exc}") from None
    if levels is not False:
        lm = intervals_at(lm, frame, None if levels is None else check_levels(levels))
    s = data[split]
    pred, bands = lm.forecast_with_bands(frame, s.origin, bands=levels is not False)
    truth = s.y_raw.numpy()
    steps = {"model": per_step(pred, truth)}
    lags = baselines_for(lm.data_config)
    base = baseline_metrics(data.target, s, lags, data.starts)
    for name in base:
        steps[name] = per_step(baseline_predictions(data.target, s, name, lags, data.starts), truth)
    return Evaluation(model=lm, data=data, frame=frame, split=split, prediction=pred, target=truth, mae=mae(pred, truth),
                      rmse=rmse(pred, truth), baselines=base, steps=steps, intervals=lm.intervals,
                      bands=bands, coverage={a: coverage(lo, hi, truth) for a, (lo, hi) in bands.items()})
