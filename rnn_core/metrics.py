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
from rnn_core.series import baselines_for, seasons, series_frame
from rnn_core.forecaster import PostProcessed, load_model, split_targets
from rnn_core.intervals import LEVELS, Intervals, check_levels, conformal, coverage

def mae(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64))))


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2)))


def smape(pred: np.ndarray, target: np.ndarray) -> float:
    """Symmetric MAPE in percent, 200 |e| / (|y| + |yhat|), a step where both are 0 counting 0 (M4's definition)."""
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    den = np.abs(p) + np.abs(t)
    return float(np.mean(np.where(den > 0, 200 * np.abs(p - t) / np.where(den > 0, den, 1), 0.0)))


def wape(pred: np.ndarray, target: np.ndarray) -> float:
    """Weighted absolute percentage error in percent: sum |e| / sum |y| (NaN where every target is 0)."""
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    total = np.abs(t).sum()
    return float(100 * np.abs(p - t).sum() / total) if total > 0 else float("nan")


def mase_season(freq: str | None) -> int:
    """The seasonal naive that scales MASE: the series' first season (a day of steps under a day, a week of
    days, a year of weeks or months), else the previous step."""
    found = seasons(freq)
    return found[0] if found else 1


def series_keys(split: Split, starts: np.ndarray | None) -> np.ndarray:
    """[N] the series each window belongs to (its first row on the grid; 0 for a single series)."""
    return np.zeros(len(split.origin), np.int64) if starts is None else starts[split.origin]


def mase_scales(values: np.ndarray, split: Split, starts: np.ndarray | None, season: int) -> dict[int, float]:
    """Series key -> MAE of the seasonal naive in sample: over each series' steps up to its first origin in
    ``split`` (the forecasts never see later values). A series shorter than two seasons is scaled by the previous
    step instead; NaN steps (gaps) are left out."""
    keys = series_keys(split, starts)
    out = {}
    for key in np.unique(keys):
        first = int(split.origin[keys == key].min())
        y = np.asarray(values[int(key) : first + 1], np.float64)  # [n] the series in sample
        m = season if len(y) > 2 * season else 1
        diffs = np.abs(y[m:] - y[:-m]) if len(y) > m else np.array([np.nan])
        out[int(key)] = float(np.nanmean(diffs)) if np.isfinite(diffs).any() else float("nan")
    return out


def field_scores(pred: np.ndarray, target: np.ndarray, keys: np.ndarray, scales: dict[int, float]) -> dict[str, float]:
    """MAE, RMSE, MASE, sMAPE and WAPE of [N, H] forecasts. MASE: each series' MAE over its in-sample seasonal
    naive's, averaged over the series (M4's definition; one series: MAE / scale)."""
    ratios = [mae(pred[keys == k], target[keys == k]) / s for k, s in scales.items() if s > 0 and np.isfinite(s)]
    return {"mae": mae(pred, target), "rmse": rmse(pred, target), "mase": float(np.mean(ratios)) if ratios else float("nan"),
            "smape": smape(pred, target), "wape": wape(pred, target)}


def per_series(pred: np.ndarray, target: np.ndarray, keys: np.ndarray, scales: dict[int, float],
               names: dict[int, str]) -> pd.DataFrame:
    """One row per series of a panel: its scores (field_scores on its own windows)."""
    rows = [{"series": names.get(int(k), str(k)), "windows": int((keys == k).sum()),
             **field_scores(pred[keys == k], target[keys == k], keys[keys == k], {int(k): scales[int(k)]})}
            for k in np.unique(keys)]
    return pd.DataFrame(rows)


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


def baseline_forecasts(values: np.ndarray, split: Split, lags: dict[str, int],
                       starts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every baseline's [N, H] forecasts of a split's targets, leaving out one whose season is shorter than the
    horizon (it would read targets after the origin) or that has no value to give (a gap at its lag)."""
    out = {}
    for name in lags:
        try:
            p = baseline_predictions(values, split, name, lags, starts)
        except ValueError:
            continue
        if np.isfinite(p).all():
            out[name] = p
    return out


def baseline_metrics(values: np.ndarray, split: Split, lags: dict[str, int],
                     starts: np.ndarray | None = None, scales: dict[int, float] | None = None) -> dict[str, dict[str, float]]:
    """The scores (field_scores: MAE, RMSE, MASE, sMAPE, WAPE) of every baseline on a split's targets (those whose
    values are all known). ``scales``: MASE's per series (mase_scales); None: scaled by the previous step (the
    series' season is not known here)."""
    target = split.y_raw.numpy()
    keys = series_keys(split, starts)
    scales = scales if scales is not None else mase_scales(values, split, starts, 1)
    return {n: field_scores(p, target, keys, scales) for n, p in baseline_forecasts(values, split, lags, starts).items()}


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
    """name -> its field_scores ('mae', 'rmse', 'mase', 'smape', 'wape') on the same targets."""
    scores: dict[str, float] = field(default_factory=dict)
    """The model's field_scores: MAE, RMSE, MASE (over the in-sample seasonal naive), sMAPE and WAPE (percent)."""
    by_series: pd.DataFrame | None = None
    """A panel's scores per series (per_series), None for one series."""
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
    keys, scales = series_keys(s, data.starts), mase_scales(data.target, s, data.starts, mase_season(lm.data_config.dataset.freq))
    naive = baseline_forecasts(data.target, s, lags, data.starts)  # each baseline forecast once: scores and steps
    base = {n: field_scores(p, truth, keys, scales) for n, p in naive.items()}
    steps.update({n: per_step(p, truth) for n, p in naive.items()})
    scores = field_scores(pred, truth, keys, scales)
    return Evaluation(model=lm, data=data, frame=frame, split=split, prediction=pred, target=truth, mae=scores["mae"],
                      rmse=scores["rmse"], baselines=base, steps=steps, intervals=lm.intervals,
                      bands=bands, coverage={a: coverage(lo, hi, truth) for a, (lo, hi) in bands.items()},
                      scores=scores, by_series=_by_series(frame, lm, pred, truth, keys, scales))


def _by_series(frame: pd.DataFrame, model: PostProcessed, pred: np.ndarray, truth: np.ndarray, keys: np.ndarray,
               scales: dict[int, float]) -> pd.DataFrame | None:
    """A panel's scores per series, named by its series column; None for one series."""
    column = model.data_config.dataset.series
    if not column or len(scales) < 2 or column not in frame.columns:
        return None
    names = {k: str(frame[column].iloc[k]) for k in scales}
    return per_series(pred, truth, keys, scales, names)
