"""How a series is described (:class:`Dataset`, the one contract of a user's file and a built-in data set alike),
and the built-in data sets, one definition file each in this folder, found by themselves.

A definition (:class:`Definition`) holds only what is a data set's own: its description, where its file comes
from and how it is checked (download, checksum, stricter checks), how its raw columns become the described ones,
its default split, named feature functions of the time (known in advance, the way mlforecast takes
``date_features``) and the values of its known-future covariates past the end of its file. Everything after
that, the grid, the calendar, the features, the windows, splits and scalers, is the one pipeline every series
goes through (rnn_core.series, rnn_core.features, rnn_core.data). A new built-in data set is one file here that
calls :func:`register`.

This module imports nothing of the project (rnn_core.config takes :class:`Dataset` from here) and no pandas at
import: ``rnn-search --help`` stays fast. :func:`migrate` is the one place that reads configs stored by older
versions.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: What a timestamp absent from a file means (Dataset.absent).
ABSENT_CHOICES = ("missing", "zero")
#: The cyclic calendar inputs a step can have (rnn_core.features.calendar): the time of day, the day of the week,
#: the month of the year and the day of the year.
CALENDAR_PARTS = ("day", "week", "month", "year")
#: The part of the year the calendar encodes, for every frequency (``month`` or ``year``, the day of the year).
YEAR_PART = "month"


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)




def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    _require(value in allowed, f"{name} must be one of {', '.join(allowed)}, got {value!r}")




def _names(v: Any) -> tuple[str, ...]:
    """Column names as a tuple: 'a,b' (a flag), a list (YAML, a stored dict) or a tuple."""
    if isinstance(v, str):
        return tuple(t.strip() for t in v.split(",") if t.strip())
    _require(isinstance(v, (list, tuple)) and all(isinstance(t, str) and t for t in v),
             f"expected column names, got {v!r}")
    return tuple(v)




@dataclass(frozen=True)
class Dataset:
    """A series described column by column: a built-in data set (rnn_core/datasets/, read through its definition)
    or a file of your own. A model file stores it, so that test, predict and export read a file the way the model
    was trained on it."""

    time: str | None = None
    """Your file's time column (ISO timestamps or dates). Give it with --target for your own series."""
    target: str | None = None
    """The column to forecast (without --time and --target: the built-in data set)."""
    freq: str | None = None
    """The series' step as a pandas frequency such as h, D, 15min, W or MS (default: inferred from the file; an
    irregular step is refused)."""
    past: tuple[str, ...] = field(default=(), metadata={"names": True})
    """Past covariates, comma-separated: columns known only up to each forecast origin (measured weather)."""
    future: tuple[str, ...] = field(default=(), metadata={"names": True})
    """Known-future covariates, comma-separated: columns known for the target times too (holidays, planned
    promotions); predicting needs them for the forecast times: rows with them and an empty target."""
    series: str | None = None
    """Column naming the series of a file that holds several: one model learns them all; windows never cross
    two series."""
    absent: str = field(default="missing", metadata={"choices": ABSENT_CHOICES})
    """What a timestamp absent from the file means: 'missing' (never a target; its inputs are carried forward
    and flagged) or 'zero' (counts: nothing happened then)."""
    counts: tuple[str, ...] = field(default=(), metadata={"names": True, "derived": True})
    """Past covariates that are counts like the target (its parts: casual and registered riders): they enter
    log1p-scaled after the target's history, and are 0 where an absent step counts as zero."""
    features: tuple[str, ...] = field(default=(), metadata={"derived": True})
    """Named feature functions of the time, known in advance (a built-in definition's, e.g. the sun's height)."""
    calendar: tuple[str, ...] = field(default=(), metadata={"derived": True})
    """The calendar inputs (CALENDAR_PARTS); empty: chosen from the frequency when the file is read."""
    name: str | None = field(default=None, metadata={"derived": True})
    """A built-in data set's name (rnn_core/datasets/): read through its definition (download, checksum, checks)."""

    def __post_init__(self) -> None:
        for name in ("past", "future", "counts", "features", "calendar"):
            object.__setattr__(self, name, _names(getattr(self, name)))
        _one_of("absent", self.absent, ABSENT_CHOICES)
        _require(self.time is not None and self.target is not None,
                 "a dataset of your own needs both --time and --target (the time column and the column to forecast)")
        _require(all(p in CALENDAR_PARTS for p in self.calendar),
                 f"calendar parts must be among {', '.join(CALENDAR_PARTS)}, got {self.calendar}")
        columns = [self.time, self.target, *self.past, *self.counts, *self.future] + ([self.series] if self.series else [])
        _require(all(isinstance(c, str) and c.strip() for c in columns), f"column names must be non-empty, got {columns}")
        if dup := sorted({c for c in columns if columns.count(c) > 1}):
            raise ValueError(f"column {dup[0]!r} is named twice in the dataset description ({self.describe()})")

    def describe(self) -> str:
        parts = [f"time {self.time}", f"target {self.target}", f"freq {self.freq or 'inferred'}"]
        for key in ("past", "counts", "future", "features"):
            parts += [f"{key} {','.join(getattr(self, key))}"] * bool(getattr(self, key))
        parts += [f"series {self.series}"] * bool(self.series) + [f"absent = {self.absent}"]
        return (f"{self.name}: " if self.name else "") + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Dataset:
        return cls(**d)


def default_dataset() -> Dataset:
    """The default built-in data set's description."""
    return default().dataset


def calendar_parts(freq: str, year: str = YEAR_PART) -> tuple[str, ...]:
    """The calendar a step of this frequency has: the time of day under a day, the day of the week up to a day,
    and the part of the year always."""
    import pandas as pd

    off = pd.tseries.frequencies.to_offset(freq or "h")
    try:
        step = pd.Timedelta(off)
    except ValueError:  # months, quarters, years: not a fixed length
        return (year,)
    if step < pd.Timedelta(days=1):
        return ("day", "week", year)
    return ("week", year) if step == pd.Timedelta(days=1) else (year,)


#: times [T] -> values [T] of a feature known in advance (e.g. the sun's height at a place).
FeatureFunction = Callable[["pd.DatetimeIndex"], "np.ndarray"]


@dataclass(frozen=True)
class Definition:
    """What one built-in data set has of its own."""

    dataset: Dataset
    """Its description: columns, step, covariates, what an absent step means, its feature functions."""
    title: str
    """What it is, in a few words (``data info``, errors)."""
    read: Callable[[str | os.PathLike[str] | None, bool], tuple["pd.DataFrame", Path, str]]
    """(path or None, may download) -> (its table in the described columns, the file, where it came from)."""
    split: tuple[str, str]
    """The default split's first validation and first test time."""
    functions: dict[str, FeatureFunction] = field(default_factory=dict)
    """Its named feature functions (Dataset.features)."""
    beyond: Callable[["pd.DatetimeIndex"], dict[str, "np.ndarray"]] | None = None
    """Times past the file's end -> the known-future covariates there (what the file cannot tell yet)."""
    unit: str = ""
    """What its target is measured in, for reports (e.g. 'target units'); default: the target column's name."""
    default: bool = False
    """The data set used when no file of one's own is described (one definition says so)."""
    migrate: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """A config stored before the data set was described -> today's (its old files keep loading)."""
    rename: Callable[[str], str] | None = None
    """An input's name in files stored before the data set was described -> today's (their stored scalers)."""


_DEFINITIONS: dict[str, Definition] = {}


def cache_dir() -> Path:
    """The data cache (downloads, studies): ``$RNN_SEARCH_CACHE``, default ``~/.cache/rnn-search``."""
    return Path(os.environ.get("RNN_SEARCH_CACHE") or Path.home() / ".cache" / "rnn-search")


def register(definition: Definition) -> Definition:
    """Add a built-in data set (each definition file calls it once, at import)."""
    _DEFINITIONS[definition.dataset.name] = definition
    return definition


def _discover() -> dict[str, Definition]:
    """Every definition file of this folder, imported once."""
    if not _DEFINITIONS:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
    return _DEFINITIONS


def names() -> list[str]:
    return list(_discover())


def get(name: str) -> Definition:
    """The definition of a built-in data set by name; a stored name no longer known is a one-line error."""
    found = _discover()
    if name not in found:
        raise ValueError(f"unknown built-in data set {name!r}; this version has {', '.join(found)}")
    return found[name]


def definition_of(dataset: Dataset) -> Definition | None:
    """The definition of a described data set: a built-in one's, or None for a file of one's own."""
    return get(dataset.name) if dataset.name else None


def default() -> Definition:
    """The data set used when no file of one's own is described."""
    return next(d for d in _discover().values() if d.default)


def feature_function(dataset: Dataset, name: str) -> FeatureFunction:
    """A named feature function of a described data set (its definition's)."""
    definition = definition_of(dataset)
    if definition is None or name not in definition.functions:
        raise ValueError(f"feature function {name!r} is not defined for {dataset.describe()}")
    return definition.functions[name]


def _undescribed(d: dict[str, Any]) -> bool:
    """A stored DataConfig dict from before the default data set was described (no dataset, or one without a target)."""
    ds = d.get("dataset")
    return ds is None or isinstance(ds, dict) and ds.get("target") is None


def migrate_names(names: list[str], stored: dict[str, Any]) -> list[str]:
    """A stored feature scaler's input names under today's names, for the data config ``stored`` beside it."""
    rename = default().rename if _undescribed(stored) else None
    return [rename(n) for n in names] if rename else list(names)


def migrate(d: dict[str, Any]) -> dict[str, Any]:
    """A stored DataConfig dict -> today's fields. Older files: a dataset without a target was the default built-in
    data set (its definition migrates it); a user's series without ``calendar`` had the day-of-year calendar."""
    d = dict(d)
    ds = d.get("dataset")
    if _undescribed(d):
        return default().migrate(d) if default().migrate else d
    d.pop("daylight", None)  # a field of the built-in data set's alone (its definition reads it)
    if isinstance(ds, dict) and not ds.get("calendar") and ds.get("freq"):
        d["dataset"] = {**ds, "calendar": calendar_parts(ds["freq"], year="year")}
    return d
