"""What happens to a forecast after the network (or the members' weighted mean) has made it: an ordered chain
of steps, each a frozen dataclass that checks itself, states its lookback and applies one stage.

Every step works on the forecasts ``pred`` [S, H] of S consecutive origins and on what is known of their targets
``target`` [S, H] (NaN where a target lies after the data or after an origin's own time is irrelevant: each
stage uses, for origin i and step k, only targets of origins up to i - k, those known at i). A step's
``lookback`` is how many origins before an asked one it needs the forecasts of; a row with less history in the
span falls back as the step says. So a chain forecasts ``sum(lookback)`` origins before the first asked one.

Calibration (:class:`Calibration`): one factor k on the forecast, the least-absolute-deviation or least-squares
fit of target = k * forecast on the validation hours, k within [0.8, 1.25]. Members trained on log counts of
earlier, quieter months forecast the level of later, busier ones too low; one parameter corrects that without
room to overfit. With ``window`` > 0 it is fitted again at each origin t on the forecasts of the ``window``
origins before t whose targets are known at t (for step k, origins up to t - k): demand keeps moving (a model
trained before a season of growth forecasts it too low all season); the validation factor stays where less
history exists.

Residual correction (:class:`ResidualCorrection`): the forecast's errors persist (weather and events that the
inputs show late or not at all) and repeat by the day and the week; an autoregression of its hour-ahead errors
on those of the hour, the day and the week before (``lags``), fitted again at each origin on the ``window``
origins before it, on the sqrt scale (a count's spread grows with its level), run forward over the horizon.

Same-hour bias (:class:`SeasonalBias`): the forecast's errors repeat by the hour of the day for weeks (dark
evenings after the clocks change, a shifted rush hour) more steadily than one lag of a day can carry; step k at
origin i adds ``share`` times the mean of that step's errors at the same hour of the ``periods`` days before
(origins i - period * d whose targets are known at i), on the sqrt scale, the ``trim`` share of those days with
the highest and the lowest errors left out (one odd day must not move an hour for a month). It runs between the
calibration and the residual correction, which then forecasts what is left.

Non-negativity (:class:`NonNegative`): a count is never below zero (a negative error carried onto a quiet
night hour could say otherwise).

Intervals (:class:`ConformalIntervals`): rolling conformal intervals around the final forecast
(rnn_core.intervals); the last step; it bounds the forecast and does not change it.

A file stores its chain as a list of ``step.to_dict()`` (each with its ``kind``); :func:`steps_from_list` maps
them back and refuses, in one line naming the step and field, anything malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view  # windows of past errors: [S, ...] -> views

from rnn_core.config import DataConfig
from rnn_core.series import lag_words, span_words, step_words
from rnn_core.data import known_runs
from rnn_core.intervals import Intervals

#: Origins (hours) before each forecast that an ensemble's calibration factor is refit on: two weeks
#: (rnn_core.ensemble.rolling_factors).
LEVEL_WINDOW = 14 * 24

#: Origins (hours) before each forecast that an ensemble's residual correction (an autoregression of its
#: hour-ahead errors) is fitted on: two weeks (rnn_core.ensemble.residual_corrections).
CORRECTION_WINDOW = 14 * 24

#: The hours before an hour whose errors that autoregression uses: the hour, the day and the week before.
CORRECTION_LAGS = (1, 24, 168)

#: The same-hour bias step (rnn_core.postprocess.SeasonalBias): the days before an hour whose errors at that
#: hour of the day it averages, and the share of that mean it adds. The forecast's errors repeat by the hour of
#: the day for weeks (after the clocks change in November, the 17:00 rush is over-forecast by 34 rentals on average
#: all test period); the residual correction's one lag of a day is too noisy to carry that. Chosen on the shipped
#: ensembles of four test periods of the built-in data set (benchmarks/seasonal_bias.py; RESULTS.md, "Room for the budget").
SEASONAL_BIAS_DAYS = 28

SEASONAL_BIAS_SHARE = 0.75

#: The share of those days left out at each end before the mean (3 of 28): the days with the highest and the
#: lowest errors at that hour. One odd day (the eve of Thanksgiving, an election night) otherwise moves its hours
#: for four weeks. Set a priori at a tenth; on the shipped ensembles of 14 searches over four test periods it
#: lowered the validation MAE on every one (-0.4 to -0.8 %, where the plain mean buys nothing there) and the test
#: MAE on every one; 2 or 4 days cut are within 0.03 of 3 (RESULTS.md, "The same-hour bias step").
SEASONAL_BIAS_TRIM = 0.1


#: What a calibration factor's fit minimises.
LOSSES = ("mae", "rmse")


# ------------------------------------------------------------------------------------------ the stages


CALIBRATION_RANGE = (0.8, 1.25)


def _factors(p: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    """Forecasts and targets [B, n] -> [B] the factor k that minimises the error of k * p on each row, within
    CALIBRATION_RANGE. mae: the weighted median of y/p with weights p (sum |y - k p| = sum p |y/p - k|);
    rmse: sum(p y) / sum(p^2). Hours forecast at (nearly) zero carry no weight; a row with none gets 1."""
    w = np.where(p > 1e-6, p, 0.0)
    if loss == "rmse":
        f = (w * y).sum(axis=1) / np.maximum((w * p).sum(axis=1), 1e-12)
    else:
        ratio = np.where(w > 0, y / np.where(w > 0, p, 1.0), np.inf)  # zero-weight hours sort last
        order = np.argsort(ratio, axis=1)
        cum = np.cumsum(np.take_along_axis(w, order, axis=1), axis=1)  # [B, n]
        half = np.argmax(cum >= cum[:, -1:] / 2, axis=1)  # the first rank holding half the weight
        f = np.take_along_axis(np.take_along_axis(ratio, order, axis=1), half[:, None], axis=1)[:, 0]
    return np.clip(np.where(w.sum(axis=1) > 0, f, 1.0), *CALIBRATION_RANGE)


def calibrate(pred: np.ndarray, target: np.ndarray, loss: str = "mae") -> float:
    """The factor k that minimises the error of k * pred on (pred, target) [N, H], within CALIBRATION_RANGE
    (:func:`_factors`: least absolute deviation for mae, least squares for rmse)."""
    p = np.asarray(pred, np.float64).ravel()[None]
    return float(_factors(p, np.asarray(target, np.float64).ravel()[None], loss)[0]) if p.size else 1.0


def rolling_factors(pred: np.ndarray, target: np.ndarray, rows: np.ndarray, window: int, loss: str = "mae") -> np.ndarray:
    """The calibration factor of each forecast ``pred[rows]``, fitted as :func:`calibrate` does on recent hours.

    ``pred`` and ``target`` [M, H] belong to consecutive origins (target NaN where not yet known). For row i
    and step k (1-based) the fit uses rows i - window .. i - k. Returns [N, H]; NaN for rows with fewer than
    ``window`` rows before them."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    rows = np.asarray(rows, np.int64)
    out = np.full((len(rows), pred.shape[1]), np.nan)
    ok = rows >= window
    if window <= 0 or not ok.any():
        return out
    q = rows[ok]
    for k in range(pred.shape[1]):  # step k + 1: the [Nq, n] forecasts and targets known at each origin
        out[ok, k] = _factors(known_runs(pred, q, window, k + 1), known_runs(target, q, window, k + 1), loss)
    return out


#: Each coefficient of the residual correction is kept within this range: persistence, never reversal (a
#: negative coefficient fitted on two weeks of errors is noise), and never the whole of a past error.
CORRECTION_RANGE = (0.0, 0.9)


def _sqrt_errors(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scale the error steps work on (a count's spread grows with its level): [S, H] forecasts and targets
    -> (spread sqrt(pred + 1), errors (target - pred) / spread), each [S, H]; an error is NaN where its target
    is not known."""
    spread = np.sqrt(np.maximum(pred, 0.0) + 1.0)
    return spread, (target - pred) / spread


def residual_corrections(pred: np.ndarray, target: np.ndarray, rows: np.ndarray, window: int,
                         lags: tuple[int, ...] = CORRECTION_LAGS) -> np.ndarray:
    """What to add to the calibrated forecasts ``pred[rows]`` for the errors before them: [N, H].

    ``pred`` and ``target`` [S, H] belong to consecutive origins (target NaN where not yet known). On the sqrt
    scale, z[j] = (target - pred) / sqrt(pred + 1) at step 1 of origin j is the error for hour j + 1, known
    from origin j + 1 on. At origin i, the coefficients b are the least-squares fit of z[j] on
    z[j - l] for l in ``lags``, over origins j = i - window .. i - 1 (all known at i), each kept within
    CORRECTION_RANGE; the error of hour i + k is then forecast as sum_l b_l * z(hour i + k - l), with the
    known error where that hour is at most i and the forecast one where it is later, and step k adds it times
    sqrt(pred[i, k] + 1). Rows with fewer than ``window`` + max(lags) origins before them get 0."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    rows = np.asarray(rows, np.int64)
    lags_ = np.asarray(sorted(set(lags)), np.int64)
    out = np.zeros((len(rows), pred.shape[1]))
    ok = rows >= window + (lags_.max() if len(lags_) else 0)
    if window <= 0 or not len(lags_) or not ok.any():
        return out
    q = rows[ok]
    spread, err = _sqrt_errors(pred, target)  # [S, H] each
    z = err[:, 0]  # [S] hour-ahead errors on the sqrt scale
    lagged = np.stack([np.concatenate([np.full(lag, np.nan), z[:-lag]]) for lag in lags_], axis=-1)  # [S, p]: z[j - l]
    x = sliding_window_view(lagged, window, axis=0)[q - window]  # [Nq, p, window]: origins j = i - window .. i - 1
    y = sliding_window_view(z, window)[q - window]  # [Nq, window]
    gram = np.einsum("naw,nbw->nab", x, x)  # [Nq, p, p]
    gram += 1e-9 * (np.trace(gram, axis1=1, axis2=2)[:, None, None] + 1.0) * np.eye(len(lags_))  # all-zero errors
    coef = np.linalg.solve(gram, np.einsum("naw,nw->na", x, y)[..., None])[..., 0]  # [Nq, p]
    coef = np.clip(coef, *CORRECTION_RANGE)
    ahead = np.zeros((len(q), pred.shape[1]))  # [Nq, H]: the forecast errors of hours i + 1 .. i + H
    for k in range(1, pred.shape[1] + 1):
        for a, lag in enumerate(lags_):  # hour i + k - lag: known (step 1 of origin i + k - lag - 1) or forecast
            past = z[q + k - lag - 1] if k <= lag else ahead[:, k - lag - 1]
            ahead[:, k - 1] += coef[:, a] * past
    out[ok] = ahead * spread[q]
    return out


def trimmed_days(trim: float, seen: np.ndarray | int) -> np.ndarray:
    """How many of ``seen`` errors the same-hour bias leaves out at each end: ``trim`` of them rounded half up,
    at most so many that one stays (3 of 28 at a tenth); none of none."""
    seen = np.asarray(seen)
    return np.clip(np.floor(trim * seen + 0.5), 0, np.maximum((seen - 1) // 2, 0)).astype(np.int64)


def trimmed_means(past: np.ndarray, trim: float) -> np.ndarray:
    """[N, D] errors (NaN where not known) -> [N]: the mean of each row's known errors, :func:`trimmed_days` of
    them left out at each end; 0 where none is known."""
    past = np.sort(past, axis=1)  # ascending; the unknown (NaN) last
    seen = np.isfinite(past).sum(axis=1, keepdims=True)  # [N, 1]
    cut = trimmed_days(trim, seen)  # [N, 1] dropped at each end
    rank = np.arange(past.shape[1])[None]  # [1, D]
    keep = (rank >= cut) & (rank < seen - cut)  # [N, D]
    return np.where(keep, past, 0.0).sum(axis=1) / np.maximum(keep.sum(axis=1), 1)


def seasonal_biases(pred: np.ndarray, target: np.ndarray, rows: np.ndarray, period: int, periods: int,
                    trim: float = 0.0) -> np.ndarray:
    """The mean same-hour error of each forecast ``pred[rows]``, in its units: [N, H].

    ``pred`` and ``target`` [S, H] belong to consecutive origins (target NaN where not yet known). On the sqrt
    scale, e[j, k] = (target - pred) / sqrt(pred + 1) at step k of origin j. Step k of origin i (the hour
    i + k) averages e[i - period * d, k] for d = ceil(k / period) .. ``periods``: the same step's errors at the
    same hour of the seasons before, each known at i (its hour i + k - period * d <= i), and scales the mean
    by sqrt(pred[i, k] + 1). ``trim``: the share of those errors (:func:`trimmed_means`) dropped at each end
    before the mean, so that one odd day (a holiday's eve, an election night) does
    not move the same hour for a month. Rows with fewer than period * periods origins before them, and steps
    with no such season, get 0."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    rows = np.asarray(rows, np.int64)
    out = np.zeros((len(rows), pred.shape[1]))
    ok = rows >= period * periods
    if not ok.any():
        return out
    q = rows[ok]
    spread, err = _sqrt_errors(pred, target)  # [S, H] each; err NaN where not known
    for k in range(1, pred.shape[1] + 1):
        back = period * np.arange(-(-k // period), periods + 1)  # [D']: the seasons whose step k is known at i
        if not len(back):
            continue
        mean = trimmed_means(err[q[:, None] - back, k - 1], trim)  # [Nq] over [Nq, D']; none seen: 0
        out[ok, k - 1] = mean * spread[q, k - 1]
    return out


# ------------------------------------------------------------------------------------------ the steps


class StepError(ValueError):
    """A step whose settings are not what it needs."""


def _whole(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise StepError(f"{name} {v!r}: expected a whole number >= {low}")
    return v


#: kind -> step class, for reading a stored chain back (filled by :func:`register`).
STEPS: dict[str, type] = {}


def register(cls: type) -> type:
    """Make a step class readable from a file by its ``kind``."""
    STEPS[cls.kind] = cls
    return cls


class Step(Protocol):
    """One post-processing stage: ``apply`` [S, H] forecasts of consecutive origins (with their known targets)
    -> [S, H]; row i may use rows i - lookback .. i - 1."""

    kind: ClassVar[str]

    @property
    def lookback(self) -> int: ...

    def apply(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray: ...

    def describe(self, freq: str | None = None) -> str:
        """One line in the series' own words (``freq``: its step; None: hours)."""
        ...

    def to_dict(self) -> dict[str, Any]: ...


@register
@dataclass(frozen=True)
class Calibration:
    """Forecast times a factor: the validation one, refit on the ``window`` origins before each (0: never)."""

    kind: ClassVar[str] = "calibration"
    factor: float
    window: int = 0
    loss: str = "mae"

    def __post_init__(self) -> None:
        lo, hi = CALIBRATION_RANGE
        if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)) or not lo <= self.factor <= hi:
            raise StepError(f"calibration factor {self.factor!r}: expected a number within [{lo}, {hi}]")
        _whole("calibration window", self.window, 0)
        if self.loss not in LOSSES:
            raise StepError(f"calibration loss {self.loss!r}: expected one of {', '.join(LOSSES)}")

    @property
    def lookback(self) -> int:
        return self.window

    def apply(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        if not self.window:
            return self.factor * pred
        factors = rolling_factors(pred, target, np.arange(len(pred)), self.window, self.loss)  # [S, H], NaN: too early
        return pred * np.where(np.isnan(factors), self.factor, factors)

    def describe(self, freq: str | None = None) -> str:
        each = step_words(freq)[0].split(" ", 1)[1]
        again = f", fitted again at each {each} on the {span_words(self.window, freq)} before it" if self.window else ""
        return f"times the calibration factor {self.factor:.3f}{again}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "factor": float(self.factor), "window": self.window, "loss": self.loss}


@register
@dataclass(frozen=True)
class ResidualCorrection:
    """Forecast plus a forecast of its own error (:func:`residual_corrections`)."""

    kind: ClassVar[str] = "residual_correction"
    window: int = CORRECTION_WINDOW
    lags: tuple[int, ...] = CORRECTION_LAGS

    def __post_init__(self) -> None:
        _whole("correction window", self.window, 1)
        if not isinstance(self.lags, tuple) or not self.lags:
            raise StepError(f"correction lags {self.lags!r}: expected at least one whole number of hours >= 1")
        for lag in self.lags:
            _whole("correction lag", lag, 1)

    @property
    def lookback(self) -> int:
        return self.window + max(self.lags)

    def apply(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        return pred + residual_corrections(pred, target, np.arange(len(pred)), self.window, self.lags)

    def describe(self, freq: str | None = None) -> str:
        lags = ", ".join(lag_words(lag, freq) for lag in self.lags)
        return f"plus its own error forecast from those {lags} before (fitted on the {span_words(self.window, freq)} before)"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "window": self.window, "lags": list(self.lags)}


@register
@dataclass(frozen=True)
class SeasonalBias:
    """Forecast plus ``share`` of its mean error at the same hour of the ``periods`` days before, the ``trim``
    share of those days at each end left out (:func:`seasonal_biases`; ``period``: the steps in a day)."""

    kind: ClassVar[str] = "seasonal_bias"
    period: int = 24
    periods: int = SEASONAL_BIAS_DAYS
    share: float = SEASONAL_BIAS_SHARE
    trim: float = 0.0
    """0 (the plain mean) where a file does not say: files written before the trim forecast as they did."""

    def __post_init__(self) -> None:
        _whole("seasonal bias period", self.period, 1)
        _whole("seasonal bias periods", self.periods, 1)
        if isinstance(self.share, bool) or not isinstance(self.share, (int, float)) or not 0 <= self.share <= 1:
            raise StepError(f"seasonal bias share {self.share!r}: expected a number within [0, 1]")
        if isinstance(self.trim, bool) or not isinstance(self.trim, (int, float)) or not 0 <= self.trim < 0.5:
            raise StepError(f"seasonal bias trim {self.trim!r}: expected a number within [0, 0.5)")

    @property
    def lookback(self) -> int:
        return self.period * self.periods

    def apply(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        return pred + self.share * seasonal_biases(pred, target, np.arange(len(pred)), self.period, self.periods,
                                                   self.trim)

    def describe(self, freq: str | None = None) -> str:
        unit = "hour" if step_words(freq)[0] == "an hour" else "time of day"
        trimmed = f" (the {self.trim:.0%} highest and lowest days left out)" if self.trim else ""
        return f"plus {self.share:.2f} of its mean error at the same {unit} of the {self.periods} days before{trimmed}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "period": self.period, "periods": self.periods, "share": float(self.share),
                "trim": float(self.trim)}


@register
@dataclass(frozen=True)
class NonNegative:
    """No forecast below zero rentals."""

    kind: ClassVar[str] = "non_negative"
    lookback: ClassVar[int] = 0

    def apply(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        return np.maximum(pred, 0.0)

    def describe(self, freq: str | None = None) -> str:
        return "never below zero"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}


@register
@dataclass(frozen=True)
class ConformalIntervals:
    """Rolling conformal intervals around the final forecast; the forecast itself passes unchanged."""

    kind: ClassVar[str] = "conformal_intervals"
    intervals: Intervals

    def __post_init__(self) -> None:
        if not isinstance(self.intervals, Intervals):
            raise StepError(f"conformal intervals {self.intervals!r}: expected rnn_core.intervals.Intervals")

    @property
    def lookback(self) -> int:
        return self.intervals.window

    def apply(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        return pred

    def bands(self, pred: np.ndarray, target: np.ndarray, rows: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray]]:
        """{level: (lower [N, H], upper [N, H])} around ``pred[rows]`` ([S, H] of consecutive origins)."""
        if not self.intervals.window:
            return self.intervals.bands(np.asarray(pred, np.float64)[rows])
        return self.intervals.rolling_bands(pred, target, rows)

    def describe(self, freq: str | None = None) -> str:
        return f"intervals {', '.join(f'{a:.0%}' for a in self.intervals.levels)} ({self.intervals.describe(freq)})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.intervals.to_dict()}


def step_from_dict(d: Any) -> Step:
    """One stored step -> its dataclass; StepError (one line) for an unknown kind or a bad field."""
    if not isinstance(d, dict) or d.get("kind") not in STEPS:
        kind = d.get("kind") if isinstance(d, dict) else d
        raise StepError(f"post-processing step {kind!r}: expected one of {', '.join(STEPS)}")
    fields = {k: v for k, v in d.items() if k != "kind"}
    cls = STEPS[d["kind"]]
    try:
        if cls is ConformalIntervals:
            return ConformalIntervals(Intervals.from_dict(fields))
        if cls is ResidualCorrection and isinstance(fields.get("lags"), list):
            fields["lags"] = tuple(fields["lags"])
        return cls(**fields)
    except (TypeError, KeyError) as exc:
        raise StepError(f"post-processing step {d['kind']}: {exc}") from None
    except ValueError as exc:
        raise StepError(f"post-processing step {d['kind']}: {exc}") from None


def steps_from_list(items: Any) -> tuple[Step, ...]:
    """A file's stored chain -> its steps, in order; the intervals, if any, come last."""
    if not isinstance(items, list):
        raise StepError(f"post-processing steps {items!r}: expected a list")
    steps = tuple(step_from_dict(d) for d in items)
    if any(isinstance(s, ConformalIntervals) for s in steps[:-1]):
        raise StepError("post-processing steps: the conformal intervals must be the last step")
    return steps


def standard_steps(factor: float, loss: str, cfg: DataConfig | None = None, counts: bool = True) -> tuple[Step, ...]:
    """The chain every shipped forecaster gets in front of its intervals (the one place it is built).

    Hourly data: calibration refit on the two weeks before each hour, the same-hour bias of the 28 days before,
    the residual correction from the hour, day and week before, no forecast below zero. A user's series
    (``cfg``): the same windows and lags measured in its own seasons (rnn_core.series.chain_windows), the
    same-hour bias only where a step is under a day (a day's steps); a target that is not a count (``counts``
    False: it may be negative) gets neither the multiplicative calibration nor the floor at zero."""
    from rnn_core.series import chain_windows, seasons

    freq = cfg.dataset.freq if cfg is not None else "h"
    window, lags = chain_windows(freq)
    found = seasons(freq)
    # sub-daily: a day's steps
    bias: tuple[Step, ...] = (SeasonalBias(found[0], trim=SEASONAL_BIAS_TRIM),) if len(found) == 2 else ()
    if not counts:
        return (*bias, ResidualCorrection(window, lags))
    return (Calibration(factor, window, loss), *bias, ResidualCorrection(window, lags), NonNegative())


def describe_steps(items: list[dict[str, Any]] | tuple[Step, ...], freq: str | None = None) -> str:
    """One line for a chain (stored dicts or steps): what each step does, in order, in the series' own words."""
    steps = steps_from_list(list(items)) if items and isinstance(items[0], dict) else tuple(items)
    return "; ".join(s.describe(freq) for s in steps) or "nothing"
