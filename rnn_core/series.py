"""A series of the user's own (rnn_core.config.Dataset): read, validate, grid and turn into features.

The bikes data keeps its own strict pipeline (rnn_core.data); everything after the features (windows, splits,
scalers, training, the forecaster and its post-processing) is shared. Pure pandas/numpy.

* **The frame.** One row per step of each series' regular grid, indexed by timestamp; the columns are the
  target, the covariates, ``is_missing`` (a step the file lacks, or an empty target) and, for a file of several
  series, the series column. The series lie one after another (in the order they first appear), each in time
  order: a *segment* of rows. Rows after a series' last target are its forecast times (target NaN): they carry
  the known-future covariates that a forecast from the last origin needs.
* **Absent steps.** ``absent='zero'`` (counts): target 0; ``'missing'``: target NaN, so that no window has it as
  a target. Either way the covariates are carried forward and the step is flagged ``is_missing``.
* **Features of each step** (F = C + U + P + 3 + lags, then (C + U) per target step): the calendar of its
  timestamp at the series' frequency (C), the known-future covariates (U), the past covariates (P),
  ``is_missing``, the target history (log1p for counts, else as it is) and its flag of being carried forward,
  the seasonal lags; then, with ``future_calendar``, the calendar and known-future covariates of each target
  step t+1..t+H. Nothing after the origin t enters except what is known in advance.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from rnn_core.config import COUNT_TRANSFORMS, DataConfig, Dataset, UserError

log = logging.getLogger(__name__)

IS_MISSING = "is_missing"
#: Below this many rows a series cannot fill one window of any sensible size.
MIN_ROWS = 8


class DataError(UserError):
    """Bad or missing input data; the message names the file, and the row and column where there is one."""


# --------------------------------------------------------------------------------------- reading


def _where(path: Path, row: int, column: str | None = None) -> str:
    """'FILE: line N, column C' (CSV: line 1 is the header) or 'FILE: row N' (Parquet, a frame)."""
    at = f"line {row + 2}" if path.suffix.lower() == ".csv" else f"row {row + 1}"
    return f"{path}: {at}" + (f", column '{column}'" if column else "")


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV (every cell as text, so that an empty or odd cell can be named) or a Parquet file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (from --data)")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a header and rows") from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot be read as {'Parquet' if path.suffix.lower() in ('.parquet', '.pq') else 'CSV'}: "
                          f"{str(exc).splitlines()[0]}") from None


def _numbers(raw: pd.DataFrame, col: str, path: Path, empty_ok: np.ndarray) -> np.ndarray:
    """A column as float64: every cell a finite number, or empty where ``empty_ok`` [N] allows (NaN)."""
    text = raw[col].astype(str).str.strip()
    empty = (text == "") | raw[col].isna().to_numpy()
    values = pd.to_numeric(text.where(~empty, "nan"), errors="coerce").to_numpy(np.float64)
    bad = (~np.isfinite(values) & ~empty) | (empty & ~empty_ok)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        cell = raw[col].iloc[row]
        what = ("is empty; expected a number" if empty[row] else
                f"{cell!r} is not a finite number" if pd.notna(pd.to_numeric(text.iloc[row], errors="coerce"))
                else f"{cell!r} is not a number")
        raise DataError(f"{_where(path, row, col)}: {what}")
    return values


def _times(raw: pd.DataFrame, ds: Dataset, path: Path) -> pd.Series:
    text = raw[ds.time].astype(str).str.strip()
    # Text: pandas infers the format from the first cell; a cell in another format is then refused by line.
    col = raw[ds.time]
    times = pd.to_datetime(col if pd.api.types.is_datetime64_any_dtype(col) else text, errors="coerce")
    if times.isna().any():
        row = int(np.flatnonzero(times.isna().to_numpy())[0])
        raise DataError(f"{_where(path, row, ds.time)}: {raw[ds.time].iloc[row]!r} is not a timestamp "
                          "(e.g. 2024-01-31 or 2024-01-31 13:00)")
    if getattr(times.dt, "tz", None) is not None:
        times = times.dt.tz_convert(None)
    return times


def _step(times: pd.Series, groups: list[np.ndarray], ds: Dataset, path: Path) -> pd.DateOffset:
    """The series' frequency: ``ds.freq``, else inferred from its longest series (pandas' own rule when that
    series has no gap, else its most common step)."""
    if ds.freq:
        try:
            return pd.tseries.frequencies.to_offset(ds.freq)
        except ValueError:
            raise DataError(f"--freq {ds.freq!r}: not a pandas frequency (e.g. h, D, 15min, W, MS)") from None
    longest = max(groups, key=len)
    t = pd.DatetimeIndex(times.to_numpy()[longest])
    if len(t) < 3:
        raise DataError(f"{path}: {len(t)} rows; a series needs at least {MIN_ROWS}")
    with warnings.catch_warnings():  # pandas 3 announces that it will return an offset, not text: either serves
        warnings.simplefilter("ignore")
        inferred = pd.infer_freq(t)
    if inferred is None:  # gaps: the most common step (a stray off-grid timestamp is then refused by line)
        steps, counts = np.unique(np.diff(t.to_numpy()), return_counts=True)
        inferred = pd.tseries.frequencies.to_offset(pd.Timedelta(steps[np.argmax(counts)])).freqstr
    return pd.tseries.frequencies.to_offset(inferred)


def _check_order(times: pd.Series, groups: list[np.ndarray], step: pd.DateOffset, ds: Dataset, path: Path) -> None:
    """Within each series: no duplicated timestamp, time order, every timestamp on the series' grid."""
    for rows in groups:
        t = times.to_numpy()[rows]
        dup = pd.Series(t).duplicated().to_numpy()
        if dup.any():
            r = int(rows[np.flatnonzero(dup)[0]])
            raise DataError(f"{_where(path, r, ds.time)}: duplicated timestamp {times.iloc[r]}")
        back = np.flatnonzero(t[1:] < t[:-1])
        if back.size:
            r = int(rows[back[0] + 1])
            raise DataError(f"{_where(path, r, ds.time)}: {times.iloc[r]} comes after {times.iloc[rows[back[0]]]}; "
                              "rows must be in time order")
        grid = pd.date_range(t[0], t[-1], freq=step)
        off = ~pd.DatetimeIndex(t).isin(grid)
        if off.any():
            r = int(rows[np.flatnonzero(off)[0]])
            raise DataError(f"{_where(path, r, ds.time)}: {times.iloc[r]} is off the series' regular step "
                              f"{step.freqstr} (from {pd.Timestamp(t[0])}); an irregular series is not supported "
                              "(give --freq if the step was inferred wrongly)")


def _groups(raw: pd.DataFrame, ds: Dataset) -> tuple[list[np.ndarray], list[str]]:
    """Row numbers of each series, in the order the series first appear, and their names."""
    if not ds.series:
        return [np.arange(len(raw))], [""]
    keys = raw[ds.series].astype(str).str.strip()
    names = list(dict.fromkeys(keys))
    return [np.flatnonzero((keys == n).to_numpy()) for n in names], names


def read_series(path: str | os.PathLike[str], ds: Dataset) -> tuple[pd.DataFrame, Dataset, int]:
    """Parse and validate a user's file against its description. Returns (the frame on each series' grid, the
    description with its frequency, the steps filled). Raises :class:`DataError` naming file, line, column."""
    path = Path(path)
    return series_frame(read_table(path), ds, path)


def series_frame(raw: pd.DataFrame, ds: Dataset, path: Path | str = "frame") -> tuple[pd.DataFrame, Dataset, int]:
    """A raw table (a file's, or a data frame given in Python) -> (frame, description with freq, steps filled)."""
    path = Path(path)
    wanted = [ds.time, ds.target, *ds.past, *ds.future] + ([ds.series] if ds.series else [])
    if missing := [c for c in wanted if c not in raw.columns]:
        raise DataError(f"{path}: no column {', '.join(repr(c) for c in missing)} (the dataset description: "
                          f"{ds.describe()}); the file has {', '.join(map(str, raw.columns[:12]))}")
    if raw.empty:
        raise DataError(f"{path}: the file has a header but no rows")
    raw = raw.reset_index(drop=True)
    times = _times(raw, ds, path)
    groups, names = _groups(raw, ds)
    step = _step(times, groups, ds, path)
    _check_order(times, groups, step, ds, path)
    target_text = raw[ds.target].astype(str).str.strip()
    empty_target = ((target_text == "") | raw[ds.target].isna()).to_numpy()
    trailing = np.zeros(len(raw), dtype=bool)  # rows after a series' last target: its forecast times
    for rows in groups:
        known = rows[~empty_target[rows]]
        trailing[rows[rows > known.max()] if len(known) else rows] = True
    values = {ds.target: _numbers(raw, ds.target, path, empty_ok=np.full(len(raw), ds.absent == "missing") | trailing)}
    for col in ds.past:
        values[col] = _numbers(raw, col, path, empty_ok=trailing)
    for col in ds.future:
        values[col] = _numbers(raw, col, path, empty_ok=np.zeros(len(raw), dtype=bool))
    parts, filled = [], 0
    for rows, name in zip(groups, names):
        part, n = _grid(pd.DataFrame({c: v[rows] for c, v in values.items()}, index=pd.DatetimeIndex(times.to_numpy()[rows])),
                        ds, step, ~trailing[rows])
        if ds.series:
            part[ds.series] = name
        parts.append(part)
        filled += n
    frame = pd.concat(parts)
    resolved = Dataset(**{**ds.to_dict(), "freq": step.freqstr})
    if filled:
        log.info("%s: %d steps absent from the file were filled (%s)", path, filled,
                 "target 0" if ds.absent == "zero" else "never a target")
    return frame, resolved, filled


def _grid(part: pd.DataFrame, ds: Dataset, step: pd.DateOffset, known: np.ndarray) -> tuple[pd.DataFrame, int]:
    """One series on its regular grid: absent steps get the target 0 or NaN (``ds.absent``), carried-forward
    covariates and ``is_missing`` = 1. Returns the frame and the steps filled."""
    last_known = part.index[known].max() if known.any() else part.index[0]
    full = pd.date_range(part.index[0], part.index[-1], freq=step)
    out = part.reindex(full)
    absent = ~full.isin(part.index)
    before_end = np.asarray(full <= last_known)
    out[IS_MISSING] = (np.isnan(out[ds.target].to_numpy()) & before_end).astype(np.float64)
    if ds.absent == "zero":
        out.loc[absent & before_end, ds.target] = 0.0
    covariates = [*ds.past, *ds.future]
    if covariates:
        out[covariates] = out[covariates].ffill()
    return out, int((absent & before_end).sum())


# --------------------------------------------------------------------------------------- layout


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


def is_count(values: np.ndarray) -> bool:
    """Non-negative whole numbers (counts): what log1p, the multiplicative calibration and the floor at 0 suit."""
    v = values[np.isfinite(values)]
    return bool(len(v)) and bool((v >= 0).all()) and bool(np.all(v == np.round(v)))


def never_negative(values: np.ndarray) -> bool:
    """No value below zero: what the multiplicative calibration and the floor at zero suit."""
    v = values[np.isfinite(values)]
    return bool(len(v)) and bool((v >= 0).all())


def suited_transform(frame: pd.DataFrame, ds: Dataset) -> str:
    """The target transform that fits a user's target: log1p for counts, else standardising."""
    return "log1p" if is_count(frame[ds.target].to_numpy(np.float64)) else "standard"


def check_transform(frame: pd.DataFrame, cfg: DataConfig, source: str) -> None:
    """Refuse log1p or sqrt for a target that has negative values, in one line."""
    y = frame[cfg.dataset.target].to_numpy(np.float64)
    if cfg.target_transform in COUNT_TRANSFORMS and np.nanmin(y) < 0:
        row = int(np.nanargmin(y))
        raise DataError(f"{source}: target '{cfg.dataset.target}' is {y[row]:g} at {frame.index[row]}: the "
                        f"{cfg.target_transform} transform needs values >= 0; use --target-transform standard")


#: name -> seasonal lag in hours (the forecast for hour t+k is cnt at t+k-lag, or cnt at t for persistence).
BASELINES = {"persistence": 0, "seasonal_24h": 24, "seasonal_168h": 168}
_UNITS = {"h": "h", "D": "d", "W": "w", "MS": "m", "ME": "m"}


def baselines_for(cfg: DataConfig) -> dict[str, int]:
    """The naive baselines of a data config: persistence and the series' seasons (bikes: 24 and 168 hours;
    daily: 7 days; weekly: 52 weeks; monthly: 12 months)."""
    ds = cfg.dataset
    if ds.builtin:
        return BASELINES
    unit = _UNITS.get(ds.freq, " steps")
    return {"persistence": 0, **{f"seasonal_{lag}{unit}".replace(" ", "_"): lag for lag in seasons(ds.freq)}}



# --------------------------------------------------------------------------------------- features


def seasons(freq: str | None) -> tuple[int, ...]:
    """The series' seasonal periods in steps: a day and a week for steps under a day, a week for daily data,
    a year for weekly or monthly data, none otherwise."""
    if not freq:
        return (24, 168)
    off = pd.tseries.frequencies.to_offset(freq)
    try:
        step = pd.Timedelta(off)
    except ValueError:  # months, quarters, years: not a fixed length
        return (12,) if off.name in ("MS", "ME", "M") else ()
    if step < pd.Timedelta(days=1):
        day = int(pd.Timedelta(days=1) / step)
        return (day, 7 * day)
    if step == pd.Timedelta(days=1):
        return (7,)
    return (52,) if step == pd.Timedelta(weeks=1) else ()


def chain_windows(freq: str | None) -> tuple[int, tuple[int, ...]]:
    """(window, lags) in steps of the post-processing chain of a user's series: the bikes data's two weeks and
    (1, day, week) where a step is under a day; 8 weeks and (1, 7) for daily data; 2 years (or 104 steps) and
    (1, the season) otherwise."""
    found = seasons(freq)
    if len(found) == 2:
        return 14 * found[0], (1, *found)
    if found == (7,):
        return 56, (1, 7)
    return 2 * found[0] if found else 104, (1, *found)


def calendar_names(freq: str) -> tuple[str, ...]:
    """The calendar features a step of this frequency has (known in advance for any time)."""
    off = pd.tseries.frequencies.to_offset(freq)
    try:
        step = pd.Timedelta(off)
    except ValueError:
        return ("year_sin", "year_cos")
    if step < pd.Timedelta(days=1):
        return ("day_sin", "day_cos", "week_sin", "week_cos", "year_sin", "year_cos")
    return ("week_sin", "week_cos", "year_sin", "year_cos") if step == pd.Timedelta(days=1) else ("year_sin", "year_cos")


def calendar(times: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """[T] times -> [T, C] cyclic encodings of the time of day, the day of the week, the day of the year."""
    tau = 2 * np.pi
    day = (times.hour.to_numpy() + times.minute.to_numpy() / 60) / 24
    week = times.day_of_week.to_numpy() / 7
    year = (times.day_of_year.to_numpy() - 1) / 365.25
    cols = {"day": day, "week": week, "year": year}
    names = calendar_names(freq)
    return np.column_stack([(np.sin if n.endswith("sin") else np.cos)(tau * cols[n[:-4]]) for n in names])


def future_names(ds: Dataset) -> tuple[str, ...]:
    """What is known of every target step: its calendar, then the known-future covariates."""
    return calendar_names(ds.freq) + ds.future


def feature_names(cfg: DataConfig) -> list[str]:
    ds = cfg.dataset
    names = [*future_names(ds), *ds.past, IS_MISSING, f"{ds.target}_history"]
    names += [f"{ds.target}_lag{k}" for k in cfg.seasonal_lags]
    if cfg.future_calendar:
        names += [f"{n}@t+{k}" for k in range(1, cfg.horizon + 1) for n in future_names(ds)]
    return names


def scaled_names(cfg: DataConfig) -> set[str]:
    """The features standardised with training statistics: everything but the calendar and the flag."""
    ds = cfg.dataset
    plain = set(calendar_names(ds.freq)) | {IS_MISSING}
    return {n for n in feature_names(cfg) if n.split("@")[0] not in plain}


def _shift(values: np.ndarray, k: int, bounds: list[tuple[int, int]], fill: float) -> np.ndarray:
    """[T, ...] -> the value k rows later (k > 0) or -k rows earlier within each series; ``fill`` outside it."""
    out = np.full_like(values, fill, dtype=np.float64)
    for a, b in bounds:
        n = b - a
        if k >= 0 and k < n:
            out[a : b - k] = values[a + k : b]
        elif k < 0 and -k < n:
            out[a - k : b] = values[a : b + k]
    return out


def history(frame: pd.DataFrame, cfg: DataConfig) -> np.ndarray:
    """[T] the target as inputs see it: log1p for the count transforms (log1p, sqrt), carried forward over
    missing steps (flagged by is_missing), 0 before a series' first value."""
    ds = cfg.dataset
    y = frame[ds.target].to_numpy(np.float64)
    y = np.log1p(np.maximum(y, 0.0)) if cfg.target_transform in COUNT_TRANSFORMS else y
    filled = pd.Series(y).groupby(segment_start(frame, ds)).ffill().fillna(0.0)
    return filled.to_numpy()


def raw_features(frame: pd.DataFrame, cfg: DataConfig) -> np.ndarray:
    """The frame -> unscaled features [T, F] in feature_names order (NaN where a known-future covariate is
    absent: past a series' end)."""
    ds = cfg.dataset
    bounds = segments(frame, ds)
    times = pd.DatetimeIndex(frame.index)
    known = np.column_stack([calendar(times, ds.freq)] + [frame[c].to_numpy(np.float64)[:, None] for c in ds.future])
    hist = history(frame, cfg)
    cols = [known, frame[list(ds.past)].to_numpy(np.float64).reshape(len(frame), -1),
            frame[IS_MISSING].to_numpy(np.float64)[:, None], hist[:, None]]
    cols += [_shift(hist, -(k - 1), bounds, 0.0)[:, None] for k in cfg.seasonal_lags]  # step s sees s+1-k
    if cfg.future_calendar:
        step = pd.tseries.frequencies.to_offset(ds.freq)
        cal = len(calendar_names(ds.freq))
        for k in range(1, cfg.horizon + 1):
            ahead = calendar(times + k * step, ds.freq)  # the calendar is known past the data's end too
            cov = _shift(known[:, cal:], k, bounds, np.nan)  # a covariate past a series' end is not
            cols.append(np.concatenate([ahead, cov], axis=1))
    return np.concatenate(cols, axis=1)


def check_future_known(frame: pd.DataFrame, cfg: DataConfig, features: np.ndarray, origins: np.ndarray, source: str) -> None:
    """A forecast from an origin whose known-future covariates are absent for its target times is refused."""
    bad = ~np.isfinite(features[origins])  # [N, F]: the origin's row holds every target step's covariates
    if bad.any():
        n, j = map(int, np.argwhere(bad)[0])
        names = feature_names(cfg)
        if "@t+" not in names[j]:
            raise DataError(f"{source}: input '{names[j]}' is not known at the origin {frame.index[origins[n]]}")
        step = pd.tseries.frequencies.to_offset(cfg.dataset.freq)
        col, k = names[j].split("@t+")
        at = pd.Timestamp(frame.index[origins[n]]) + int(k) * step
        raise DataError(f"{source}: known-future covariate '{col}' is absent for the forecast time {at}: add rows "
                          f"for the forecast times with '{col}' filled and the target '{cfg.dataset.target}' empty")
