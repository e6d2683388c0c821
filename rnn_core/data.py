"""The bikes data pipeline: find/verify/load ``hour.csv`` -> hourly grid -> features -> windows -> splits.

Pure pandas/numpy/torch. The output, :class:`BikeData`, is one small picklable object that travels
through Ray's object store to every trial.

Choices documented here (and in the README):

* **Hourly grid.** The raw file lacks 165 of the 17,544 hours of 2011-2012 (mostly night hours with
  no rentals, and the Hurricane Sandy shutdown of 2012-10-29/30). We reindex to the full grid so that
  "24 steps back" always means 24 hours back. A filled hour gets zero counts (no rental was logged),
  forward-filled weather, the day's holiday/workingday flags, and ``is_missing = 1``.
* **No target leakage.** A window's input is the ``sequence_size`` hours ending with hour t; its
  targets are cnt at t+1 ... t+horizon. Counts (cnt, casual, registered) enter only as history, so
  no count of an hour after t is in the input. Only calendar features (known in advance) of the
  target hours may be added, as ``future_calendar``.
* **Scaling.** Continuous features are standardised with mean/std of the training hours only.
  The target transform is ``log1p`` then standardise (train statistics) by default: counts are
  heavy-tailed and the log makes the MSE loss care about quiet hours too. ``sqrt`` (then standardise)
  sits between the log and the counts: the square root evens out a count's noise, so busy hours, which
  carry most of the error in bikes, weigh more than under the log (the default preset's choice).
  ``scale100`` divides by 100 as the lecture does. All invert to bikes per hour in :class:`TargetScaler`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view  # targets: [T] -> [T-H+1, H] views

from rnn_core import series as user_series
from rnn_core.config import BIKES, TARGET_FORMS, TARGET_TRANSFORMS, DataConfig, Dataset, ModelConfig, target_outputs
from rnn_core.series import DataError

log = logging.getLogger(__name__)

#: Data set 275 of the UCI archive. A setting: override with ``RNN_SEARCH_DATA_URL``.
DEFAULT_URL = "https://archive.ics.uci.edu/static/public/275/bike+sharing+dataset.zip"
RAW_COLUMNS = (
    "instant", "dteday", "season", "yr", "mnth", "hr", "holiday", "weekday", "workingday",
    "weathersit", "temp", "atemp", "hum", "windspeed", "casual", "registered", "cnt",
)
RAW_ROWS = 17_379
CNT_TOTAL = 3_292_679
GRID_START = pd.Timestamp("2011-01-01 00:00")
GRID_END = pd.Timestamp("2012-12-31 23:00")
GRID_ROWS = 17_544
COUNT_COLUMNS = ("cnt", "casual", "registered")
WEATHER_COLUMNS = ("weathersit", "temp", "atemp", "hum", "windspeed")

#: Calendar features, known in advance for any hour (so they may describe target hours too). ``daylight``
#: (the sine of the sun's elevation at mid-hour in Washington DC, the bikes data's city) only where the
#: config asks for it (DataConfig.daylight; files from before it lack it).
CALENDAR_FEATURES = (
    "hour_sin", "hour_cos", "dow_sin", "dow_cos", "month_sin", "month_cos", "holiday", "workingday", "daylight",
)
#: Where the bikes data was counted: Washington DC (latitude, longitude in degrees east, time zone).
SITE = (38.9, -77.04, "America/New_York")
#: The input features of every hour of a window, in order. The one place that lists them.
FEATURES = CALENDAR_FEATURES + (
    "weather_1", "weather_2", "weather_3", "weather_4",  # weathersit one-hot, as the lecture does
    "temp", "atemp", "hum", "windspeed",
    "is_missing",
    "cnt_log1p", "casual_log1p", "registered_log1p",  # history only: hours <= t
)
#: Standardised with training-split statistics; the others are already in [-1, 1] or {0, 1}.
SCALED_FEATURES = ("temp", "atemp", "hum", "windspeed", "cnt_log1p", "casual_log1p", "registered_log1p")
SCALED_PREFIXES = ("cnt_log1p_lag",)

SPLIT_NAMES = ("train", "val", "test")


def calendar_names(cfg: DataConfig) -> tuple[str, ...]:
    """The bikes data's calendar features under this config, in order."""
    return CALENDAR_FEATURES if cfg.daylight else tuple(n for n in CALENDAR_FEATURES if n != "daylight")


def future_width(cfg: DataConfig) -> int:
    """Features known of each target step (its calendar, and a user's known-future covariates)."""
    return len(calendar_names(cfg)) if cfg.dataset.builtin else len(user_series.future_names(cfg.dataset))


def target_column(cfg: DataConfig | Dataset) -> str:
    """The frame's column that is forecast: cnt for the bikes data."""
    ds = cfg.dataset if isinstance(cfg, DataConfig) else cfg
    return "cnt" if ds.builtin else ds.target


def n_features(cfg: DataConfig) -> int:
    """F: features per input step."""
    return len(feature_names(cfg))


def feature_names(cfg: DataConfig) -> list[str]:
    """Names of the F input channels, in order."""
    if not cfg.dataset.builtin:
        return user_series.feature_names(cfg)
    calendar = calendar_names(cfg)
    names = [*calendar, *FEATURES[len(CALENDAR_FEATURES):]] + [f"cnt_log1p_lag{k}" for k in cfg.seasonal_lags]
    if cfg.future_calendar:
        names += [f"{n}@t+{k}" for k in range(1, cfg.horizon + 1) for n in calendar]
    return names


# --------------------------------------------------------------------------------------- scalers


@dataclass(frozen=True)
class TargetScaler:
    """Bikes/hour <-> model target space. Plain floats, so it stores in a weights-only checkpoint.

    ``form`` (DataConfig.target_form), with f the transform: 'level' z = (f(y) - mean) / std; 'change'
    z = (f(y[t+h]) - f(y[t]) - change_mean) / change_std, so ``forward`` and ``inverse`` take the counts at the
    origins, ``anchor`` [N] (rnn_core.data.origin_values); 'both' the two side by side, [N, 2H] (levels first),
    whose inverse is the mean of the two forecasts in bikes, [N, H]."""

    transform: str
    mean: float = 0.0
    std: float = 1.0
    form: str = "level"
    change_mean: float = 0.0
    change_std: float = 1.0

    def _f(self, counts: np.ndarray | torch.Tensor) -> Any:
        """The transform alone: counts -> its scale (before the mean and std)."""
        if self.transform == "scale100":
            return counts / 100.0
        if self.transform == "standard":
            return counts
        lib = torch if isinstance(counts, torch.Tensor) else np
        if self.transform == "sqrt":  # counts are >= 0; the clip keeps a stray negative from making NaN
            return lib.sqrt(lib.clip(counts, 0.0, None))
        return lib.log1p(counts)

    def _f_inverse(self, v: np.ndarray | torch.Tensor) -> Any:
        if self.transform == "scale100":
            return v * 100.0
        if self.transform == "standard":
            return v
        lib = torch if isinstance(v, torch.Tensor) else np
        if self.transform == "sqrt":  # a root below zero is no count: 0, not its square
            return lib.clip(v, 0.0, None) ** 2
        return lib.expm1(v)

    def _start(self, like: np.ndarray | torch.Tensor, anchor: np.ndarray | None) -> Any:
        """f(y[t]) as a column [N, 1], what a change is measured from."""
        if anchor is None:
            raise ValueError(f"a {self.form} target needs the counts at the forecast origins (anchor)")
        start = self._f(np.asarray(anchor, np.float64))[:, None]  # [N, 1]
        return torch.from_numpy(start).to(like) if isinstance(like, torch.Tensor) else start

    def forward(self, counts: np.ndarray | torch.Tensor, anchor: np.ndarray | None = None) -> Any:
        """Counts [N, H] (any shape for a level) -> model space ([N, 2H] for 'both'); ``anchor`` [N]: the class."""
        f = self._f(counts)
        level = (f - self.mean) / self.std if self.form != "change" else None
        if self.form == "level":
            return level
        change = (f - self._start(counts, anchor) - self.change_mean) / self.change_std
        if self.form == "change":
            return change
        return torch.cat([level, change], -1) if isinstance(counts, torch.Tensor) else np.concatenate([level, change], -1)

    def inverse(self, z: np.ndarray | torch.Tensor, anchor: np.ndarray | None = None) -> Any:
        """Model outputs [N, H] ([N, 2H] for 'both') -> bikes per hour [N, H]."""
        if self.form == "level":
            return self._f_inverse(z * self.std + self.mean)
        h = z.shape[-1] // 2 if self.form == "both" else 0
        change = self._f_inverse(z[..., h:] * self.change_std + self.change_mean + self._start(z, anchor))
        if self.form == "change":
            return change
        return 0.5 * (self._f_inverse(z[..., :h] * self.std + self.mean) + change)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> TargetScaler:
        """A stored scaler, every field checked (a model file's field is never defaulted: a missing std would
        silently scale by 1; only the form and its change statistics may be absent, in files written before
        them, which learnt the level). Raises ValueError naming the field."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a mapping with transform, mean and std, got {type(d).__name__}")
        fields, later = ("transform", "mean", "std"), ("form", "change_mean", "change_std")
        unknown, missing = sorted(set(d) - {*fields, *later}), [k for k in fields if k not in d]
        if unknown or missing:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}" if unknown else f"missing field(s) {', '.join(missing)}")
        if d["transform"] not in TARGET_TRANSFORMS:
            raise ValueError(f"transform {d['transform']!r}: expected one of {', '.join(TARGET_TRANSFORMS)}")
        form = d.get("form", "level")
        if form not in TARGET_FORMS:
            raise ValueError(f"form {form!r}: expected one of {', '.join(TARGET_FORMS)}")
        if form != "level" and not {"change_mean", "change_std"} <= set(d):
            raise ValueError(f"a {form} target needs the fields change_mean and change_std")
        numbers = {k: _finite(k, d.get(k, dflt)) for k, dflt in
                   (("mean", 0.0), ("std", 1.0), ("change_mean", 0.0), ("change_std", 1.0))}
        for k in ("std", "change_std"):
            if numbers[k] <= 0:
                raise ValueError(f"{k} {numbers[k]!r}: expected a number above 0")
        return cls(d["transform"], form=form, **numbers)


def _finite(name: str, v: Any) -> float:
    """A stored number, checked: a finite int or float (bool is not a number here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise ValueError(f"{name} {v!r}: expected a finite number")
    return float(v)


@dataclass(frozen=True)
class FeatureScaler:
    """Per-feature mean/std (training hours only); identity (0, 1) for unscaled features."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, values: np.ndarray) -> np.ndarray:
        """[T, len(names)] -> standardised, float32."""
        return ((values - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: Any) -> FeatureScaler:
        """A stored scaler, every field checked. Raises ValueError naming the field."""
        if not isinstance(d, dict) or set(d) != {"names", "mean", "std"}:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"expected the fields names, mean and std, got {got}")
        names = d["names"]
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise ValueError("names: expected a list of feature names")
        for key in ("mean", "std"):
            if not isinstance(d[key], (list, tuple)) or len(d[key]) != len(names):
                raise ValueError(f"{key}: expected {len(names)} numbers, one per feature name")
        mean = tuple(_finite(f"mean of {n}", v) for n, v in zip(names, d["mean"]))
        std = tuple(_finite(f"std of {n}", v) for n, v in zip(names, d["std"]))
        if bad := [n for n, v in zip(names, std) if v <= 0]:
            raise ValueError(f"std of {bad[0]}: expected a number above 0")
        return cls(tuple(names), mean, std)


# --------------------------------------------------------------------------------------- output


@dataclass
class Split:
    """One split's windows. N windows, L steps, F features, H horizon."""

    X: torch.Tensor
    """[N, L, F] float32 inputs (a strided view over the hourly feature matrix: no copy per window)."""
    y: torch.Tensor
    """[N, H] float32 targets in model space (see TargetScaler)."""
    y_raw: torch.Tensor
    """[N, H] float32 targets in bikes per hour."""
    origin: np.ndarray
    """[N] int index (into BikeData.hours) of each window's forecast origin t, its last input hour."""
    target_time: np.ndarray
    """[N, H] datetime64 timestamps of the target hours t+1 .. t+H."""
    anchor: np.ndarray | None = None
    """[N] the target at each origin t (rnn_core.data.origin_values) when ``y`` holds a change from it, else None."""

    def __len__(self) -> int:
        return int(self.X.shape[0])


@dataclass
class BikeData:
    """Everything a trial needs; small and picklable (travels once through Ray's object store)."""

    config: DataConfig
    source: str
    feature_names: list[str]
    feature_scaler: FeatureScaler
    target_scaler: TargetScaler
    hours: np.ndarray
    """[T] datetime64 of the hourly grid."""
    cnt: np.ndarray
    """[T] float32 raw counts on the grid (for baselines)."""
    n_filled: int
    raw_rows: int
    splits: dict[str, Split] = field(default_factory=dict)
    filled: np.ndarray | None = None
    """[T] bool: hours absent from the file, filled on the grid (zero counts)."""
    starts: np.ndarray | None = field(default=None, repr=False)
    """[T] the first row of each row's series (a user's file of several series), for the baselines."""

    def filled_targets(self, name: str) -> tuple[int, int]:
        """(filled, all) distinct target hours of a split: the filled ones are scored as zero rentals."""
        s = self[name]
        rows = np.unique(s.origin[:, None] + np.arange(1, self.config.horizon + 1))  # [N, H] -> distinct hours
        return (int(self.filled[rows].sum()) if self.filled is not None else 0), len(rows)

    def model_config(self, **fields: Any) -> ModelConfig:
        """A ModelConfig for these windows: F and H from the data, the architecture from ``fields``."""
        future = future_width(self.config) if self.config.future_calendar else 0
        if fields.get("arch") == "seq2seq" and not future:  # a constraint across the two configs
            raise ValueError("arch seq2seq feeds its decoder the calendar of each target hour: it needs the future "
                             "calendar features (drop --no-future-calendar)")
        return ModelConfig(n_features=len(self.feature_names), horizon=self.config.horizon, future_features=future,
                           targets=target_outputs(self.config.target_form), **fields)

    def __getitem__(self, name: str) -> Split:
        if name not in self.splits:
            raise KeyError(f"unknown split {name!r}; expected one of {', '.join(self.splits)}")
        return self.splits[name]


# --------------------------------------------------------------------------------------- finding


def cache_dir() -> Path:
    """The data cache: ``$RNN_SEARCH_CACHE``, default ``~/.cache/rnn-search``."""
    return Path(os.environ.get("RNN_SEARCH_CACHE") or Path.home() / ".cache" / "rnn-search")


def _how_to_provide() -> str:
    return (
        "Provide hour.csv of the UCI Bike Sharing data set in one of these ways: pass --data PATH, "
        "set RNN_SEARCH_DATA=PATH, place it in the cache as "
        f"{cache_dir() / 'hour.csv'} ($RNN_SEARCH_CACHE), or let it download from "
        f"{os.environ.get('RNN_SEARCH_DATA_URL') or DEFAULT_URL} (setting: RNN_SEARCH_DATA_URL)."
    )


def find_data(path: str | os.PathLike[str] | None = None, *, download: bool = True) -> tuple[Path, str]:
    """Locate hour.csv: ``path``, then ``$RNN_SEARCH_DATA``, then the cache, then a download.

    Returns the file and a description of where it came from.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: no such file (from --data). {_how_to_provide()}")
        return p, f"--data {p}"
    env = os.environ.get("RNN_SEARCH_DATA")
    if env:
        p = Path(env)
        if not p.is_file():
            raise DataError(f"{p}: no such file (from RNN_SEARCH_DATA). {_how_to_provide()}")
        return p, f"RNN_SEARCH_DATA={p}"
    cached = cache_dir() / "hour.csv"
    if cached.is_file():
        return cached, f"cache {cached}"
    if not download:
        raise DataError(f"hour.csv not found. {_how_to_provide()}")
    url = os.environ.get("RNN_SEARCH_DATA_URL") or DEFAULT_URL
    return download_data(url, cache_dir()), f"downloaded from {url} into {cached}"


def download_data(url: str, cache: Path, timeout: float = 60.0) -> Path:
    """Download the UCI zip, extract and verify hour.csv, then move it atomically into ``cache``.

    A failed, partial or corrupted download leaves nothing in the cache.
    """
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))  # same filesystem: rename is atomic
    try:
        zpath = tmp / "bike-sharing.zip"
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(zpath, "wb") as out:
                shutil.copyfileobj(resp, out)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DataError(f"download of {url} failed: {exc}. {_how_to_provide()}") from None
        try:
            with zipfile.ZipFile(zpath) as zf:
                members = [n for n in zf.namelist() if Path(n).name == "hour.csv"]
                if not members:
                    raise DataError(f"{url}: the zip holds no hour.csv. {_how_to_provide()}")
                csv = tmp / "hour.csv"
                with zf.open(members[0]) as src, open(csv, "wb") as out:
                    shutil.copyfileobj(src, out)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise DataError(f"{url}: the download is not a complete zip ({exc}). {_how_to_provide()}") from None
        try:
            verify(read_raw(csv), csv)
        except DataError as exc:
            raise DataError(f"{url}: downloaded hour.csv failed verification: {exc}. {_how_to_provide()}") from None
        final = cache / "hour.csv"
        os.replace(csv, final)
        log.info("verified and cached %s", final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------- parsing


def _line(row: int) -> int:
    """0-based data row -> 1-based line of the CSV (line 1 is the header)."""
    return int(row) + 2


def read_raw(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Parse and validate hour.csv. Returns the raw rows with a ``timestamp`` column.

    Raises :class:`DataError` naming the file, and the line and column where there is one.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected hour.csv with a header and 17,379 rows") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot be read as CSV: {exc}") from None
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(RAW_COLUMNS)}")
    if raw.empty:
        raise DataError(f"{path}: the file has a header but no data rows")

    df, dates = _numbers(raw, path)
    _check_ranges(df, raw, path)
    df["timestamp"] = _timestamps(df, dates, path).to_numpy()
    return df


def _numbers(raw: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, pd.Series]:
    """The numeric columns as floats (every cell a finite number) and the parsed dates."""
    df = pd.DataFrame(index=raw.index)
    for col in RAW_COLUMNS:
        if col == "dteday":
            continue
        values = pd.to_numeric(raw[col].str.strip(), errors="coerce")
        bad = values.isna() | ~np.isfinite(values.fillna(0.0))  # 'inf', '-inf' and 'nan' parse as floats
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            what = "a number" if np.isnan(values.iloc[row]) else "a finite number"
            raise DataError(f"{path}: line {_line(row)}, column '{col}': {raw[col].iloc[row]!r} is not {what}")
        df[col] = values.astype(np.float64)
    dates = pd.to_datetime(raw["dteday"].str.strip(), format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise DataError(
            f"{path}: line {_line(row)}, column 'dteday': {raw['dteday'].iloc[row]!r} is not a date (YYYY-MM-DD)"
        )
    return df, dates


def _check_ranges(df: pd.DataFrame, raw: pd.DataFrame, path: Path) -> None:
    """Each column within its range, and casual + registered = cnt."""
    ranges = {
        "hr": (0, 23, "an hour from 0 to 23"),
        "weathersit": (1, 4, "a weather situation from 1 to 4"),
        "holiday": (0, 1, "0 or 1"),
        "workingday": (0, 1, "0 or 1"),
        "casual": (0, np.inf, "a count >= 0"),
        "registered": (0, np.inf, "a count >= 0"),
        "cnt": (0, np.inf, "a count >= 0"),
    }
    for col, (lo, hi, what) in ranges.items():
        v = df[col].to_numpy()
        bad = (v < lo) | (v > hi) | ((col in ("hr", "weathersit", "holiday", "workingday")) & (v != np.round(v)))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}: line {_line(row)}, column '{col}': {raw[col].iloc[row]!r} is out of range; expected {what}")
    sums = df["casual"].to_numpy() + df["registered"].to_numpy()
    bad = sums != df["cnt"].to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: line {_line(row)}, column 'cnt': casual + registered = {sums[row]:g} but cnt = {df['cnt'].iloc[row]:g}"
        )


def _timestamps(df: pd.DataFrame, dates: pd.Series, path: Path) -> pd.Series:
    """dteday + hr: unique, in time order, within the grid's bounds."""
    ts = dates + pd.to_timedelta(df["hr"].astype(np.int64), unit="h")
    tsv = ts.to_numpy()
    dup = pd.Series(tsv).duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(f"{path}: line {_line(row)}, columns 'dteday'/'hr': duplicated timestamp {ts.iloc[row]}")
    back = np.flatnonzero(tsv[1:] <= tsv[:-1])
    if back.size:
        row = int(back[0]) + 1
        raise DataError(
            f"{path}: line {_line(row)}, columns 'dteday'/'hr': timestamp {ts.iloc[row]} comes after "
            f"{ts.iloc[row - 1]}; rows must be in time order"
        )
    if tsv[0] < GRID_START.to_datetime64() or tsv[-1] > GRID_END.to_datetime64():
        raise DataError(
            f"{path}: timestamps run from {ts.iloc[0]} to {ts.iloc[-1]}; expected hours within {GRID_START} .. {GRID_END}"
        )
    return ts



def verify(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """The checks a downloaded file must pass: row count, the cnt total (per-row sums are checked in read_raw)."""
    if len(df) != RAW_ROWS:
        raise DataError(f"{path}: {len(df):,} rows, expected {RAW_ROWS:,}")
    total = int(df["cnt"].sum())
    if total != CNT_TOTAL:
        raise DataError(f"{path}: cnt totals {total:,}, expected {CNT_TOTAL:,}")


#: A run of absent hours longer than this is warned about: rather a gap in the file than quiet night hours.
LONG_FILL_HOURS = 24


def hourly_grid(raw: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Reindex to every hour from the file's first to its last (all 17,544 hours of 2011-2012 for the full
    file): hours are never invented beyond what the file covers. Returns the frame (indexed by timestamp) and
    the hours filled."""
    full = pd.date_range(raw["timestamp"].iloc[0], raw["timestamp"].iloc[-1], freq="h")
    df = raw.set_index("timestamp").reindex(full)
    missing = df["cnt"].isna().to_numpy()
    df["is_missing"] = missing.astype(np.float64)
    for col in COUNT_COLUMNS:
        df[col] = df[col].fillna(0.0)  # no rental was logged in that hour
    # Day-level flags: take them from other hours of the same day, else carry the last known value.
    day = df.index.normalize()
    for col in ("holiday", "workingday"):
        df[col] = df[col].groupby(day).transform("first")
    df[list(WEATHER_COLUMNS) + ["holiday", "workingday"]] = (
        df[list(WEATHER_COLUMNS) + ["holiday", "workingday"]].ffill().bfill()
    )
    return df, int(missing.sum())


def load_frame(path: str | os.PathLike[str] | None = None, *, download: bool = True,
               dataset: Dataset = BIKES) -> tuple[pd.DataFrame, str, int, int]:
    """Find, parse and grid the data. Returns (frame, source description, steps filled, raw rows)."""
    return read_frame(path, dataset, download=download)[:4]


def read_frame(path: str | os.PathLike[str] | None, dataset: Dataset = BIKES, *,
               download: bool = True) -> tuple[pd.DataFrame, str, int, int, Dataset]:
    """:func:`load_frame`, and the dataset description with what the file told (a user's series' frequency)."""
    if not dataset.builtin:
        if path is None:
            raise DataError(f"a dataset of your own ({dataset.describe()}) needs its file: pass --data FILE")
        frame, resolved, filled = user_series.read_series(path, dataset)
        return frame, f"--data {path}", filled, len(frame) - filled, resolved
    return (*_bikes_frame(path, download), BIKES)


def _bikes_frame(path: str | os.PathLike[str] | None, download: bool) -> tuple[pd.DataFrame, str, int, int]:
    p, source = find_data(path, download=download)
    raw = read_raw(p)
    frame, n_filled = hourly_grid(raw)
    for start, end in long_fills(frame):
        log.warning("%s: the %d hours %s .. %s are absent from the file: counted as hours without rentals (zero), "
                    "weather carried forward", p, (end - start) // pd.Timedelta(hours=1) + 1, start, end)
    return frame, source, n_filled, len(raw)


def long_fills(frame: pd.DataFrame, longer_than: int = LONG_FILL_HOURS) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """(first, last) hour of each run of filled hours longer than ``longer_than`` hours."""
    missing = np.r_[0, frame["is_missing"].to_numpy(np.int8), 0]
    edges = np.flatnonzero(np.diff(missing))  # starts at even positions, ends (exclusive) at odd ones
    return [(frame.index[a], frame.index[b - 1]) for a, b in zip(edges[::2], edges[1::2]) if b - a > longer_than]


# --------------------------------------------------------------------------------------- features


def calendar_features(times: pd.DatetimeIndex, holiday: np.ndarray, workingday: np.ndarray,
                      daylight: bool = True) -> np.ndarray:
    """[T] hours -> [T, C] float64, in CALENDAR_FEATURES order (C = 9; 8 without ``daylight``)."""
    hour = times.hour.to_numpy()
    dow = times.day_of_week.to_numpy()
    month = times.month.to_numpy() - 1
    tau = 2 * np.pi
    return np.column_stack([
        np.sin(tau * hour / 24), np.cos(tau * hour / 24),
        np.sin(tau * dow / 7), np.cos(tau * dow / 7),
        np.sin(tau * month / 12), np.cos(tau * month / 12),
        holiday, workingday, *([sun_height(times)] if daylight else []),
    ])


def sun_height(times: pd.DatetimeIndex, site: tuple[float, float, str] = SITE) -> np.ndarray:
    """[T] local hours -> [T] the sine of the sun's elevation at the middle of each hour at ``site`` (NOAA's
    approximations of the declination and the equation of time; within a few minutes of sunrise and sunset).
    Positive by day; the local clock (daylight saving time) is taken from the site's time zone."""
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


def future_calendar(times: pd.DatetimeIndex, holiday: np.ndarray, workingday: np.ndarray, k: int,
                    daylight: bool = True) -> np.ndarray:
    """Calendar features of hour s+k for every hour s: [T, C]. Past the data's end, the flags fall back to
    no holiday and Monday-Friday as working days."""
    ahead = times + pd.Timedelta(hours=k)
    hol = np.concatenate([holiday[k:], np.zeros(k)])
    work = np.concatenate([workingday[k:], (ahead[-k:].day_of_week < 5).astype(np.float64)])
    return calendar_features(ahead, hol, work, daylight)


def raw_features(frame: pd.DataFrame, cfg: DataConfig) -> np.ndarray:
    """Hourly frame -> unscaled feature matrix [T, F] (F = n_features(cfg)), float64, in feature_names order."""
    if not cfg.dataset.builtin:
        return user_series.raw_features(frame, cfg)
    times = pd.DatetimeIndex(frame.index)
    hol = frame["holiday"].to_numpy(np.float64)
    work = frame["workingday"].to_numpy(np.float64)
    weather = frame["weathersit"].to_numpy().astype(np.int64)
    onehot = np.eye(4)[weather - 1]  # [T, 4]
    cols = [
        calendar_features(times, hol, work, cfg.daylight),
        onehot,
        frame[["temp", "atemp", "hum", "windspeed", "is_missing"]].to_numpy(np.float64),
        np.log1p(frame[list(COUNT_COLUMNS)].to_numpy(np.float64)),
    ]
    logc = np.log1p(frame["cnt"].to_numpy(np.float64))
    for k in cfg.seasonal_lags:
        # step s sees the count at hour s+1-k; before the data starts there is none: 0 (as a filled hour)
        lagged = np.zeros_like(logc)
        lagged[k - 1 :] = logc[: len(logc) - k + 1]
        cols.append(lagged[:, None])
    if cfg.future_calendar:
        cols += [future_calendar(times, hol, work, k, cfg.daylight) for k in range(1, cfg.horizon + 1)]
    return np.concatenate(cols, axis=1)


def fit_feature_scaler(values: np.ndarray, names: list[str], train_rows: slice | np.ndarray,
                       scaled: set[str] | None = None) -> FeatureScaler:
    """Mean/std of the scaled features (the bikes data's SCALED_FEATURES, or ``scaled``) over the training hours
    only; identity elsewhere. With ``scaled`` (a user's series) NaN cells (covariates past a series' end) are
    left out of the statistics."""
    mean = np.zeros(len(names))
    std = np.ones(len(names))
    for j, n in enumerate(names):
        if scaled is not None and n in scaled:
            col = values[train_rows, j]
            col = col[np.isfinite(col)]
            mean[j] = col.mean() if len(col) else 0.0
            std[j] = col.std() if len(col) and col.std() > 0 else 1.0
        elif scaled is None and (n in SCALED_FEATURES or n.startswith(SCALED_PREFIXES)):
            col = values[train_rows, j]
            mean[j] = col.mean()
            std[j] = col.std() if col.std() > 0 else 1.0
    return FeatureScaler(tuple(names), tuple(mean.tolist()), tuple(std.tolist()))


def fit_target_scaler(train_counts: np.ndarray, transform: str) -> TargetScaler:
    """Target statistics from the training hours only (scale100 needs none), for a level target."""
    if transform == "scale100":
        return TargetScaler("scale100")
    c = train_counts.astype(np.float64)
    c = c[np.isfinite(c)]  # a user's missing steps are NaN
    c = TargetScaler(transform).forward(c)  # the transform alone (mean 0, std 1): its statistics are fitted next
    return TargetScaler(transform, float(c.mean()), float(c.std()))


def _fit_target(frame: pd.DataFrame, cfg: DataConfig, cnt: np.ndarray, train_rows: np.ndarray,
                origins: np.ndarray) -> TargetScaler:
    """The target scaler: the level's statistics over the training hours (``train_rows``), and for a change
    target (DataConfig.target_form) those of the changes of the training windows (``origins`` [N])."""
    level = fit_target_scaler(cnt[train_rows], cfg.target_transform)
    if cfg.target_form == "level":
        return level
    if cfg.target_transform == "scale100":
        return dataclasses.replace(level, form=cfg.target_form)
    plain = TargetScaler(cfg.target_transform, form="change")  # the change alone (mean 0, std 1)
    c = plain.forward(make_targets(cnt, origins, cfg.horizon).astype(np.float64), origin_values(frame, cfg, origins))
    c = c[np.isfinite(c)]  # [N * H] known changes
    return dataclasses.replace(level, form=cfg.target_form, change_mean=float(c.mean()), change_std=float(c.std()))


def origin_values(frame: pd.DataFrame, cfg: DataConfig, origins: np.ndarray) -> np.ndarray | None:
    """[N] the target at each forecast origin t, what a change target (DataConfig.target_form) is measured
    from; None for a level target. A user's missing step at t: the last known value of its series before it (what its
    inputs carry forward), or 0 where its series has none yet."""
    if cfg.target_form == "level":
        return None
    y = frame[target_column(cfg)]
    if not cfg.dataset.builtin:  # within each series: never carried from one series into the next
        y = y.groupby(user_series.segment_start(frame, cfg.dataset)).ffill()
    return np.nan_to_num(y.to_numpy(np.float64)[np.asarray(origins, np.int64)], nan=0.0)


# --------------------------------------------------------------------------------------- windows


def window_origins(n_hours: int, cfg: DataConfig) -> np.ndarray:
    """Forecast origins t (index of the last input hour) of all complete windows: [N]."""
    return np.arange(cfg.sequence_size - 1, n_hours - cfg.horizon)


def valid_origins(frame: pd.DataFrame, cfg: DataConfig) -> np.ndarray:
    """[N] the origins of complete windows of the frame: within one series (inputs t-L+1..t and targets
    t+1..t+H), every target known (a user's missing steps are never targets)."""
    if cfg.dataset.builtin:
        return window_origins(len(frame), cfg)
    y = frame[cfg.dataset.target].to_numpy(np.float64)
    out = []
    for a, b in user_series.segments(frame, cfg.dataset):
        o = np.arange(a + cfg.sequence_size - 1, b - cfg.horizon)
        if len(o):
            known = np.isfinite(sliding_window_view(y[a:b], cfg.horizon)[o - a + 1]).all(axis=1)  # [N]
            out.append(o[known])
    return np.concatenate(out) if out else np.empty(0, np.int64)


def default_bounds(hours: np.ndarray, origins: np.ndarray, cfg: DataConfig) -> tuple[str, str, str | None]:
    """The default split's (validation start, test start, test end): 2012-09-01 and 2012-11-01 for the bikes
    data; for a user's series, the last tenth of its target times is the test period and the tenth before it
    validation."""
    if cfg.dataset.builtin:
        return "2012-09-01", "2012-11-01", None
    if not len(origins):
        raise DataError(f"no complete window of {cfg.sequence_size} inputs and {cfg.horizon} known targets in the data")
    first, last = pd.Timestamp(hours[origins + 1].min()), pd.Timestamp(hours[origins + cfg.horizon].max())
    span, step = last - first, pd.tseries.frequencies.to_offset(cfg.dataset.freq or "h")

    def on_grid(t: pd.Timestamp) -> str:  # a boundary on the series' own steps
        return str(t.ceil(step) if isinstance(step, pd.offsets.Tick) else t.normalize())

    return on_grid(first + 0.8 * span), on_grid(first + 0.9 * span), None


def split_origins(hours: np.ndarray, cfg: DataConfig, origins: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Chronological split by target timestamp: a window belongs to a split when all its target hours
    t+1..t+H do, so no target hour falls in two splits. ``origins``: the candidates (valid_origins; default
    every complete window of one series)."""
    origins = window_origins(len(hours), cfg) if origins is None else np.asarray(origins, np.int64)
    if cfg.split == "lecture":
        # The lecture's split counts windows: last 24 test, the 96 before validation. With H > 1 we drop
        # H-1 windows at each boundary so that no target hour is shared.
        gap = cfg.horizon - 1
        test = origins[-24:]
        val = origins[-24 - gap - 96 : -24 - gap]
        train = origins[: -24 - 2 * gap - 96]
        return {"train": train, "val": val, "test": test}
    if cfg.split == "default":
        val_start, test_start, test_end = default_bounds(hours, origins, cfg)
    else:
        val_start, test_start, test_end = cfg.val_start, cfg.test_start, cfg.test_end
    first = hours[origins + 1]
    last = hours[origins + cfg.horizon]
    vs = np.datetime64(pd.Timestamp(val_start))
    ts = np.datetime64(pd.Timestamp(test_start))
    te = np.datetime64(pd.Timestamp(test_end)) if test_end else hours.max()
    if test_end and len(str(test_end)) <= 10:  # a bare date includes its whole day
        te = np.datetime64(pd.Timestamp(test_end) + pd.Timedelta(hours=23))
    check_covered(hours, cfg, vs, ts, te)
    test = origins[(first >= ts) & (last <= te)]
    if cfg.val_windows == 1:
        return {"train": origins[last < vs], "val": origins[(first >= vs) & (last < ts)], "test": test}
    # K windows with the single window's total length, spread evenly over the year before the test period.
    k = cfg.val_windows
    length, spacing = (ts - vs) / k, np.timedelta64(365 * 24, "h") / k
    if length > spacing:
        raise ValueError(f"{k} validation windows of {length} each do not fit apart in the year before the test "
                         "period: start validation at most a year before the test period")
    start = hours[np.maximum(origins - cfg.sequence_size + 1, 0)]  # first input hour of each window
    in_val = np.zeros(len(origins), dtype=bool)
    touches = np.zeros(len(origins), dtype=bool)
    for i in range(k):
        b = ts - i * spacing
        a = b - length
        in_val |= (first >= a) & (last < b)
        touches |= (start < b) & (last >= a)  # an input or target hour in [a, b)
    return {"train": origins[(last < ts) & ~touches], "val": origins[in_val], "test": test}


def check_covered(hours: np.ndarray, cfg: DataConfig, vs: np.datetime64, ts: np.datetime64, te: np.datetime64) -> None:
    """Refuse a split whose periods the data does not cover (training before validation, then the test period
    up to its end), in one line: windows from hours the file lacks would be scored as if they were real."""
    name = "the default split" if cfg.split == "default" else f"--split {cfg.val_start},{cfg.test_start}" + (
        f",{cfg.test_end}" if cfg.test_end else "")
    def hour(t: np.datetime64) -> str:
        return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M")

    test = f"test {hour(ts)} .. {hour(te)}" if cfg.test_end else f"test from {hour(ts)}"
    if not hours.min() < vs < ts <= hours.max() or te > hours.max():
        raise DataError(f"{name} (validation from {hour(vs)}, {test}) is not covered: the data covers "
                        f"{hour(hours.min())} .. {hour(hours.max())}; give --split VAL_START,TEST_START[,TEST_END] within it")


def covered_hours(origins: np.ndarray, n_hours: int, seq: int, horizon: int) -> np.ndarray:
    """[T] bool: the hours that some window's inputs (t-L+1..t) or targets (t+1..t+H) cover."""
    edges = np.zeros(n_hours + 1, dtype=np.int64)
    np.add.at(edges, np.maximum(origins - seq + 1, 0), 1)
    np.add.at(edges, np.minimum(origins + horizon + 1, n_hours), -1)
    return np.cumsum(edges)[:n_hours] > 0


def make_windows(features: np.ndarray, origins: np.ndarray, seq: int) -> torch.Tensor:
    """Hourly features [T, F] and consecutive origins [N] -> inputs [N, L, F] ending at each origin.

    Vectorised: one strided view, no loop over windows.
    """
    if len(origins) > 1 and not np.all(np.diff(origins) == 1):
        if not np.all(np.diff(origins) > 0):
            raise ValueError("make_windows expects increasing origins")
        # Runs of consecutive origins (validation windows spread over a year, the training hours between
        # them): one view over the whole range, then the rows wanted (a copy, [N, L, F]).
        full = make_windows(features, np.arange(origins[0], origins[-1] + 1), seq)
        return full[torch.from_numpy(np.asarray(origins) - origins[0])]
    base = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))  # [T, F]
    n_feat = base.shape[1]
    first = int(origins[0]) - (seq - 1)  # first input hour of the first window
    # Window i covers hours first+i .. first+i+L-1: a strided view over the [T, F] buffer, no copy per
    # window (a copy would be N x L x F floats: ~330 MB at L=168), and it pickles as the [T, F] buffer.
    return base.as_strided((len(origins), seq, n_feat), (n_feat, n_feat, 1), first * n_feat)


def make_targets(cnt: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """Counts [T] -> targets [N, H]: cnt at t+1 .. t+H for each origin t."""
    view = sliding_window_view(cnt, horizon)  # [T-H+1, H]; row i covers hours i..i+H-1
    return view[origins + 1]


def known_targets(cnt: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """Counts [T] -> targets [N, H] like make_targets, NaN for hours after the data (the forecasts being made
    at its end)."""
    padded = np.concatenate([np.asarray(cnt, np.float64), np.full(horizon, np.nan)])  # [T + H]
    return make_targets(padded, np.asarray(origins, np.int64), horizon)


def history_span(origins: np.ndarray, first_origin: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The consecutive origins from ``window`` hours before the first of ``origins`` (not before
    ``first_origin``) to the last one, and the rows of ``origins`` in it: what a forecast that learns from the
    weeks before it (rolling level, rolling intervals) has to forecast."""
    origins = np.asarray(origins, np.int64)
    start = max(first_origin, int(origins.min()) - window)
    return np.arange(start, int(origins.max()) + 1), origins - start


def known_runs(values: np.ndarray, rows: np.ndarray, window: int, step: int) -> np.ndarray:
    """values [M, H] of consecutive origins -> [N, window - step + 1]: for each of ``rows`` (each >= window),
    the ``step``-th column (1-based) of rows row - window .. row - step, the origins whose step-``step``
    targets are known at that row's origin."""
    n = window - step + 1
    return sliding_window_view(values[:, step - 1], n)[np.asarray(rows) - window]  # run j covers rows j .. j+n-1


def load(
    cfg: DataConfig | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    scalers: tuple[FeatureScaler, TargetScaler] | None = None,
) -> BikeData:
    """hour.csv -> BikeData: scaled windows for every split, scalers, timestamps and config.

    ``scalers`` (from a checkpoint) replace the ones fitted on the training split, so that a saved model
    sees exactly the inputs it was trained on.
    """
    cfg = cfg or DataConfig()
    frame, source, n_filled, raw_rows, dataset = read_frame(path, cfg.dataset, download=download)
    cfg = dataclasses.replace(cfg, dataset=dataset)  # with what the file told (a user's series' frequency)
    return build(frame, cfg, source=source, n_filled=n_filled, raw_rows=raw_rows, scalers=scalers)


def build(
    frame: pd.DataFrame,
    cfg: DataConfig,
    *,
    source: str = "frame",
    n_filled: int = 0,
    raw_rows: int = 0,
    scalers: tuple[FeatureScaler, TargetScaler] | None = None,
) -> BikeData:
    """Hourly frame -> BikeData (see :func:`load`)."""
    hours = frame.index.to_numpy()
    names = feature_names(cfg)
    if not cfg.dataset.builtin:
        user_series.check_transform(frame, cfg, source)
    values = raw_features(frame, cfg)  # [T, F] unscaled
    cnt = frame[target_column(cfg)].to_numpy(np.float32)  # [T]; NaN at a user's missing steps
    candidates = valid_origins(frame, cfg)
    if not len(candidates):
        raise DataError(f"{source}: {len(frame):,} rows: too few for one window of {cfg.sequence_size} inputs and "
                        f"{cfg.horizon} target(s) in one series; give more rows or a smaller --sequence-size")
    parts = split_origins(hours, cfg, candidates)
    for name in SPLIT_NAMES:
        if len(parts[name]) == 0:
            raise DataError(f"{source}: split {name!r} has no windows of {cfg.sequence_size} inputs and {cfg.horizon} "
                            f"target(s) ({len(frame):,} rows, split {cfg.split}); check the split boundaries and "
                            "--sequence-size")
    # Training hours: every input and target hour of the train split (with one validation window, every
    # hour up to the last training target).
    train_rows = covered_hours(parts["train"], len(hours), cfg.sequence_size, cfg.horizon)
    if scalers is not None:
        fscaler, tscaler = scalers
        if list(fscaler.names) != names:
            raise DataError(f"the stored feature scaler names {len(fscaler.names)} features, this data config makes {len(names)}")
        if tscaler.form != cfg.target_form:
            raise DataError(f"the stored target scaler is for a {tscaler.form} target, this data config's target_form "
                            f"is {cfg.target_form}")
    else:
        fscaler = fit_feature_scaler(values, names, train_rows,
                                     None if cfg.dataset.builtin else user_series.scaled_names(cfg))
        tscaler = _fit_target(frame, cfg, cnt, train_rows, parts["train"])
    scaled = fscaler.apply(values)  # [T, F] float32
    splits = {}
    for name in SPLIT_NAMES:
        o = parts[name]
        y_raw = make_targets(cnt, o, cfg.horizon)  # [N, H]
        anchor = origin_values(frame, cfg, o)  # [N] or None
        splits[name] = Split(
            X=make_windows(scaled, o, cfg.sequence_size),
            y=torch.from_numpy(np.asarray(tscaler.forward(y_raw.astype(np.float64), anchor), dtype=np.float32)),
            y_raw=torch.from_numpy(np.ascontiguousarray(y_raw, dtype=np.float32)),
            origin=o,
            target_time=make_targets(hours, o, cfg.horizon).copy(),
            anchor=anchor,
        )
    return BikeData(
        config=cfg, source=source, feature_names=names, feature_scaler=fscaler, target_scaler=tscaler,
        hours=hours, cnt=cnt, n_filled=n_filled, raw_rows=raw_rows, splits=splits,
        filled=frame["is_missing"].to_numpy() > 0 if "is_missing" in frame else None, starts=None if cfg.dataset.builtin else user_series.segment_start(frame, cfg.dataset),
    )


def features_for(frame: pd.DataFrame, cfg: DataConfig, scaler: FeatureScaler) -> np.ndarray:
    """Scaled features [T, F] of a frame with a stored scaler (for predict on a saved model)."""
    return scaler.apply(raw_features(frame, cfg))
