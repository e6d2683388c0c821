"""Errors in bikes per hour, and the naive baselines every model must beat."""

from __future__ import annotations

import numpy as np

from rnn_core.data import Split

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
