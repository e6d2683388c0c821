"""The Python interface to a search: ``RNNSearch(...).fit(data)``, then predict, test, save (as NeuralForecast's
``fit``/``predict`` and AutoGluon's ``TimeSeriesPredictor`` do). ``rnn-search tune`` runs the same search.

    from search.api import RNNSearch
    search = RNNSearch(time="date", target="temp_max", past=["temp_min", "wind"], preset="quick")
    search.fit("seattle-weather.csv")       # the search (Ray on this machine, or address=...), then its ensemble
    search.predict("seattle-weather.csv")    # a data frame: time, forecast, lower/upper bounds
    search.test("seattle-weather.csv").mae   # the shipped model's test error; .baselines beside it
    search.cross_validation(windows=4)       # a rolling backtest: .overall, .windows, .forecasts
    search.save("model.pt")                  # rnn_core.api.load("model.pt") reads it back, without Ray

Every keyword of :class:`search.options.SearchOptions` (``preset``, ``num_samples``, ``time_budget_min``,
``storage``, ``name``, ``address``, ``seed`` ...) and of :class:`rnn_core.config.DataConfig` (``horizon``,
``split``-fields, ``sequence_size`` ...) is accepted as it is on the command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from rnn_core.api import Data, Model
from rnn_core.backtest import Backtest
from rnn_core.config import DataConfig, Dataset
from rnn_core.settings import pick
from rnn_core.metrics import Evaluation


@contextlib.contextmanager
def progress_on_stderr() -> Iterator[None]:
    """The search's progress (its start, a line every --progress-interval seconds, its end) on stderr, as the command
    line shows it, unless the caller has configured logging itself (then its handlers decide)."""
    if logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    loggers = [logging.getLogger(name) for name in ("search", "rnn_core")]
    before = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, (level, propagate) in zip(loggers, before):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


class RNNSearch:
    """A search for the best RNN forecaster of one dataset, and the model it ships (its ensemble)."""

    def __init__(self, *, time: str | None = None, target: str | None = None, freq: str | None = None,
                 past: list[str] | tuple[str, ...] = (), future: list[str] | tuple[str, ...] = (),
                 series: str | None = None, absent: str = "missing", ensemble: bool = True, **options: Any) -> None:
        from search.options import SearchOptions

        self.dataset = Dataset(time=time, target=target, freq=freq, past=tuple(past), future=tuple(future),
                               series=series, absent=absent)
        data_fields = pick(DataConfig, options)
        self.data = DataConfig(dataset=self.dataset, **data_fields)
        rest = {k: v for k, v in options.items() if k not in data_fields}
        if unknown := sorted(set(rest) - {f.name for f in dataclasses.fields(SearchOptions)}):
            raise TypeError(f"RNNSearch: unknown option {unknown[0]!r}")
        self.options = SearchOptions(**rest, data=self.data, data_given=frozenset(data_fields))
        self.ensemble = ensemble
        self.experiment: str | None = None
        self.model: Model | None = None

    def fit(self, data: Data = None) -> RNNSearch:
        """Run the search on ``data`` (a file; a data frame is written next to the runs as Parquet first), then
        choose its ensemble (or, with ``ensemble=False``, ship the best trial). Returns self."""
        from search.results import build_ensemble, chosen_model
        from search.tuner import run_search

        opts = dataclasses.replace(self.options, data_path=self._file(data))
        with progress_on_stderr():
            _, self.experiment = run_search(opts)
            if self.ensemble:
                build_ensemble(self.experiment, data_path=opts.data_path)
        forecaster, _ = chosen_model(self.experiment, single=not self.ensemble, data_path=opts.data_path)
        self.model = Model(forecaster)
        return self

    def _file(self, data: Data) -> str | None:
        if not isinstance(data, pd.DataFrame):
            return None if data is None else str(data)
        from search import storage

        where = storage.resolve(self.options.storage)
        # beside the runs (a --resume finds it again), in a folder of its own that no run is named after
        folder = Path(where) / "_data" if not storage.is_uri(where) else Path(tempfile.mkdtemp(prefix="rnn-search-data-"))
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".parquet", dir=folder, prefix=".data-")
        os.close(fd)
        data.to_parquet(tmp)
        final = folder / f"data-{pd.util.hash_pandas_object(data, index=True).sum() % 2**32:08x}.parquet"
        os.replace(tmp, final)  # write, then rename: a half-written copy is never read
        return str(final)

    def _shipped(self) -> Model:
        if self.model is None:
            raise RuntimeError("RNNSearch: call fit(data) first")
        return self.model

    def predict(self, data: Data = None, at: str | None = None, levels: tuple[float, ...] | None = None) -> pd.DataFrame:
        """The shipped model's forecasts from ``at`` (default: each series' last known step): rnn_core.api.Model.predict."""
        return self._shipped().predict(data, at, levels)

    def test(self, data: Data = None, split: str = "test") -> Evaluation:
        """The shipped model's error on a split, beside the naive baselines'."""
        return self._shipped().test(data, split)

    def cross_validation(self, data: Data = None, windows: int = 3, step: int | None = None,
                         refit: bool = False) -> Backtest:
        """A rolling backtest of the shipped model over the last ``windows`` windows of each series
        (rnn_core.backtest.cross_validation), as NeuralForecast's ``cross_validation``."""
        return self._shipped().cross_validation(data, windows, step, refit)

    def save(self, path: str | os.PathLike[str]) -> Path:
        return self._shipped().save(path)


__all__ = ["RNNSearch"]
