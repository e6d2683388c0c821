"""Conformal prediction intervals per forecast step: split conformal from validation residuals, recalibrated
at each origin on the residuals of the weeks just before it.

For each step k of the horizon and each level a, the interval around a forecast p is
[g^-1(g(p) + q_lo), g^-1(g(p) + q_hi)] where r = g(target) - g(forecast) are calibration residuals of
step k, q_lo is their floor((n+1)(1-a)/2)-th smallest and q_hi their ceil((n+1)(1+a)/2)-th smallest
(the finite-sample ranks of split conformal prediction: under exchangeability each side misses at most
(1-a)/2 of the time). g is sqrt by default: the variance of a count grows with its level (Poisson-like),
and on sqrt counts the residuals of quiet and busy hours are alike. Bounds never go below 0 for a count.

Which residuals: demand is seasonal, so the validation months are not exchangeable with the months
a model forecasts. Residuals from September-October made intervals over-cover November-December (87.5% at
80%) and under-cover March-April (66%) (benchmarks/RESULTS.md). So an interval with ``window`` > 0 takes
its residuals, at each origin t, from the forecasts of the ``window`` origins before it whose targets are
known at t (origin t' with t' + k <= t for step k): rolling split conformal over the recent past, which
follows the season. The validation offsets stay the fallback where less history than that exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnn_core.data import known_runs

LEVELS = (0.8, 0.95)
SCALES = ("sqrt", "log1p", "count")
SCALE = "sqrt"
WINDOW = 28 * 24
"""Origins (hours) of recent residuals behind each interval: four weeks, every hour of every weekday four
times; enough for the 95% rank per step (39 residuals needed) and short enough to follow the season."""


def _g(x: np.ndarray, scale: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if scale == "sqrt":
        return np.sqrt(np.maximum(x, 0.0))
    return np.log1p(np.maximum(x, 0.0)) if scale == "log1p" else x


def _g_inv(z: np.ndarray, scale: str) -> np.ndarray:
    if scale == "sqrt":
        return np.square(np.maximum(z, 0.0))
    return np.maximum(np.expm1(z) if scale == "log1p" else z, 0.0)


def _ranks(n: int, level: float) -> tuple[int, int]:
    """The 1-based ranks of the lower and upper conformal offsets among n sorted residuals (0 or n+1:
    too few residuals for that side, an unbounded side)."""
    # the 1e-9 keeps (n+1)(1-0.8)/2 = 19.999999999999996 from losing a rank to rounding
    return math.floor((n + 1) * (1 - level) / 2 + 1e-9), math.ceil((n + 1) * (1 + level) / 2 - 1e-9)


@dataclass(frozen=True)
class Intervals:
    """Residual quantiles per level and step; plain lists, so they store in a weights-only model file."""

    scale: str
    levels: tuple[float, ...]
    lower: tuple[tuple[float, ...], ...]
    """[levels][H] offsets added on the scale's axis for the lower bound."""
    upper: tuple[tuple[float, ...], ...]
    n: int
    """Validation windows the residuals came from."""
    window: int = 0
    """Recalibrate at each origin on the residuals of this many origins before it (see the module); 0: the
    validation offsets everywhere."""

    def bands(self, pred: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray]]:
        """Forecasts [N, H] (the target's units) -> {level: (lower [N, H], upper [N, H])} from the validation offsets."""
        z = _g(np.asarray(pred, np.float64), self.scale)
        return {a: (_g_inv(z + np.asarray(lo)[None, : z.shape[1]], self.scale),
                    _g_inv(z + np.asarray(hi)[None, : z.shape[1]], self.scale))
                for a, lo, hi in zip(self.levels, self.lower, self.upper)}

    def rolling_bands(self, pred: np.ndarray, target: np.ndarray, rows: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray]]:
        """Intervals around the forecasts ``pred[rows]`` recalibrated on recent residuals.

        ``pred`` and ``target`` [M, H] belong to consecutive origins (target NaN where not yet known);
        ``rows`` [N] are the rows to bound. For row i and step k (1-based) the residuals are those of
        rows i - window .. i - k, whose targets are known at origin i; a row with fewer rows than
        ``window`` before it gets the validation offsets. Returns {level: (lower [N, H], upper [N, H])}.
        """
        pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
        rows = np.asarray(rows, np.int64)
        out = self.bands(pred[rows])
        w = self.window
        ok = rows >= w  # rows with a full window of history
        if w <= 0 or not ok.any():
            return out
        z = _g(pred, self.scale)  # [M, H]
        r = _g(target, self.scale) - z  # [M, H] residuals, NaN where the target is unknown
        q = rows[ok]
        for k in range(pred.shape[1]):  # step k + 1
            runs = known_runs(r, q, w, k + 1)  # [Nq, n] the residuals known at each origin
            n = runs.shape[1]
            for a in self.levels:
                k_lo, k_hi = _ranks(n, a)
                # np.partition puts the k-th smallest at index k-1 (NaN never occurs in these runs)
                kth = [i - 1 for i in (k_lo, k_hi) if 1 <= i <= n]
                part = np.partition(runs, kth, axis=1) if kth else runs
                lo_off = part[:, k_lo - 1] if k_lo >= 1 else np.full(len(q), -np.inf)
                hi_off = part[:, k_hi - 1] if k_hi <= n else np.full(len(q), np.inf)
                out[a][0][ok, k] = _g_inv(z[q, k] + lo_off, self.scale)
                out[a][1][ok, k] = _g_inv(z[q, k] + hi_off, self.scale)
        return out

    def describe(self, freq: str | None = None) -> str:
        from rnn_core.series import span_words

        how = (f"recalibrated at each origin on the residuals of the {span_words(self.window, freq)} before it"
               if self.window else f"from {self.n:,} validation windows")
        return f"conformal on the {self.scale} scale, {how}"

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "levels": list(self.levels), "lower": [list(r) for r in self.lower],
                "upper": [list(r) for r in self.upper], "n": self.n, "window": self.window}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intervals:
        missing = [k for k in ("scale", "levels", "lower", "upper", "n", "window") if k not in d]
        if missing:
            raise ValueError(f"interval table lacks the field(s) {', '.join(missing)}")
        if d.get("scale") not in SCALES:
            raise ValueError(f"interval scale {d.get('scale')!r}: expected one of {', '.join(SCALES)}")
        levels = tuple(float(a) for a in d["levels"])
        lower = tuple(tuple(float(v) for v in r) for r in d["lower"])
        upper = tuple(tuple(float(v) for v in r) for r in d["upper"])
        if not (len(levels) == len(lower) == len(upper)) or len({len(r) for r in lower + upper}) > 1:
            raise ValueError("interval tables do not match their levels")
        return cls(d["scale"], levels, lower, upper, int(d["n"]), int(d["window"]))


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(a) for a in levels)
    if not out or not all(0.0 < a < 1.0 for a in out):
        raise ValueError(f"interval levels must be between 0 and 1 (e.g. 0.8,0.95), got {list(levels)}")
    return out


def _quantiles(r: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Residuals [N, H] -> the conformal lower and upper offsets [H] at ``level`` (inf where n is too small)."""
    n = r.shape[0]
    s = np.sort(r, axis=0)  # [N, H]
    k_lo, k_hi = _ranks(n, level)
    lo = s[k_lo - 1] if k_lo >= 1 else np.full(r.shape[1], -np.inf)
    hi = s[k_hi - 1] if k_hi <= n else np.full(r.shape[1], np.inf)
    return lo, hi


def conformal(pred: np.ndarray, target: np.ndarray, levels: Sequence[float] = LEVELS, scale: str = SCALE,
              window: int = WINDOW) -> Intervals:
    """Intervals from validation forecasts and targets [N, H] (the target's units): their offsets, on ``scale``, and
    the ``window`` of recent origins that recalibrates them where a forecast has that much history."""
    levels = check_levels(levels)
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.ndim != 2 or not len(pred):
        raise ValueError(f"forecasts {pred.shape} and targets {target.shape} must be the same [N, H] shape")
    if scale not in SCALES:
        raise ValueError(f"interval scale {scale!r}: expected one of {', '.join(SCALES)}")
    if window < 0:
        raise ValueError(f"interval window {window}: expected 0 (validation offsets only) or a number of hours")
    r = _g(target, scale) - _g(pred, scale)  # [N, H]
    qs = [_quantiles(r, a) for a in levels]
    return Intervals(scale, levels, tuple(tuple(q[0].tolist()) for q in qs), tuple(tuple(q[1].tolist()) for q in qs),
                     len(pred), window)


def coverage(lower: np.ndarray, upper: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """The share of targets inside [lower, upper] and the mean width (the target's units), over all [N, H]."""
    t = np.asarray(target, np.float64)
    return float(np.mean((t >= lower) & (t <= upper))), float(np.mean(upper - lower))
