"""One feature builder for every series: the frame on its grid (rnn_core.series) -> inputs [T, F], in order.

The inputs of each step (F = K + P + 1 + 1 + N + lags, then K per target step):

* **Known in advance (K)**: the calendar of the step's time (from the frequency, :func:`calendar_parts`), the
  known-future covariates, the data set's named feature functions of the time (e.g. the sun's height).
* **Past covariates (P)**, as the file has them, carried forward over absent steps.
* ``is_missing`` (a step the file lacks), the target's history (log1p for the count transforms, carried forward
  over missing steps), the count covariates (``counts``, log1p), the seasonal lags of the history.
* With ``future_calendar``, what is known in advance of each target step t+1..t+H. Nothing after the origin t
  enters except what is known in advance.

Which inputs are standardised (rnn_core.data.fit_feature_scaler) follows from what they are: the calendar, the
feature functions, ``is_missing`` and 0/1 flags stay as they are; everything else gets the training steps'
mean and standard deviation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rnn_core.config import COUNT_TRANSFORMS, DataConfig
from rnn_core.datasets import CALENDAR_PARTS, Dataset, calendar_parts, definition_of, feature_function

if TYPE_CHECKING:
    from rnn_core.panel import SeriesScales

IS_MISSING = "is_missing"
#: Each calendar part: its position in its cycle as (numerator, period) of the times.
_CYCLES = {
    "day": lambda t: (t.hour.to_numpy() + t.minute.to_numpy() / 60, 24),
    "week": lambda t: (t.day_of_week.to_numpy(), 7),
    "month": lambda t: (t.month.to_numpy() - 1, 12),
    "year": lambda t: (t.day_of_year.to_numpy() - 1, 365.25),
}


def step_of(freq: str | None) -> pd.DateOffset:
    """One step of a series as a pandas offset."""
    return pd.tseries.frequencies.to_offset(freq or "h")


def parts_of(ds: Dataset) -> tuple[str, ...]:
    """A description's calendar: stored, or from its frequency."""
    return ds.calendar or calendar_parts(ds.freq)


def calendar_names(ds: Dataset) -> tuple[str, ...]:
    return tuple(f"{p}_{f}" for p in parts_of(ds) for f in ("sin", "cos"))


def calendar(times: pd.DatetimeIndex, parts: tuple[str, ...]) -> np.ndarray:
    """[T] times -> [T, 2 * len(parts)]: the sine and cosine of each part's position in its cycle."""
    tau = 2 * np.pi
    cols = []
    for part in parts:
        assert part in CALENDAR_PARTS, part
        x, period = _CYCLES[part](times)
        cols += [np.sin(tau * x / period), np.cos(tau * x / period)]
    return np.column_stack(cols)


def sun_height(times: pd.DatetimeIndex, site: tuple[float, float, str]) -> np.ndarray:
    """[T] local times -> [T] the sine of the sun's elevation at the middle of each hour at ``site`` (latitude,
    longitude in degrees east, time zone): NOAA's approximations of the declination and the equation of time,
    within a few minutes of sunrise and sunset. Positive by day; the local clock (daylight saving time) comes
    from the site's time zone."""
    lat, lon, zone = site
    mid = times + pd.Timedelta(minutes=30)
    # the hour the clocks repeat counts as standard time; the one they skip, as the hour after it
    local = mid.tz_localize(zone, ambiguous=np.zeros(len(mid), bool), nonexistent="shift_forward")
    utc = local.tz_convert("UTC").tz_localize(None)
    hours = utc.hour.to_numpy() + utc.minute.to_numpy() / 60  # [T] UTC
    g = 2 * np.pi / 365 * (utc.day_of_year.to_numpy() - 1 + hours / 24)  # the year's angle
    decl = (0.006918 - 0.399912 * np.cos(g) + 0.070257 * np.sin(g) - 0.006758 * np.cos(2 * g)
            + 0.000907 * np.sin(2 * g) - 0.002697 * np.cos(3 * g) + 0.00148 * np.sin(3 * g))  # radians
    eqt = 229.18 * (0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g) - 0.014615 * np.cos(2 * g)
                    - 0.040849 * np.sin(2 * g))  # minutes
    hour_angle = np.deg2rad((hours * 60 + eqt + 4 * lon) / 4 - 180)  # true solar time, 0 at noon
    phi = np.deg2rad(lat)
    return np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(hour_angle)


def future_names(ds: Dataset) -> tuple[str, ...]:
    """What is known of every step in advance: its calendar, the known-future covariates, the feature functions."""
    return calendar_names(ds) + ds.future + ds.features


def plain_names(ds: Dataset) -> set[str]:
    """Inputs never standardised: the calendar, the feature functions (each within [-1, 1]) and the flag."""
    return set(calendar_names(ds)) | set(ds.features) | {IS_MISSING}


def feature_names(cfg: DataConfig) -> list[str]:
    """Names of the F input channels, in order."""
    ds = cfg.dataset
    names = [*future_names(ds), *ds.past, IS_MISSING, f"{ds.target}_history", *(f"{c}_log1p" for c in ds.counts)]
    names += [f"{ds.target}_lag{k}" for k in cfg.seasonal_lags]
    if cfg.future_calendar:
        names += [f"{n}@t+{k}" for k in range(1, cfg.horizon + 1) for n in future_names(ds)]
    return names


def n_features(cfg: DataConfig) -> int:
    """F: features per input step."""
    return len(feature_names(cfg))


def future_width(cfg: DataConfig) -> int:
    """Features known of each target step (what ``future_calendar`` appends per step)."""
    return len(future_names(cfg.dataset))


def segments(frame: pd.DataFrame, ds: Dataset) -> list[tuple[int, int]]:
    """[(start, end)) row ranges of the frame's series, in order (one range for a single series)."""
    if not ds.series or ds.series not in frame:
        return [(0, len(frame))]
    keys = frame[ds.series].to_numpy()
    edges = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    bounds = [0, *edges.tolist(), len(frame)]
    return list(zip(bounds[:-1], bounds[1:]))


def segment_start(frame: pd.DataFrame, ds: Dataset) -> np.ndarray:
    """[T] the first row of each row's series."""
    out = np.zeros(len(frame), dtype=np.int64)
    for a, b in segments(frame, ds):
        out[a:b] = a
    return out


def _shift(values: np.ndarray, k: int, bounds: list[tuple[int, int]], fill: float) -> np.ndarray:
    """[T, ...] -> the value k rows later (k > 0) or -k rows earlier within each series; ``fill`` outside it."""
    out = np.full_like(values, fill, dtype=np.float64)
    for a, b in bounds:
        n = b - a
        if 0 <= k < n:
            out[a : b - k] = values[a + k : b]
        elif k < 0 and -k < n:
            out[a - k : b] = values[a : b + k]
    return out


def history(frame: pd.DataFrame, cfg: DataConfig, scales: SeriesScales | None = None, raw: bool = False) -> np.ndarray:
    """[T] the target as inputs see it: log1p for the count transforms (log1p, sqrt), for a panel scaled per
    series standardised by its own series' ``scales`` (rnn_core.panel), carried forward over missing steps
    (flagged by is_missing), 0 before a series' first value; ``raw``: before the scales and the filling (NaN)."""
    ds = cfg.dataset
    y = frame[ds.target].to_numpy(np.float64)
    y = np.log1p(np.maximum(y, 0.0)) if cfg.target_transform in COUNT_TRANSFORMS else y
    if raw:
        return y
    if scales is not None:
        y = scales.normalize(y, frame[ds.series].to_numpy(dtype=object).astype(str))
    return pd.Series(y).groupby(segment_start(frame, ds)).ffill().fillna(0.0).to_numpy()


def known(times: pd.DatetimeIndex, frame: pd.DataFrame | None, ds: Dataset) -> np.ndarray:
    """[T, K] what is known in advance at ``times``: calendar, known-future covariates (from ``frame``, rows
    aligned with ``times``), feature functions."""
    cols = [calendar(times, parts_of(ds))]
    cols += [frame[c].to_numpy(np.float64)[:, None] for c in ds.future] if frame is not None else []
    cols += [np.asarray(feature_function(ds, f)(times), np.float64)[:, None] for f in ds.features]
    return np.concatenate(cols, axis=1)


def _ahead(frame: pd.DataFrame, ds: Dataset, k: int, bounds: list[tuple[int, int]]) -> np.ndarray:
    """[T, K] what is known in advance of step s+k for every step s: the calendar and feature functions are known
    past the data's end; a known-future covariate past a series' end is NaN, or its definition's value there."""
    times = pd.DatetimeIndex(frame.index) + k * step_of(ds.freq)
    cov = _shift(frame[list(ds.future)].to_numpy(np.float64).reshape(len(frame), -1), k, bounds, np.nan)
    definition = definition_of(ds)
    if definition is not None and definition.beyond is not None and ds.future:
        past_end = np.isnan(cov).any(axis=1)
        fill = definition.beyond(times[past_end])
        cov[past_end] = np.column_stack([fill[c] for c in ds.future])
    ahead = known(times, None, ds)  # [T, C + functions]: the calendar and the feature functions at s+k
    c = len(calendar_names(ds))
    return np.concatenate([ahead[:, :c], cov, ahead[:, c:]], axis=1)


def raw_features(frame: pd.DataFrame, cfg: DataConfig, scales: SeriesScales | None = None) -> np.ndarray:
    """The frame -> unscaled features [T, F] in feature_names order, float64 (NaN where a known-future covariate
    is absent: past a series' end); ``scales``: the history's per-series scales, for a panel scaled per series."""
    ds = cfg.dataset
    bounds = segments(frame, ds)
    hist = history(frame, cfg, scales)
    cols = [known(pd.DatetimeIndex(frame.index), frame, ds),
            frame[list(ds.past)].to_numpy(np.float64).reshape(len(frame), -1),
            frame[IS_MISSING].to_numpy(np.float64)[:, None], hist[:, None],
            np.log1p(frame[list(ds.counts)].to_numpy(np.float64)).reshape(len(frame), -1)]
    cols += [_shift(hist, -(k - 1), bounds, 0.0)[:, None] for k in cfg.seasonal_lags]  # step s sees s+1-k
    if cfg.future_calendar:
        cols += [_ahead(frame, ds, k, bounds) for k in range(1, cfg.horizon + 1)]
    return np.concatenate(cols, axis=1)
