"""Every series read the one way: a described table (rnn_core.config.Dataset) -> checked -> on its regular grid.

A built-in data set's definition (rnn_core.datasets) finds and checks its own file and hands over its table in the
described columns; a user's CSV, Parquet file or data frame is read here. Then the same grid for both. Pure
pandas/numpy.

* **The frame.** One row per step of each series' regular grid, indexed by timestamp; the columns are the
  target, the covariates, ``is_missing`` (a step the file lacks, or an empty target) and, for a file of several
  series, the series column. The series lie one after another (in the order they first appear), each in time
  order: a *segment* of rows. Rows after a series' last target are its forecast times (target NaN): they carry
  the known-future covariates that a forecast from the last origin needs.
* **Absent steps.** ``absent='zero'`` (counts): the target and the count covariates 0; ``'missing'``: target NaN,
  so that no window has it as a target. Either way the other covariates are carried forward (a known-future
  one from its own day first, where the step is under a day: day flags belong to their day) and the step is
  flagged ``is_missing``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from rnn_core.config import COUNT_TRANSFORMS, DataConfig, Dataset
from rnn_core.errors import UserError
from rnn_core.datasets import calendar_parts, definition_of
from rnn_core.features import IS_MISSING, feature_names, segment_start, segments  # noqa: F401 - the layout, read here too

log = logging.getLogger(__name__)

#: A run of absent steps longer than a day (or than this many steps of a day or more) is said once.
LONG_RUN_STEPS = 24
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
    if pd.api.types.is_numeric_dtype(raw[col]) and not pd.api.types.is_bool_dtype(raw[col]):  # a frame's numbers
        values = raw[col].to_numpy(np.float64)
        bad = (np.isinf(values)) | (np.isnan(values) & ~empty_ok)
        if not bad.any():
            return values
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
    with warnings.catch_warnings():  # "could not infer format": the one-line error below says what is wrong
        warnings.simplefilter("ignore")
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
    wanted = [ds.time, ds.target, *ds.past, *ds.counts, *ds.future] + ([ds.series] if ds.series else [])
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
    for col in (*ds.past, *ds.counts):
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
    resolved = Dataset(**{**ds.to_dict(), "freq": step.freqstr, "calendar": ds.calendar or calendar_parts(step.freqstr)})
    if filled:
        _say_filled(frame, resolved, path, filled)
    return frame, resolved, filled


#: (file, its size and time, description) already reported: a file read again in the same process (a search reads
#: it on the driver, then for its knee rule and its ensemble) is reported once.
_SAID: set[tuple[str, ...]] = set()


def _say_filled(frame: pd.DataFrame, ds: Dataset, path: Path, filled: int) -> None:
    """One line, once per file, on the steps filled where a run of them is longer than a day (at most the three
    longest named); shorter runs are for `data info` and --verbose."""
    stat = path.stat() if path.is_file() else None
    key = (str(path), str(stat and (stat.st_size, stat.st_mtime_ns)), ds.describe())
    if key in _SAID:
        return
    _SAID.add(key)
    runs = long_runs(frame, ds)
    what = "target 0" if ds.absent == "zero" else "never a target"
    longest = sorted(runs, key=lambda r: r[2], reverse=True)[:3]
    tail = "; longest: " + ", ".join(f"{n} steps {a} .. {b}" for a, b, n in longest) if longest else ""
    (log.warning if runs else log.debug)("%s: %d step(s) absent from the file were filled (%s, covariates carried "
                                        "forward)%s", path, filled, what, tail)


def long_runs(frame: pd.DataFrame, ds: Dataset) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    """(first, last, steps) of each run of filled steps longer than a day (or than LONG_RUN_STEPS steps)."""
    try:
        per_day = max(1, int(pd.Timedelta(days=1) / pd.Timedelta(pd.tseries.frequencies.to_offset(ds.freq))))
    except ValueError:
        per_day = 1
    longer = per_day if per_day > 1 else LONG_RUN_STEPS
    flag = np.r_[0, frame[IS_MISSING].to_numpy(np.int8), 0]
    edges = np.flatnonzero(np.diff(flag))  # starts at even positions, ends (exclusive) at odd ones
    return [(frame.index[a], frame.index[b - 1], int(b - a)) for a, b in zip(edges[::2], edges[1::2]) if b - a > longer]


def read_frame(path: str | os.PathLike[str] | None, ds: Dataset, *, download: bool = True
               ) -> tuple[pd.DataFrame, str, int, int, Dataset]:
    """The one reader: a described data set -> (frame on its grid, where it came from, steps filled, rows read,
    the description with what the file told: its frequency and calendar). A built-in data set's definition finds
    and checks its own file; a file of one's own is read as CSV or Parquet."""
    definition = definition_of(ds)
    if definition is not None:
        try:
            table, where, source = definition.read(path, download)
        except DataError as exc:
            if path is None:
                raise
            raise DataError(f"{exc} (read as {definition.title}, since no --time and --target describe a file of "
                            "your own: give them for your own series)") from None
    elif path is None:
        raise DataError(f"a dataset of your own needs its file: pass --data FILE ({ds.describe()})")
    else:
        table, source, where = read_table(path), f"--data {path}", Path(path)
    frame, resolved, filled = series_frame(table, ds, where)
    return frame, source, filled, len(table), resolved


def _grid(part: pd.DataFrame, ds: Dataset, step: pd.DateOffset, known: np.ndarray) -> tuple[pd.DataFrame, int]:
    """One series on its regular grid: absent steps get the target 0 or NaN (``ds.absent``), carried-forward
    covariates and ``is_missing`` = 1. Returns the frame and the steps filled."""
    last_known = part.index[known].max() if known.any() else part.index[0]
    full = pd.date_range(part.index[0], part.index[-1], freq=step)
    out = part.reindex(full)
    absent = ~full.isin(part.index)
    before_end = np.asarray(full <= last_known)
    out[IS_MISSING] = (np.isnan(out[ds.target].to_numpy()) & before_end).astype(np.float64)
    counts = list(ds.counts) if ds.absent == "zero" else []
    if ds.absent == "zero":
        out.loc[absent & before_end, [ds.target, *counts]] = 0.0
    if ds.future and _under_a_day(step):  # a known-future value of an absent step: its own day's, first
        day = out.index.normalize()
        for c in ds.future:
            out[c] = out[c].fillna(out[c].groupby(day).transform("first"))
    covariates = [*ds.past, *(c for c in ds.counts if c not in counts), *ds.future]
    if covariates:
        out[covariates] = out[covariates].ffill()
    return out, int((absent & before_end).sum())


def _under_a_day(step: pd.DateOffset) -> bool:
    try:
        return pd.Timedelta(step) < pd.Timedelta(days=1)
    except ValueError:
        return False


# --------------------------------------------------------------------------------------- layout


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


def _lag_name(lag: int, freq: str | None) -> str:
    """A season's lag in the series' own words: 24h and 168h for hourly (or half-hourly) data, 7d, 52w, 12m."""
    off = pd.tseries.frequencies.to_offset(freq or "h")
    if off.rule_code.startswith("W"):
        return f"{lag * off.n}w"
    if off.rule_code in ("MS", "ME", "M"):
        return f"{lag * off.n}m"
    if off.rule_code.split("-")[0] in ("QS", "QE", "Q"):
        return f"{lag * off.n}q"
    try:
        span, hour, day = lag * pd.Timedelta(off), pd.Timedelta(hours=1), pd.Timedelta(days=1)
    except ValueError:
        return f"{lag}_steps"
    if pd.Timedelta(off) >= day and span % day == pd.Timedelta(0):
        return f"{span // day}d"
    return f"{span // hour}h" if span % hour == pd.Timedelta(0) else f"{lag}_steps"


def step_words(freq: str | None) -> tuple[str, str]:
    """One step of a series and several, in words: ('an hour', 'hours'), ('a day', 'days'), ('a 30-minute step',
    '30-minute steps')."""
    off = pd.tseries.frequencies.to_offset(freq or "h")
    words = {"h": "hour", "D": "day", "W": "week", "MS": "month", "ME": "month", "M": "month", "min": "minute",
             "QS": "quarter", "QE": "quarter", "YS": "year", "YE": "year"}
    word = words.get(off.rule_code.split("-")[0])
    if word is None:
        return "a step", "steps"
    if off.n != 1:
        return f"a {off.n}-{word} step", f"{off.n}-{word} steps"
    return ("an " if word == "hour" else "a ") + word, word + "s"


def span_words(steps: int, freq: str | None) -> str:
    """A number of steps as a span in the series' own words: 336 hourly steps are '14 days', 104 weekly ones
    '104 weeks', 672 half-hourly ones '14 days'."""
    off = pd.tseries.frequencies.to_offset(freq or "h")
    try:
        span = steps * pd.Timedelta(off)
    except ValueError:
        span = None
    if span is not None and span >= pd.Timedelta(days=1) and span % pd.Timedelta(days=1) == pd.Timedelta(0) \
            and not off.rule_code.startswith("W"):
        return f"{span // pd.Timedelta(days=1)} days"
    one, many = step_words(freq)
    return f"{steps} {many}" if steps != 1 else one


def lag_words(lag: int, freq: str | None) -> str:
    """A lag in the series' own words: '24 h', '7 d', '52 w'."""
    name = _lag_name(lag, freq)
    return f"{lag} steps" if name.endswith("_steps") else f"{name[:-1]} {name[-1]}"


def baselines_for(cfg: DataConfig) -> dict[str, int]:
    """The naive baselines of a data config: persistence and the series' seasons (hourly: a day and a week;
    daily: a week; weekly: a year; monthly: a year)."""
    freq = cfg.dataset.freq
    return {"persistence": 0, **{f"seasonal_{_lag_name(lag, freq)}": lag for lag in seasons(freq)}}


# --------------------------------------------------------------------------------------- the series' seasons


def seasons(freq: str | None) -> tuple[int, ...]:
    """The series' seasonal periods in steps: a day and a week for steps under a day, a week for daily data (5
    business days), a year for weekly (whatever day the weeks end on), monthly or quarterly data, none otherwise."""
    if not freq:
        return (24, 168)
    off = pd.tseries.frequencies.to_offset(freq)
    try:
        step = pd.Timedelta(off)
    except ValueError:  # weeks that end on a given day, business days, months, quarters, years: no Tick
        if off.n != 1:
            return ()
        if isinstance(off, pd.offsets.Week):  # W-SAT and the like: a week all the same
            return (52,)
        code = off.rule_code.split("-")[0]
        return {"MS": (12,), "ME": (12,), "M": (12,), "QS": (4,), "QE": (4,), "Q": (4,), "B": (5,)}.get(code, ())
    if step < pd.Timedelta(days=1):
        day = int(pd.Timedelta(days=1) / step)
        return (day, 7 * day)
    if step == pd.Timedelta(days=1):
        return (7,)
    return (52,) if step == pd.Timedelta(weeks=1) else ()


def chain_windows(freq: str | None) -> tuple[int, tuple[int, ...]]:
    """(window, lags) in steps of the post-processing chain of a user's series: two weeks and
    (1, day, week) where a step is under a day; 8 weeks and (1, a week) for daily data; 2 years (or 104 steps) and
    (1, the season) otherwise."""
    found = seasons(freq)
    if len(found) == 2:
        return 14 * found[0], (1, *found)
    if found in ((7,), (5,)):  # daily or business days: 8 weeks
        return 8 * found[0], (1, found[0])
    return 2 * found[0] if found else 104, (1, *found)


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
