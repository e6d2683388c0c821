"""The gradient-boosting reference a search's final model is measured against (issue 14).

scikit-learn's HistGradientBoostingRegressor(max_iter=1500, learning_rate=0.03, max_leaf_nodes=63,
min_samples_leaf=20, l2_regularization=1.0), hour of day as a categorical feature, target log1p(cnt) of hour
t+1, features known at t: log1p counts at lags 1-24, 47, 48, 71, 72, 167-169, 335, 336 hours; rolling means of
the last 3/6/24/168 hours; the 1 h and 24 h differences; the previous hour's weather; hour, day of week, month,
year and the holiday/workingday flags of the target hour, plus the holiday flags of the day before and after;
trained on every hour before the test period (the validation months included). Scored on exactly the targets
of the product's test split (horizon 1), as the mean over seeds 0, 1, 2.

scikit-learn is not a dependency of rnn-search: `pip install scikit-learn` (or the `bench` extra) to run it.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

#: Lags in hours before the target hour t+1 (lag 1 is the count at the origin t).
LAGS = tuple(range(1, 25)) + (47, 48, 71, 72, 167, 168, 169, 335, 336)
WINDOWS = (3, 6, 24, 168)
PARAMS = dict(max_iter=1500, learning_rate=0.03, max_leaf_nodes=63, min_samples_leaf=20, l2_regularization=1.0)


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """Hourly grid (rnn_core.data.load_frame) -> one row per origin hour t: what is known at t about the target
    hour t+1. Row t uses counts of hours <= t only (tests/test_gbm_reference.py changes later counts to check)."""
    lc = pd.Series(np.log1p(frame["cnt"].to_numpy(np.float64)), index=frame.index)
    cols: dict[str, pd.Series | np.ndarray] = {}
    for k in LAGS:
        cols[f"lag{k}"] = lc.shift(k - 1)  # target t+1, lag k: the count at t+1-k
    for w in WINDOWS:
        cols[f"mean{w}"] = lc.rolling(w).mean()  # hours t-w+1 .. t
    cols["diff1"] = lc - lc.shift(1)
    cols["diff24"] = lc - lc.shift(24)
    weather = frame[[f"weather_{i}" for i in range(1, 5)]].to_numpy().argmax(axis=1) + 1.0  # the one-hot back: 1..4
    cols["weathersit_prev"] = weather  # the weather of the origin hour t
    for c in ("temp", "atemp", "hum", "windspeed"):
        cols[f"{c}_prev"] = frame[c].astype(np.float64)
    target = frame.index + pd.Timedelta(hours=1)
    day_holiday = frame["holiday"].groupby(frame.index.normalize()).first()  # per calendar day
    cols["hour"] = target.hour.to_numpy()
    cols["dow"] = target.day_of_week.to_numpy()
    cols["month"] = target.month.to_numpy()
    cols["year"] = target.year.to_numpy()
    cols["holiday"] = frame["holiday"].shift(-1).to_numpy()  # calendar flags of t+1: known in advance
    cols["workingday"] = frame["workingday"].shift(-1).to_numpy()
    day = target.normalize()
    cols["holiday_day_before"] = day_holiday.reindex(day - pd.Timedelta(days=1)).to_numpy()
    cols["holiday_day_after"] = day_holiday.reindex(day + pd.Timedelta(days=1)).to_numpy()
    return pd.DataFrame(cols, index=frame.index)


def reference(frame: pd.DataFrame, test_origins: np.ndarray, seeds: tuple[int, ...] = (0, 1, 2),
              params: dict | None = None) -> dict[str, float]:
    """Fit on every target hour before the first test target, predict the test targets (origins t -> hour t+1).

    Returns MAE and RMSE (bikes per hour) averaged over seeds, and the mean fit time."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    X = features(frame)
    y = np.log1p(frame["cnt"].to_numpy(np.float64))
    first_test_target = int(test_origins.min()) + 1
    train = np.arange(max(LAGS), first_test_target - 1)  # origins whose target t+1 is before the test period
    cat = [X.columns.get_loc("hour")]
    truth = frame["cnt"].to_numpy(np.float64)[test_origins + 1]
    maes, rmses, secs = [], [], []
    for seed in seeds:
        t0 = time.perf_counter()
        model = HistGradientBoostingRegressor(**(params or PARAMS), categorical_features=cat, random_state=seed)
        model.fit(X.iloc[train].to_numpy(), y[train + 1])
        pred = np.expm1(model.predict(X.iloc[test_origins].to_numpy()))
        secs.append(time.perf_counter() - t0)
        maes.append(float(np.mean(np.abs(pred - truth))))
        rmses.append(float(np.sqrt(np.mean((pred - truth) ** 2))))
    return {"mae": float(np.mean(maes)), "rmse": float(np.mean(rmses)), "fit_s": float(np.mean(secs)),
            "maes": maes, "rmses": rmses}
