"""Errors in bikes per hour, the naive baselines every model must beat, and a model's evaluation on a split."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rnn_core.checkpoint import CheckpointError, load_model
from rnn_core.data import BikeData, DataError, Split, build, load_frame

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

    def best_baseline(self) -> tuple[str, dict[str, float]]:
        return min(self.baselines.items(), key=lambda kv: kv[1]["mae"])


def evaluate_model(
    model: Forecaster | str | os.PathLike[str],
    data_path: str | os.PathLike[str] | None = None,
    split: str = "test",
) -> Evaluation:
    """Load a model or ensemble file (or take a loaded one), rebuild its windows from the stored data config
    and scalers, and score its forecasts on ``split`` next to the baselines."""
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
    return Evaluation(model=lm, data=data, frame=frame, split=split, prediction=pred, target=truth,
                      mae=mae(pred, truth), rmse=rmse(pred, truth), baselines=baseline_metrics(data.cnt, s))
