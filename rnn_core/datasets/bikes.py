"""The UCI Bike Sharing data set (Fanaee-T and Gama, 2013; CC BY 4.0): hourly rentals in Washington DC, 2011-2012.

Its own particulars, and nothing else: where ``hour.csv`` comes from (a setting, ``RNN_SEARCH_DATA_URL``) and how
a copy is checked (its columns and ranges, casual + registered = cnt, its row count and total), how its columns
become the described ones (the date and hour become a timestamp, the weather situation a one-hot), its default
split (the last four months of 2012), the sun's height over Washington DC as a feature function, and its day flags
past the end of the file. The grid, calendar, features, windows, splits and scalers are every series' own
(rnn_core.series, rnn_core.features, rnn_core.data).

* **Absent hours.** The file lacks 165 of the 17,544 hours of 2011-2012 (mostly night hours with no rentals, and
  the Hurricane Sandy shutdown of 2012-10-29/30): ``absent='zero'``, so a filled hour has zero rentals (none was
  logged), carried-forward weather, its day's holiday and working-day flags, and ``is_missing = 1``.
* **No target leakage.** casual and registered sum to cnt: they are past inputs only (``counts``), so no count of
  an hour after the origin t is in the input.
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
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnn_core.config import Dataset
from rnn_core.datasets import Definition, cache_dir, register
from rnn_core.features import sun_height
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
#: Where the bikes were counted: Washington DC (latitude, longitude in degrees east, time zone).
SITE = (38.9, -77.04, "America/New_York")

BIKES = Dataset(
    name="bikes", time="timestamp", target="cnt", freq="h",
    past=("weather_1", "weather_2", "weather_3", "weather_4", "temp", "atemp", "hum", "windspeed"),
    counts=("casual", "registered"), future=("holiday", "workingday"), features=("daylight",), absent="zero",
)


def _how_to_provide() -> str:
    return (
        "Provide hour.csv of the UCI Bike Sharing data set in one of these ways: pass --data PATH, "
        "set RNN_SEARCH_DATA=PATH, place it in the cache as "
        f"{cache_dir() / 'hour.csv'} ($RNN_SEARCH_CACHE), or let it download from "
        f"{os.environ.get('RNN_SEARCH_DATA_URL') or DEFAULT_URL} (setting: RNN_SEARCH_DATA_URL)."
    )


def find_data(path: str | os.PathLike[str] | None = None, *, download: bool = True) -> tuple[Path, str]:
    """Locate hour.csv: ``path``, then ``$RNN_SEARCH_DATA``, then the cache, then a download. Returns the file and a
    description of where it came from."""
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
    """Download the UCI zip, extract and verify hour.csv, then move it atomically into ``cache``. A failed, partial
    or corrupted download leaves nothing in the cache."""
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
        csv = tmp / "hour.csv"
        try:
            with zipfile.ZipFile(zpath) as zf:
                members = [n for n in zf.namelist() if Path(n).name == "hour.csv"]
                if not members:
                    raise DataError(f"{url}: the zip holds no hour.csv. {_how_to_provide()}")
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


def _line(row: int) -> int:
    """0-based data row -> 1-based line of the CSV (line 1 is the header)."""
    return int(row) + 2


def read_raw(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Parse and check hour.csv: the raw rows as numbers with a ``timestamp`` column. Raises :class:`DataError`
    naming the file, and the line and column where there is one."""
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
        raise DataError(f"{path}: line {_line(row)}, column 'dteday': {raw['dteday'].iloc[row]!r} is not a date (YYYY-MM-DD)")
    return df, dates


def _check_ranges(df: pd.DataFrame, raw: pd.DataFrame, path: Path) -> None:
    """Each column within its range, and casual + registered = cnt."""
    ranges = {
        "hr": (0, 23, "an hour from 0 to 23"), "weathersit": (1, 4, "a weather situation from 1 to 4"),
        "holiday": (0, 1, "0 or 1"), "workingday": (0, 1, "0 or 1"),
        "casual": (0, np.inf, "a count >= 0"), "registered": (0, np.inf, "a count >= 0"), "cnt": (0, np.inf, "a count >= 0"),
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
        raise DataError(f"{path}: line {_line(row)}, column 'cnt': casual + registered = {sums[row]:g} but cnt = {df['cnt'].iloc[row]:g}")


def _timestamps(df: pd.DataFrame, dates: pd.Series, path: Path) -> pd.Series:
    """dteday + hr: unique, in time order, within the two years."""
    ts = dates + pd.to_timedelta(df["hr"].astype(np.int64), unit="h")
    tsv = ts.to_numpy()
    dup = pd.Series(tsv).duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(f"{path}: line {_line(row)}, columns 'dteday'/'hr': duplicated timestamp {ts.iloc[row]}")
    back = np.flatnonzero(tsv[1:] <= tsv[:-1])
    if back.size:
        row = int(back[0]) + 1
        raise DataError(f"{path}: line {_line(row)}, columns 'dteday'/'hr': timestamp {ts.iloc[row]} comes after "
                        f"{ts.iloc[row - 1]}; rows must be in time order")
    if tsv[0] < GRID_START.to_datetime64() or tsv[-1] > GRID_END.to_datetime64():
        raise DataError(f"{path}: timestamps run from {ts.iloc[0]} to {ts.iloc[-1]}; expected hours within {GRID_START} .. {GRID_END}")
    return ts


def verify(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """The checks a downloaded file must pass: row count, the cnt total (per-row sums are checked in read_raw)."""
    if len(df) != RAW_ROWS:
        raise DataError(f"{path}: {len(df):,} rows, expected {RAW_ROWS:,}")
    total = int(df["cnt"].sum())
    if total != CNT_TOTAL:
        raise DataError(f"{path}: cnt totals {total:,}, expected {CNT_TOTAL:,}")


def described(raw: pd.DataFrame) -> pd.DataFrame:
    """hour.csv's checked rows -> the described columns: the weather situation one-hot, as the lecture does."""
    onehot = np.eye(4)[raw["weathersit"].to_numpy().astype(np.int64) - 1]  # [T, 4]
    table = pd.DataFrame({"timestamp": raw["timestamp"].to_numpy()})
    for col in ("cnt", "casual", "registered", "holiday", "workingday"):
        table[col] = raw[col].to_numpy()
    for i in range(4):
        table[f"weather_{i + 1}"] = onehot[:, i]
    for col in ("temp", "atemp", "hum", "windspeed"):
        table[col] = raw[col].to_numpy()
    return table


def read(path: str | os.PathLike[str] | None, download: bool = True) -> tuple[pd.DataFrame, Path, str]:
    """(hour.csv found, checked and described; the file; where it came from)."""
    p, source = find_data(path, download=download)
    return described(read_raw(p)), p, source


def beyond(times: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Past the file's end: no holiday, and Monday to Friday are working days."""
    return {"holiday": np.zeros(len(times)), "workingday": (times.day_of_week < 5).astype(np.float64)}


def migrate(d: dict[str, Any]) -> dict[str, Any]:
    """A data config stored before the bikes data was described (no dataset, or one without a target): this
    description, with the sun's height only where the config had it (files from before it read 8 calendar inputs)."""
    d = dict(d)
    features = BIKES.features if d.pop("daylight", False) else ()
    d["dataset"] = {**BIKES.to_dict(), "features": features, "calendar": ("day", "week", "month")}
    return d


#: Inputs named before the bikes data was described -> today's names (rnn_core.features).
_RENAMED = {"hour_sin": "day_sin", "hour_cos": "day_cos", "dow_sin": "week_sin", "dow_cos": "week_cos",
            "cnt_log1p": "cnt_history"}


def rename(name: str) -> str:
    """An input's old name -> today's: 'hour_sin@t+1' -> 'day_sin@t+1', 'cnt_log1p_lag24' -> 'cnt_lag24'."""
    base, at, step = name.partition("@")
    base = _RENAMED.get(base, base)
    if base.startswith("cnt_log1p_lag"):
        base = "cnt_lag" + base[len("cnt_log1p_lag"):]
    return base + at + step


DEFINITION = register(Definition(
    dataset=BIKES, title="the UCI bikes data (hour.csv)", read=read, unit="bikes/hour", split=("2012-09-01", "2012-11-01"),
    functions={"daylight": partial(sun_height, site=SITE)}, beyond=beyond, default=True, migrate=migrate, rename=rename,
))
