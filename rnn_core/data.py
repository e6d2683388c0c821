"""Windows, splits and scalers: one home for what every series shares after its features.

A described data set is read onto its grid (rnn_core.series) and turned into inputs (rnn_core.features); here
those become the windows of each split, scaled, in one small picklable object, :class:`WindowData`, that travels
through Ray's object store to every trial.

* **No target leakage.** A window's input is the ``sequence_size`` steps ending with step t; its targets are the
  target at t+1 ... t+horizon. The target and the count covariates enter only as history, so nothing after t is
  in the input but what is known in advance (``future_calendar``).
* **Splits by target time.** A window belongs to a split when all its target steps do, so no target step falls
  in two splits; the default split is the data set's own (a built-in definition's) or, for a file of one's own,
  the last tenth of its time for the test period and the tenth before it for validation.
* **Scaling.** Inputs are standardised with the mean and standard deviation of the training steps only (the
  calendar, feature functions, flags and 0/1 columns stay as they are). The target transform is ``log1p`` then
  standardise by default: counts are heavy-tailed and the log makes the MSE loss care about quiet steps too.
  ``sqrt`` (then standardise) sits between the log and the counts; ``scale100`` divides by 100 as the lecture
  does. All invert to the target's units in :class:`TargetScaler`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view  # targets: [T] -> [T-H+1, H] views

from rnn_core import series as user_series
from rnn_core.config import TARGET_FORMS, TARGET_TRANSFORMS, DataConfig, Dataset, ModelConfig, target_outputs
from rnn_core.features import feature_names, future_width, history, n_features, plain_names, raw_features
from rnn_core.panel import SeriesScales, fit_series_scales
from rnn_core.datasets import definition_of
from rnn_core.series import DataError, read_frame

__all__ = ["DataError", "feature_names", "n_features", "read_frame", "raw_features"]

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


def target_column(cfg: DataConfig | Dataset) -> str:
    """The frame's column that is forecast."""
    return (cfg.dataset if isinstance(cfg, DataConfig) else cfg).target


# --------------------------------------------------------------------------------------- scalers


@dataclass(frozen=True)
class TargetScaler:
    """The target's units <-> model target space. Plain floats, so it stores in a weights-only checkpoint.

    ``form`` (DataConfig.target_form), with f the transform: 'level' z = (f(y) - mean) / std; 'change'
    z = (f(y[t+h]) - f(y[t]) - change_mean) / change_std, so ``forward`` and ``inverse`` take the counts at the
    origins, ``anchor`` [N] (rnn_core.data.origin_values); 'both' the two side by side, [N, 2H] (levels first),
    whose inverse is the mean of the two forecasts in the target's units, [N, H].

    For a panel scaled per series (``series``, rnn_core.panel), f(y) is first standardised by its own series'
    training steps, so ``forward`` and ``inverse`` also take each origin's series, ``series`` [N]
    (rnn_core.data.origin_series); ``history`` holds the same for the history input (rnn_core.features.history)."""

    transform: str
    mean: float = 0.0
    std: float = 1.0
    form: str = "level"
    change_mean: float = 0.0
    change_std: float = 1.0
    series: SeriesScales | None = None
    history: SeriesScales | None = None

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

    def _g(self, counts: np.ndarray | torch.Tensor, series: np.ndarray | None) -> Any:
        """The transform, then (a panel scaled per series) each row's series' standardisation."""
        f = self._f(counts)
        return f if self.series is None else self.series.normalize(f, self._of(series))

    def _g_inverse(self, v: np.ndarray | torch.Tensor, series: np.ndarray | None) -> Any:
        return self._f_inverse(v if self.series is None else self.series.denormalize(v, self._of(series)))

    def _of(self, series: np.ndarray | None) -> np.ndarray:
        if series is None:
            raise ValueError("a target scaled per series needs the series of each forecast origin (origin_series)")
        return series

    def _start(self, like: np.ndarray | torch.Tensor, anchor: np.ndarray | None, series: np.ndarray | None) -> Any:
        """f(y[t]) as a column [N, 1] (per series: standardised as the targets are), what a change is measured from."""
        if anchor is None:
            raise ValueError(f"a {self.form} target needs the counts at the forecast origins (anchor)")
        start = self._g(np.asarray(anchor, np.float64)[:, None], series)  # [N, 1]
        return torch.from_numpy(start).to(like) if isinstance(like, torch.Tensor) else start

    def forward(self, counts: np.ndarray | torch.Tensor, anchor: np.ndarray | None = None,
                series: np.ndarray | None = None) -> Any:
        """Counts [N, H] (any shape for a level) -> model space ([N, 2H] for 'both'); ``anchor`` and ``series``
        [N]: the class."""
        f = self._g(counts, series)
        level = (f - self.mean) / self.std if self.form != "change" else None
        if self.form == "level":
            return level
        change = (f - self._start(counts, anchor, series) - self.change_mean) / self.change_std
        if self.form == "change":
            return change
        return torch.cat([level, change], -1) if isinstance(counts, torch.Tensor) else np.concatenate([level, change], -1)

    def inverse(self, z: np.ndarray | torch.Tensor, anchor: np.ndarray | None = None,
                series: np.ndarray | None = None) -> Any:
        """Model outputs [N, H] ([N, 2H] for 'both') -> the target's units [N, H]."""
        if self.form == "level":
            return self._g_inverse(z * self.std + self.mean, series)
        h = z.shape[-1] // 2 if self.form == "both" else 0
        change = self._g_inverse(z[..., h:] * self.change_std + self.change_mean + self._start(z, anchor, series), series)
        if self.form == "change":
            return change
        return 0.5 * (self._g_inverse(z[..., :h] * self.std + self.mean, series) + change)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("series", "history")}
        return d | {k: getattr(self, k).to_dict() for k in ("series", "history") if getattr(self, k) is not None}

    @classmethod
    def from_dict(cls, d: Any) -> TargetScaler:
        """A stored scaler, every field checked (a model file's field is never defaulted: a missing std would
        silently scale by 1; only the form and its change statistics may be absent, in files written before
        them, which learnt the level, and the per-series scales, absent where one scale serves all). Raises
        ValueError naming the field."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a mapping with transform, mean and std, got {type(d).__name__}")
        fields, later = ("transform", "mean", "std"), ("form", "change_mean", "change_std", "series", "history")
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
        scales = {k: SeriesScales.from_dict(d[k], _finite) for k in ("series", "history") if d.get(k) is not None}
        return cls(d["transform"], form=form, **numbers, **scales)


def _finite(name: str, v: Any) -> float:
    """A stored number, checked: a finite int or float (bool is not a number here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise ValueError(f"{name} {v!r}: expected a finite number")
    return float(v)


@dataclass(frozen=True)
class FeatureScaler:
    """Per-feature mean/std (training steps only); identity (0, 1) for unscaled features."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, values: np.ndarray) -> np.ndarray:
        """[T, len(names)] -> standardised, float32."""
        return ((values - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def stored(cls, bundle: dict[str, Any]) -> FeatureScaler:
        """The feature scaler of a model bundle, its input names as today's (rnn_core.datasets.migrate_names)."""
        from rnn_core.datasets import migrate_names

        scaler = cls.from_dict(bundle["feature_scaler"])
        return dataclasses.replace(scaler, names=tuple(migrate_names(list(scaler.names), bundle["data_config"])))

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
    """[N, L, F] float32 inputs (a strided view over the feature matrix of the grid: no copy per window)."""
    y: torch.Tensor
    """[N, H] float32 targets in model space (see TargetScaler)."""
    y_raw: torch.Tensor
    """[N, H] float32 targets in the target's units."""
    origin: np.ndarray
    """[N] int index (into WindowData.times) of each window's forecast origin t, its last input step."""
    target_time: np.ndarray
    """[N, H] datetime64 timestamps of the target steps t+1 .. t+H."""
    anchor: np.ndarray | None = None
    """[N] the target at each origin t (rnn_core.data.origin_values) when ``y`` holds a change from it, else None."""
    series: np.ndarray | None = None
    """[N] the series of each origin (rnn_core.data.origin_series) for a panel, else None."""

    def __len__(self) -> int:
        return int(self.X.shape[0])


@dataclass
class WindowData:
    """The windows of every split of one described series, its scalers and its grid: everything a trial needs;
    small and picklable (travels once through Ray's object store)."""

    config: DataConfig
    source: str
    feature_names: list[str]
    feature_scaler: FeatureScaler
    target_scaler: TargetScaler
    times: np.ndarray
    """[T] datetime64 of the grid."""
    target: np.ndarray
    """[T] float32 target on the grid (NaN at a missing step), for the baselines."""
    n_filled: int
    raw_rows: int
    splits: dict[str, Split] = field(default_factory=dict)
    filled: np.ndarray | None = None
    """[T] bool: steps absent from the file, filled on the grid."""
    starts: np.ndarray | None = field(default=None, repr=False)
    """[T] the first row of each row's series, for the baselines."""

    def filled_targets(self, name: str) -> tuple[int, int]:
        """(filled, all) distinct target steps of a split: the filled ones are scored as the data set fills them."""
        s = self[name]
        rows = np.unique(s.origin[:, None] + np.arange(1, self.config.horizon + 1))  # [N, H] -> distinct steps
        return (int(self.filled[rows].sum()) if self.filled is not None else 0), len(rows)

    def model_config(self, **fields: Any) -> ModelConfig:
        """A ModelConfig for these windows: F and H from the data, the architecture from ``fields``."""
        future = future_width(self.config) if self.config.future_calendar else 0
        if fields.get("arch") == "seq2seq" and not future:  # a constraint across the two configs
            raise ValueError("arch seq2seq feeds its decoder the calendar of each target step: it needs the future "
                             "calendar features (drop --no-future-calendar)")
        return ModelConfig(n_features=len(self.feature_names), horizon=self.config.horizon, future_features=future,
                           targets=target_outputs(self.config.target_form), **fields)

    def __getitem__(self, name: str) -> Split:
        if name not in self.splits:
            raise KeyError(f"unknown split {name!r}; expected one of {', '.join(self.splits)}")
        return self.splits[name]


def load_frame(path: str | os.PathLike[str] | None = None, *, download: bool = True,
               dataset: Dataset | None = None) -> tuple[pd.DataFrame, str, int, int]:
    """Find, read and grid a described data set (default: the built-in one). Returns (frame, source description,
    steps filled, rows read)."""
    return read_frame(path, dataset or DataConfig().dataset, download=download)[:4]


# --------------------------------------------------------------------------------------- scalers (fitting)


def fit_feature_scaler(values: np.ndarray, names: list[str], train_rows: slice | np.ndarray,
                       plain: set[str] = frozenset()) -> FeatureScaler:
    """Mean/std of each input over the training steps only (NaN cells, covariates past a series' end, left out);
    identity for the ``plain`` inputs (rnn_core.features.plain_names, also at each target step) and for 0/1
    flags."""
    mean = np.zeros(len(names))
    std = np.ones(len(names))
    for j, n in enumerate(names):
        col = values[train_rows, j]
        col = col[np.isfinite(col)]
        if n.split("@")[0] in plain or not len(col) or np.isin(col, (0.0, 1.0)).all():
            continue
        mean[j] = col.mean()
        std[j] = col.std() if col.std() > 0 else 1.0
    return FeatureScaler(tuple(names), tuple(mean.tolist()), tuple(std.tolist()))


def fit_target_scaler(train_counts: np.ndarray, transform: str, series: SeriesScales | None = None,
                      names: np.ndarray | None = None) -> TargetScaler:
    """Target statistics from the training hours only (scale100 needs none), for a level target; ``series``
    (per-series scales, rnn_core.panel) apply first, ``names`` [T] naming each count's series."""
    if transform == "scale100":
        return TargetScaler("scale100")
    c = train_counts.astype(np.float64)
    known = np.isfinite(c)  # a user's missing steps are NaN
    # the transform alone (mean 0, std 1): its statistics are fitted next
    c = TargetScaler(transform, series=series).forward(c[known], series=None if names is None else names[known])
    return TargetScaler(transform, float(c.mean()), float(c.std()), series=series)


def scaled_per_series(cfg: DataConfig) -> bool:
    """Whether a panel's series are each on their own scale (DataConfig.series_scaling; not for scale100, the
    lecture's fixed division)."""
    return bool(cfg.dataset.series) and cfg.series_scaling and cfg.target_transform != "scale100"


def _fit_target(frame: pd.DataFrame, cfg: DataConfig, target: np.ndarray, train_rows: np.ndarray,
                origins: np.ndarray) -> TargetScaler:
    """The target scaler: the level's statistics over the training hours (``train_rows``), and for a change
    target (DataConfig.target_form) those of the changes of the training windows (``origins`` [N]); for a panel
    scaled per series, each series' statistics of the target and of its history first."""
    names = origin_series(frame, cfg, np.arange(len(frame)))  # [T] or None
    series = hist = None
    if scaled_per_series(cfg):
        series = fit_series_scales(TargetScaler(cfg.target_transform)._f(target.astype(np.float64)), names, train_rows)
        hist = fit_series_scales(history(frame, cfg, raw=True), names, train_rows)
    level = fit_target_scaler(target[train_rows], cfg.target_transform, series,
                              None if names is None else names[train_rows])
    level = dataclasses.replace(level, history=hist)
    if cfg.target_form == "level":
        return level
    if cfg.target_transform == "scale100":
        return dataclasses.replace(level, form=cfg.target_form)
    plain = TargetScaler(cfg.target_transform, form="change", series=series)  # the change alone (mean 0, std 1)
    c = plain.forward(make_targets(target, origins, cfg.horizon).astype(np.float64), origin_values(frame, cfg, origins),
                      None if names is None else names[origins])
    c = c[np.isfinite(c)]  # [N * H] known changes
    return dataclasses.replace(level, form=cfg.target_form, change_mean=float(c.mean()), change_std=float(c.std()))


def origin_values(frame: pd.DataFrame, cfg: DataConfig, origins: np.ndarray) -> np.ndarray | None:
    """[N] the target at each forecast origin t, what a change target (DataConfig.target_form) is measured
    from; None for a level target. A user's missing step at t: the last known value of its series before it (what its
    inputs carry forward), or 0 where its series has none yet."""
    if cfg.target_form == "level":
        return None
    y = frame[target_column(cfg)]
    y = y.groupby(user_series.segment_start(frame, cfg.dataset)).ffill()  # never from one series into the next
    return np.nan_to_num(y.to_numpy(np.float64)[np.asarray(origins, np.int64)], nan=0.0)


def origin_series(frame: pd.DataFrame, cfg: DataConfig, origins: np.ndarray) -> np.ndarray | None:
    """[N] the name of each origin's series for a panel (what per-series scales are looked up by), else None."""
    ds = cfg.dataset
    if not ds.series:
        return None
    return frame[ds.series].to_numpy(dtype=object)[np.asarray(origins, np.int64)].astype(str)


# --------------------------------------------------------------------------------------- windows


def window_origins(n_hours: int, cfg: DataConfig) -> np.ndarray:
    """Forecast origins t (index of the last input hour) of all complete windows: [N]."""
    return np.arange(cfg.sequence_size - 1, n_hours - cfg.horizon)


def valid_origins(frame: pd.DataFrame, cfg: DataConfig) -> np.ndarray:
    """[N] the origins of complete windows of the frame: within one series (inputs t-L+1..t and targets
    t+1..t+H), every target known (a user's missing steps are never targets)."""
    y = frame[cfg.dataset.target].to_numpy(np.float64)
    out = []
    for a, b in user_series.segments(frame, cfg.dataset):
        o = np.arange(a + cfg.sequence_size - 1, b - cfg.horizon)
        if len(o):
            known = np.isfinite(sliding_window_view(y[a:b], cfg.horizon)[o - a + 1]).all(axis=1)  # [N]
            out.append(o[known])
    return np.concatenate(out) if out else np.empty(0, np.int64)


def default_bounds(hours: np.ndarray, origins: np.ndarray, cfg: DataConfig) -> tuple[str, str, str | None]:
    """The default split's (validation start, test start, test end): a built-in data set's own; for a user's
    series, the last tenth of its target times is the test period and the tenth before it validation."""
    from rnn_core.datasets import definition_of

    if (definition := definition_of(cfg.dataset)) is not None:
        return (*definition.split, None)
    if not len(origins):
        raise DataError(f"no complete window of {cfg.sequence_size} inputs and {cfg.horizon} known targets in the data")
    first, last = pd.Timestamp(hours[origins + 1].min()), pd.Timestamp(hours[origins + cfg.horizon].max())
    span, step = last - first, pd.tseries.frequencies.to_offset(cfg.dataset.freq or "h")

    def on_grid(t: pd.Timestamp) -> str:  # a boundary on the series' own steps
        try:  # a step of fixed length (pandas 3's Day is no Tick any more, but has one): the next step
            return str(t.ceil(pd.Timedelta(step)))
        except ValueError:  # weeks ending on a given day, months: the day
            return str(t.normalize())

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
        raise ValueError(f"{k} validation windows of {pd.Timedelta(length).days} days each do not fit apart in the "
                         "year before the test period: start validation at most a year before the test period, or "
                         "give --val-windows 1")
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


def make_targets(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """A target [T] -> targets [N, H]: the value at t+1 .. t+H for each origin t."""
    view = sliding_window_view(values, horizon)  # [T-H+1, H]; row i covers hours i..i+H-1
    return view[origins + 1]


def known_targets(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """A target [T] -> targets [N, H] like make_targets, NaN for hours after the data (the forecasts being made
    at its end)."""
    padded = np.concatenate([np.asarray(values, np.float64), np.full(horizon, np.nan)])  # [T + H]
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
    suit: bool = False,
) -> WindowData:
    """A described data set (``cfg.dataset``; its file ``path``) -> WindowData: scaled windows for every split,
    scalers, timestamps and config. ``scalers`` (from a checkpoint) replace the ones fitted on the training split,
    so that a saved model sees exactly the inputs it was trained on. ``suit``: the target transform was not
    chosen, so a user's series gets the one suited to its target (log1p for counts, else standard), as a search's."""
    cfg = cfg or DataConfig()
    frame, source, n_filled, raw_rows, dataset = read_frame(path, cfg.dataset, download=download)
    cfg = dataclasses.replace(cfg, dataset=dataset)  # with what the file told (its frequency and calendar)
    suited = user_series.suited_transform(frame, dataset) if suit and definition_of(dataset) is None else None
    if suited is not None and suited != cfg.target_transform:
        log.info("target %s: the %s target transform (%s)", dataset.target, suited,
                 "counts" if suited == "log1p" else "not a count: negative or fractional values")
        cfg = dataclasses.replace(cfg, target_transform=suited)
    return build(frame, cfg, source=source, n_filled=n_filled, raw_rows=raw_rows, scalers=scalers)


def _splits(frame: pd.DataFrame, cfg: DataConfig, source: str) -> dict[str, np.ndarray]:
    """The origins of each split, none empty (one line naming what to change otherwise)."""
    candidates = valid_origins(frame, cfg)
    if not len(candidates):
        raise DataError(f"{source}: {len(frame):,} rows: too few for one window of {cfg.sequence_size} inputs and "
                        f"{cfg.horizon} target(s) in one series; give more rows or a smaller --sequence-size")
    parts = split_origins(frame.index.to_numpy(), cfg, candidates)
    for name in SPLIT_NAMES:
        if len(parts[name]) == 0:
            raise DataError(f"{source}: split {name!r} has no windows of {cfg.sequence_size} inputs and {cfg.horizon} "
                            f"target(s) ({len(frame):,} rows, split {cfg.split}); check the split boundaries and "
                            "--sequence-size")
    return parts


def _stored(scalers: tuple[FeatureScaler, TargetScaler], names: list[str], cfg: DataConfig) -> tuple[FeatureScaler, TargetScaler]:
    fscaler, tscaler = scalers
    if list(fscaler.names) != names:
        raise DataError(f"the stored feature scaler names {len(fscaler.names)} features, this data config makes {len(names)}")
    if tscaler.form != cfg.target_form:
        raise DataError(f"the stored target scaler is for a {tscaler.form} target, this data config's target_form "
                        f"is {cfg.target_form}")
    return fscaler, tscaler


def build(
    frame: pd.DataFrame,
    cfg: DataConfig,
    *,
    source: str = "frame",
    n_filled: int = 0,
    raw_rows: int = 0,
    scalers: tuple[FeatureScaler, TargetScaler] | None = None,
) -> WindowData:
    """A frame on its grid -> WindowData (see :func:`load`)."""
    times = frame.index.to_numpy()
    names = feature_names(cfg)
    user_series.check_transform(frame, cfg, source)
    target = frame[target_column(cfg)].to_numpy(np.float32)  # [T]; NaN at a missing step
    parts = _splits(frame, cfg, source)
    # Training steps: every input and target step of the train split (with one validation window, every
    # step up to the last training target).
    train_rows = covered_hours(parts["train"], len(times), cfg.sequence_size, cfg.horizon)
    if scalers is not None:
        fscaler, tscaler = _stored(scalers, names, cfg)
        values = raw_features(frame, cfg, tscaler.history)  # [T, F] unscaled (the history per series)
    else:
        tscaler = _fit_target(frame, cfg, target, train_rows, parts["train"])
        values = raw_features(frame, cfg, tscaler.history)
        fscaler = fit_feature_scaler(values, names, train_rows, plain_names(cfg.dataset))
    scaled = fscaler.apply(values)  # [T, F] float32
    splits = {}
    for name in SPLIT_NAMES:
        o = parts[name]
        y_raw = make_targets(target, o, cfg.horizon)  # [N, H]
        anchor, series = origin_values(frame, cfg, o), origin_series(frame, cfg, o)  # [N] or None each
        splits[name] = Split(
            X=make_windows(scaled, o, cfg.sequence_size),
            y=torch.from_numpy(np.asarray(tscaler.forward(y_raw.astype(np.float64), anchor, series), dtype=np.float32)),
            y_raw=torch.from_numpy(np.ascontiguousarray(y_raw, dtype=np.float32)),
            origin=o,
            target_time=make_targets(times, o, cfg.horizon).copy(),
            anchor=anchor,
            series=series,
        )
    return WindowData(
        config=cfg, source=source, feature_names=names, feature_scaler=fscaler, target_scaler=tscaler,
        times=times, target=target, n_filled=n_filled, raw_rows=raw_rows, splits=splits,
        filled=frame["is_missing"].to_numpy() > 0, starts=user_series.segment_start(frame, cfg.dataset),
    )


def features_for(frame: pd.DataFrame, cfg: DataConfig, scaler: FeatureScaler,
                 history: SeriesScales | None = None) -> np.ndarray:
    """Scaled features [T, F] of a frame with a stored scaler (for predict on a saved model); ``history``: the
    per-series scales of the history input (TargetScaler.history) for a panel scaled per series."""
    return scaler.apply(raw_features(frame, cfg, history))
