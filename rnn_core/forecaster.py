"""The forecaster a user gets: a base (one network, or the weighted mean of several) and the ordered chain of
post-processing steps (rnn_core.postprocess) that turns its raw forecasts into the shipped ones, intervals
included. One object, one file, read in one place.

A file of either kind (rnn_core.checkpoint's envelope) stores the base and ``"steps"``: the chain as a list.
A single model's file is a model bundle with that list (a trial checkpoint has none: its raw network); an
ensemble's file is ``{"members": {name: bundle}, "weights": {name: w}, "steps": [...], "meta": {...}}``, the
members complete bundles without their optimizer state, so the file stands alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

from rnn_core.checkpoint import (
    ENSEMBLE_FORMAT, CheckpointError, LoadedModel, check_bundle, model_from_bundle, read_verified, write_bundle,
)
from rnn_core.config import DataConfig, form_note
from rnn_core.data import history_span, known_targets, target_column
from rnn_core.intervals import Intervals
from rnn_core.postprocess import ConformalIntervals, Step, StepError, steps_from_list
from rnn_core.series import baselines_for, never_negative, segment_start, segments

#: Keys of a trial checkpoint that an ensemble member does not need (resumable training state).
TRAINING_STATE = ("model", "ema", "optimizer", "scheduler", "rng", "bad_epochs")

Bands = dict[float, tuple[np.ndarray, np.ndarray]]
"""level -> (lower [N, H], upper [N, H]) in the target's units."""


@runtime_checkable
class Forecaster(Protocol):
    """What a forecast needs: the earliest origin with a full input window, the split and horizon it is scored
    on (its data config: every member's split, the longest window), and forecasts [N, H] in the target's units from
    origins [N] (indices of the last input hour in the hourly frame)."""

    @property
    def first_origin(self) -> int: ...

    @property
    def data_config(self) -> DataConfig: ...

    def forecast(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SeasonalNaive:
    """A naive member: the target ``lag`` steps before each target step (0: the value at the origin, persistence).

    A candidate of a user's series' ensemble beside the trials (search.results.build_ensemble): on a series that a
    naive forecast already fits (a daily cycle repeated to a tenth of a degree) the selection weighs it, and the
    shipped model is never worse on validation than it. Stored in an ensemble file as {"seasonal_naive": lag,
    "data_config": ...}."""

    lag: int
    data_config: DataConfig
    source: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.lag, bool) or not isinstance(self.lag, int) or self.lag < 0 or 0 < self.lag < self.data_config.horizon:
            raise CheckpointError(f"{self.source}: a naive member's lag must be 0 or at least the horizon "
                                  f"({self.data_config.horizon}), got {self.lag!r}")

    @property
    def first_origin(self) -> int:
        return max(self.lag - 1, 0)

    @property
    def bundle(self) -> dict[str, Any]:
        return {"seasonal_naive": self.lag, "data_config": self.data_config.to_dict()}

    def forecast(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        """[N, H]: the known value at t + k - lag (t for persistence), carried forward over missing steps and never
        from another series (there, the value at the origin)."""
        ds, h = self.data_config.dataset, self.data_config.horizon
        y = frame[target_column(self.data_config)].astype(np.float64)
        start = segment_start(frame, ds)
        y = y.groupby(start).ffill().to_numpy()
        origins = np.asarray(origins, np.int64)
        k = np.arange(1, h + 1)
        idx = np.repeat(origins[:, None], h, axis=1) if not self.lag else origins[:, None] + k[None] - self.lag
        idx = np.where(idx < start[origins][:, None], origins[:, None], idx)  # [N, H]
        return y[idx]

    def describe(self) -> str:
        return "persistence" if not self.lag else f"the value {self.lag} steps before"


def member_from_bundle(bundle: dict[str, Any], source: str, device: str | torch.device = "cpu") -> LoadedModel | SeasonalNaive:
    """A member of an ensemble from its stored bundle: a network, or a naive member."""
    if "seasonal_naive" in bundle:
        try:
            cfg = DataConfig.from_dict(bundle["data_config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: a naive member without a readable data config: {exc}") from None
        return SeasonalNaive(bundle["seasonal_naive"], cfg, source)
    return model_from_bundle(check_bundle(bundle, source), source, device)


def naive_bundles(cfg: DataConfig) -> dict[str, dict[str, Any]]:
    """The candidate policy of every ensemble (search.results.build_ensemble and the knee rule's alike): the trials,
    best first, then these naive forecasts, persistence and each season of the series at least the horizon. On a
    series that a naive forecast already fits the selection weighs it, so the shipped model is never worse on
    validation than it; ties go to the trials."""
    return {name: SeasonalNaive(lag, cfg).bundle for name, lag in baselines_for(cfg).items()
            if lag == 0 or lag >= cfg.horizon}


@dataclass(frozen=True)
class WeightedMean:
    """The weighted mean of members' forecasts in the target's units (members with different windows, transforms,
    cells or lags combine: each turns the hourly frame into its own inputs)."""

    members: tuple[LoadedModel | SeasonalNaive, ...]
    names: tuple[str, ...]
    weights: np.ndarray
    """[M] positive, summing to 1."""

    @property
    def first_origin(self) -> int:
        return max(m.first_origin for m in self.members)

    @property
    def data_config(self) -> DataConfig:
        """The members' split and horizon (checked equal when loaded), with the longest member window."""
        return dataclasses.replace(self.members[0].data_config,
                                   sequence_size=max(m.data_config.sequence_size for m in self.members))

    def member_forecasts(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        """[M, N, H] each member's forecasts."""
        return np.stack([m.forecast(frame, origins) for m in self.members])

    def forecast(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        return np.tensordot(self.weights, self.member_forecasts(frame, origins), axes=1)  # [N, H]

    def describe(self) -> str:
        parts = [f"{n} x{w:.2f} ({m.describe()})" if isinstance(m, SeasonalNaive) else
                 f"{n} x{w:.2f} ({m.model_config.cell} {m.model_config.hidden_size}x{m.model_config.num_layers}, "
                 f"{m.data_config.sequence_size} h{form_note(m.data_config.target_form)})" for n, w, m in zip(self.names, self.weights, self.members)]
        return f"ensemble of {len(self.members)}: " + "; ".join(parts)


@dataclass(frozen=True)
class PostProcessed:
    """A base forecaster and its chain of steps; what every model file loads as."""

    base: LoadedModel | WeightedMean
    steps: tuple[Step, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    """What the file says about where it came from (trial, search, selection); never behaviour."""
    source: str = ""
    """Where it was loaded from (for messages)."""

    @property
    def first_origin(self) -> int:
        return self.base.first_origin

    @property
    def data_config(self) -> DataConfig:
        return self.base.data_config

    @property
    def intervals(self) -> Intervals | None:
        """The chain's conformal intervals (its last step), if it has them."""
        return self.steps[-1].intervals if self.steps and isinstance(self.steps[-1], ConformalIntervals) else None

    @property
    def point_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if not isinstance(s, ConformalIntervals))

    def with_steps(self, steps: tuple[Step, ...]) -> PostProcessed:
        """The same base with another chain (a prefix or subset of this one, for ablations; or new intervals)."""
        return dataclasses.replace(self, steps=tuple(steps))

    def with_intervals(self, intervals: Intervals | None) -> PostProcessed:
        return self.with_steps(self.point_steps + ((ConformalIntervals(intervals),) if intervals is not None else ()))

    def forecast(self, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
        """[N, H] the shipped forecasts from origins [N]."""
        return self.forecast_with_bands(frame, origins, bands=False)[0]

    def forecast_with_bands(self, frame: pd.DataFrame, origins: np.ndarray,
                            bands: bool = True) -> tuple[np.ndarray, Bands]:
        """The shipped forecasts [N, H] and (with ``bands``, when the chain has intervals) their bands."""
        origins = np.asarray(origins, np.int64)
        steps = self.steps if bands else self.point_steps
        if not len(origins):
            return np.empty((0, self.data_config.horizon)), {}
        ds = self.data_config.dataset
        if not ds.series:
            return self._forecast_segment(frame, origins, steps, (0, len(frame)))
        # Several series: each one's forecasts learn only from its own past (its segment of rows).
        out, bands_ = np.empty((len(origins), self.data_config.horizon)), {}
        for a, end in segments(frame, ds):
            sel = (origins >= a) & (origins < end)
            if not sel.any():
                continue
            pred, b = self._forecast_segment(frame, origins[sel], steps, (a, end))
            out[sel] = pred
            for level, (lo, hi) in b.items():
                bands_.setdefault(level, (np.empty_like(out), np.empty_like(out)))
                bands_[level][0][sel], bands_[level][1][sel] = lo, hi
        return out, bands_

    def _forecast_segment(self, frame: pd.DataFrame, origins: np.ndarray, steps: tuple[Step, ...],
                          bounds: tuple[int, int]) -> tuple[np.ndarray, Bands]:
        """forecast_with_bands for origins [N] of one series (rows bounds[0] .. bounds[1] - 1)."""
        lookback = sum(s.lookback for s in steps)
        # Each step may use the forecasts of the `lookback` origins before each row: forecast the consecutive
        # origins from the first asked one minus the chain's whole lookback (not before the first possible one).
        first = bounds[0] + self.first_origin
        span, rows = (origins, np.arange(len(origins))) if not lookback else history_span(origins, first, lookback)
        pred = self.base.forecast(frame, span)  # [S, H]
        target = None
        if lookback:
            y = frame[target_column(self.data_config)].to_numpy(np.float64)[: bounds[1]]  # nothing of a later series
            target = known_targets(y, span, pred.shape[1])  # [S, H], NaN past the series' end
            inside = (span[:, None] + np.arange(1, pred.shape[1] + 1)) < bounds[1]
            target = np.where(np.isnan(target) & inside, pred, target)  # a missing step counts as no error
        for step in steps:
            pred = step.apply(pred, target)
        iv = steps[-1] if steps and isinstance(steps[-1], ConformalIntervals) else None
        return pred[rows], (iv.bands(pred, target, rows) if iv is not None else {})

    def describe(self) -> str:
        base = self.base.describe() if isinstance(self.base, WeightedMean) else f"model {self.source}"
        return base + "; then " + (", ".join(s.kind.replace("_", " ") for s in self.steps) or "nothing")


# ------------------------------------------------------------------------------------------ files


def member_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """A trial checkpoint without its resumable training state: what a member needs to forecast."""
    return {k: v for k, v in bundle.items() if k not in TRAINING_STATE}


def save_forecaster(path: str | os.PathLike[str], forecaster: PostProcessed) -> Path:
    """Write a forecaster as one standalone file (atomically): its base's bundle(s), its chain, its meta."""
    chain = [s.to_dict() for s in forecaster.steps]
    base = forecaster.base
    if isinstance(base, LoadedModel):
        return write_bundle(path, dict(member_bundle(base.bundle), steps=chain, meta=dict(forecaster.meta)))
    payload = {"members": {n: member_bundle(m.bundle) for n, m in zip(base.names, base.members)},
               "weights": {n: float(w) for n, w in zip(base.names, base.weights)}, "steps": chain,
               "meta": dict(forecaster.meta)}
    return write_bundle(path, payload, fmt=ENSEMBLE_FORMAT)


def ensemble_of(bundles: dict[str, dict[str, Any]], weights: dict[str, float]) -> WeightedMean:
    """Members (name -> model bundle) and weights (name -> weight; 0 drops a member, the rest are normalised to
    sum to 1) -> their weighted mean."""
    kept = {n: float(w) for n, w in weights.items() if w > 0}
    missing = [n for n in kept if n not in bundles]
    if not kept or missing:
        raise ValueError(f"an ensemble needs weighted members that it holds; missing: {missing or 'all'}")
    total = sum(kept.values())
    return WeightedMean(tuple(member_from_bundle(bundles[n], n) for n in kept), tuple(kept),
                        np.array([w / total for w in kept.values()]))


def _weighted_mean(payload: dict[str, Any], source: str, device: str | torch.device) -> WeightedMean:
    members, weights = payload.get("members"), payload.get("weights")
    if not isinstance(members, dict) or not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"{source}: an ensemble file without members or weights")
    for name, w in weights.items():
        if name not in members or not isinstance(members[name], dict):
            raise CheckpointError(f"{source}: the ensemble names member {name!r}, which the file does not hold")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise CheckpointError(f"{source}: member {name!r} has weight {w!r}; weights must be positive numbers")
    if abs(sum(weights.values()) - 1.0) > 1e-6:
        raise CheckpointError(f"{source}: the ensemble's weights sum to {sum(weights.values()):.6f}, not 1")
    names = tuple(weights)
    loaded = tuple(member_from_bundle(members[n], f"{source} (member {n})", device) for n in names)
    ref = loaded[0].data_config
    for name, m in zip(names, loaded):
        cfg = m.data_config
        if cfg.horizon != ref.horizon or (cfg.split, cfg.val_start, cfg.test_start, cfg.test_end) != (
                ref.split, ref.val_start, ref.test_start, ref.test_end):
            raise CheckpointError(f"{source}: member {name!r} forecasts horizon {cfg.horizon} on split {cfg.split!r}, "
                                  f"unlike member {names[0]!r} (horizon {ref.horizon}, split {ref.split!r})")
    return WeightedMean(loaded, names, np.array([weights[n] for n in names], dtype=np.float64))


def forecaster_from_payload(fmt: str, payload: dict[str, Any], source: str,
                            device: str | torch.device = "cpu") -> PostProcessed:
    """A verified payload (rnn_core.checkpoint.read_verified) -> its forecaster."""
    try:
        steps = steps_from_list(payload.get("steps", []))
    except StepError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    if fmt == ENSEMBLE_FORMAT:
        base: LoadedModel | WeightedMean = _weighted_mean(payload, source, device)
    else:
        base = model_from_bundle(check_bundle(payload, source), source, device)
    meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
    return PostProcessed(base, steps, meta, source)


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> PostProcessed:
    """Load a model file or an ensemble file written by rnn-search (Ray is not needed): one forecaster,
    ``.forecast(frame, origins)``; ``.base`` is the network (``LoadedModel``) or the members' mean."""
    fmt, payload = read_verified(path)
    return forecaster_from_payload(fmt, payload, str(path), device)


# ------------------------------------------------------------------------------------------ building


def split_targets(frame: pd.DataFrame, cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's origins [N] and targets [N, H] in the target's units (no windows: a forecaster builds its own)."""
    from rnn_core.data import make_targets, split_origins, valid_origins

    origins = split_origins(frame.index.to_numpy(), cfg, valid_origins(frame, cfg))[split]
    return origins, make_targets(frame[target_column(cfg)].to_numpy(np.float64), origins, cfg.horizon)


def fit_chain(base: LoadedModel | WeightedMean, frame: pd.DataFrame, loss: str = "mae", meta: dict[str, Any] | None = None,
              source: str = "", base_val: np.ndarray | None = None, origins: np.ndarray | None = None,
              ) -> tuple[PostProcessed, np.ndarray, np.ndarray]:
    """The shipped forecaster of ``base``: rnn_core.postprocess.standard_steps with the calibration factor
    fitted on the validation hours (``loss``: mae or rmse), then conformal intervals fitted on the chain's own
    validation forecasts. Single models and ensembles get the same chain. Also returns those validation
    forecasts and targets [N, H] (what the forecaster scores there). ``base_val``: the base's validation
    forecasts when the caller has them already, from ``origins`` (default: the base's own validation origins; an
    ensemble's chooser gives those every candidate could forecast)."""
    from rnn_core.data import make_targets
    from rnn_core.intervals import conformal
    from rnn_core.postprocess import calibrate, standard_steps

    if origins is None:
        origins, target = split_targets(frame, base.data_config, "val")
    else:
        target = make_targets(frame[target_column(base.data_config)].to_numpy(np.float64), origins, base.data_config.horizon)
    base_val = base.forecast(frame, origins) if base_val is None else base_val
    cfg = base.data_config
    counts = never_negative(frame[cfg.dataset.target].to_numpy(np.float64))
    factor = calibrate(base_val, target, loss) if counts else 1.0
    point = PostProcessed(base, standard_steps(factor, loss, cfg, counts), dict(meta or {}), source)
    pred = point.forecast(frame, origins)  # [N, H]: the intervals do not change it
    return point.with_intervals(conformal(pred, target)), pred, target


def post_process(base: LoadedModel | WeightedMean, frame: pd.DataFrame, loss: str = "mae",
                 meta: dict[str, Any] | None = None, source: str = "") -> PostProcessed:
    """The shipped forecaster of ``base`` (:func:`fit_chain`)."""
    return fit_chain(base, frame, loss, meta, source)[0]


def ship_checkpoint(path: str | os.PathLike[str], frame: pd.DataFrame, loss: str = "mae") -> PostProcessed:
    """Turn a trained model's checkpoint (rnn_core.train's bundle) into the forecaster it ships as, in place:
    without its training state, with the chain of :func:`post_process`."""
    from rnn_core.checkpoint import load_bundle

    bundle = load_bundle(path)
    shipped = post_process(model_from_bundle(member_bundle(bundle), str(path)), frame, loss, bundle.get("meta"), str(path))
    save_forecaster(path, shipped)
    return shipped
