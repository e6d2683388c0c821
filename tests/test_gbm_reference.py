"""The gradient-boosting reference of benchmarks/ must see no count after its origin hour."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.gbm_reference import LAGS, features
from rnn_core.data import load_frame


def test_reference_features_use_no_count_after_the_origin(hour_csv: Path) -> None:
    frame, *_ = load_frame(hour_csv)
    X = features(frame)
    t = 9000  # an origin hour; its target is t+1
    later = frame.copy()
    later.iloc[t + 1 :, later.columns.get_loc("cnt")] = 5000.0  # every count after the origin changed
    assert np.allclose(features(later).iloc[t].to_numpy(), X.iloc[t].to_numpy(), equal_nan=True)
    at_origin = frame.copy()
    at_origin.iloc[t, at_origin.columns.get_loc("cnt")] += 100.0  # the origin's own count is known at t
    assert not np.allclose(features(at_origin).iloc[t].to_numpy(), X.iloc[t].to_numpy(), equal_nan=True)
    assert X["lag1"].iloc[t] == np.log1p(frame["cnt"].iloc[t]) and X["lag336"].iloc[t] == np.log1p(frame["cnt"].iloc[t - 335])
    assert X["hour"].iloc[t] == (frame.index[t].hour + 1) % 24 and len(LAGS) == 33
