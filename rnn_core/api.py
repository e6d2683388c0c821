"""The Python interface to a shipped forecaster, without Ray: load, predict, test, save.

    from rnn_core.api import Model
    model = Model.load("model.pt")
    model.predict("sales.csv")              # forecasts from each series' last known step, with intervals
    model.test("sales.csv").mae             # the test period's error, beside the naive baselines'

``search.api.RNNSearch`` finds one (``.fit`` runs the search); the ``predict`` and ``test`` commands print what
these methods return. Data is a file (CSV or Parquet), a pandas data frame in the shape of the file, or for the
built-in data set None (its usual lookup).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnn_core.data import DataError
from rnn_core.forecaster import PostProcessed, load_model, save_forecaster
from rnn_core.metrics import Evaluation, evaluate_model, intervals_at, model_frame
from rnn_core.series import segment_start, segments, span_words, step_words

Data = str | os.PathLike[str] | pd.DataFrame | None

log = logging.getLogger(__name__)


def frame_of(model: PostProcessed, data: Data) -> pd.DataFrame:
    """The model's kind of frame from a file, a raw data frame or None (the file it was trained on)."""
    return model_frame(model, data)[0]


def step_of(model: PostProcessed) -> pd.DateOffset:
    """One step of the model's series."""
    return pd.tseries.frequencies.to_offset(model.data_config.dataset.freq)


def say_short_history(model: PostProcessed, frame: pd.DataFrame, origins: np.ndarray) -> None:
    """A warning, once, where a forecast's series starts too late before its origin for the post-processing chain:
    its steps learn from the forecasts of the steps before (calibration, seasonal bias, residual correction,
    intervals), and with fewer of them they correct less than they did on validation."""
    need = sum(s.lookback for s in model.steps)  # steps of history the chain reads before the first origin
    ds = model.data_config.dataset
    have = origins - segment_start(frame, ds)[origins] - model.first_origin  # [S] forecastable steps before each
    short = np.flatnonzero(have < need)
    if not len(short):
        return
    i = int(short[0])
    log.warning("the forecast from %s has %s of history before it, where its post-processing chain (%s) learns from "
                "the %s before: it corrects less than it did on validation; give data that starts at least %s earlier",
                pd.Timestamp(frame.index[origins[i]]), span_words(max(int(have[i]), 0), ds.freq),
                ", ".join(s.kind.replace("_", " ") for s in model.steps), span_words(need, ds.freq),
                span_words(need - max(int(have[i]), 0), ds.freq))


def last_origins(model: PostProcessed, frame: pd.DataFrame, at: str | pd.Timestamp | None = None) -> np.ndarray:
    """[S] the forecast origin of each series: the step ``at``, else its last step with a known target."""
    ds = model.data_config.dataset
    target = frame[ds.target].to_numpy(np.float64)
    times = pd.DatetimeIndex(frame.index)
    when = None
    if at is not None:
        try:
            when = pd.Timestamp(at)
        except ValueError:
            raise DataError(f"--at {at!r} is not a timestamp (e.g. 2024-12-31 23:00)") from None
    step, steps = step_words(ds.freq)
    out = []
    for a, b in segments(frame, ds):
        if when is None:
            known = np.flatnonzero(np.isfinite(target[a:b]))
            origin = a + int(known[-1])
        else:
            hit = np.flatnonzero(times[a:b] == when)
            if not len(hit):
                raise DataError(f"--at {when}: not {step} of the data ({times[a:b].min()} .. {times[a:b].max()})")
            origin = a + int(hit[0])
        if origin - a < model.first_origin:
            raise DataError(f"--at {times[origin]}: needs {model.first_origin + 1} {steps} of history ending there; "
                            f"the earliest possible origin is {times[a + model.first_origin]}")
        out.append(origin)
    return np.array(out, dtype=np.int64)


@dataclass
class Model:
    """A shipped forecaster (a network or an ensemble, with its post-processing and intervals) and its methods."""

    forecaster: PostProcessed

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Model:
        return cls(load_model(path))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write it as one standalone file (atomically); ``Model.load`` and ``rnn-search predict`` read it."""
        return save_forecaster(path, self.forecaster)

    def predict(self, data: Data = None, at: str | pd.Timestamp | None = None,
                levels: tuple[float, ...] | None = None) -> pd.DataFrame:
        """Forecasts of the steps after an origin (``at``, else each series' last known step), one row per step:
        [series,] origin, time, forecast, and the lower/upper bound of each interval level."""
        frame = frame_of(self.forecaster, data)
        origins = last_origins(self.forecaster, frame, at)
        model = intervals_at(self.forecaster, frame, levels)
        pred, bands = model.forecast_with_bands(frame, origins)  # [S, H] and {level: ([S, H], [S, H])}
        say_short_history(self.forecaster, frame, origins)  # once the forecast stands (a refusal says only itself)
        ds, step, times = model.data_config.dataset, step_of(model), pd.DatetimeIndex(frame.index)
        rows: list[dict[str, Any]] = []
        for i, origin in enumerate(origins):
            for k in range(pred.shape[1]):
                row: dict[str, Any] = {ds.series: frame[ds.series].iloc[origin]} if ds.series else {}
                row.update(origin=times[origin], time=times[origin] + (k + 1) * step, forecast=float(pred[i, k]))
                for level, (lo, hi) in bands.items():
                    row[f"lower_{level:.0%}"], row[f"upper_{level:.0%}"] = float(lo[i, k]), float(hi[i, k])
                rows.append(row)
        return pd.DataFrame(rows)

    def forecast(self, data: Data, origins: np.ndarray) -> np.ndarray:
        """[N, H] forecasts from the given origins (row numbers of the model's frame of ``data``)."""
        return self.forecaster.forecast(frame_of(self.forecaster, data), origins)

    def test(self, data: Data = None, split: str = "test", levels: tuple[float, ...] | None = None) -> Evaluation:
        """Its error on a split's targets beside the naive baselines' (``.mae``, ``.rmse``, ``.scores``, ``.baselines``)."""
        return evaluate_model(self.forecaster, data, split, levels)

    def cross_validation(self, data: Data = None, windows: int = 3, step: int | None = None,
                         refit: bool = False) -> Any:
        """A rolling backtest over the last ``windows`` windows of each series (rnn_core.backtest.Backtest)."""
        from rnn_core.backtest import cross_validation

        return cross_validation(self.forecaster, data, windows, step, refit)


def load(path: str | os.PathLike[str]) -> Model:
    """A model or ensemble file written by rnn-search, as a :class:`Model`."""
    return Model.load(path)


__all__ = ["Data", "Model", "frame_of", "last_origins", "load"]
