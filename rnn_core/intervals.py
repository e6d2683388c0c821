"""Split-conformal prediction intervals per forecast step, from validation residuals.

For each step k of the horizon and each level a, the interval around a forecast p is
[g^-1(g(p) + q_lo), g^-1(g(p) + q_hi)] where r = g(target) - g(forecast) are the validation residuals of
step k, q_lo is their floor((n+1)(1-a)/2)-th smallest and q_hi their ceil((n+1)(1+a)/2)-th smallest
(the finite-sample ranks of split conformal prediction: under exchangeability each side misses at most
(1-a)/2 of the time). g is the identity ("count") or log1p ("log1p"): counts vary with their level, so
log residuals usually give narrower intervals at the same coverage; :func:`conformal` keeps the scale
whose intervals are narrower on the validation hours. Bounds never go below 0 bikes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LEVELS = (0.8, 0.95)
SCALES = ("log1p", "count")


def _g(x: np.ndarray, scale: str) -> np.ndarray:
    return np.log1p(np.maximum(x, 0.0)) if scale == "log1p" else np.asarray(x, np.float64)


def _g_inv(z: np.ndarray, scale: str) -> np.ndarray:
    return np.maximum(np.expm1(z) if scale == "log1p" else z, 0.0)


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

    def bands(self, pred: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray]]:
        """Forecasts [N, H] (bikes/hour) -> {level: (lower [N, H], upper [N, H])}."""
        z = _g(np.asarray(pred, np.float64), self.scale)
        return {a: (_g_inv(z + np.asarray(lo)[None, : z.shape[1]], self.scale),
                    _g_inv(z + np.asarray(hi)[None, : z.shape[1]], self.scale))
                for a, lo, hi in zip(self.levels, self.lower, self.upper)}

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "levels": list(self.levels), "lower": [list(r) for r in self.lower],
                "upper": [list(r) for r in self.upper], "n": self.n}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intervals:
        if d.get("scale") not in SCALES:
            raise ValueError(f"interval scale {d.get('scale')!r}: expected one of {', '.join(SCALES)}")
        levels = tuple(float(a) for a in d["levels"])
        lower = tuple(tuple(float(v) for v in r) for r in d["lower"])
        upper = tuple(tuple(float(v) for v in r) for r in d["upper"])
        if not (len(levels) == len(lower) == len(upper)) or len({len(r) for r in lower + upper}) > 1:
            raise ValueError("interval tables do not match their levels")
        return cls(d["scale"], levels, lower, upper, int(d["n"]))


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(a) for a in levels)
    if not out or not all(0.0 < a < 1.0 for a in out):
        raise ValueError(f"interval levels must be between 0 and 1 (e.g. 0.8,0.95), got {list(levels)}")
    return out


def _quantiles(r: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Residuals [N, H] -> the conformal lower and upper offsets [H] at ``level`` (inf where n is too small)."""
    n = r.shape[0]
    s = np.sort(r, axis=0)  # [N, H]
    # 1-based ranks; the 1e-9 keeps (n+1)(1-0.8)/2 = 19.999999999999996 from losing a rank to rounding
    k_lo = math.floor((n + 1) * (1 - level) / 2 + 1e-9)
    k_hi = math.ceil((n + 1) * (1 + level) / 2 - 1e-9)
    lo = s[k_lo - 1] if k_lo >= 1 else np.full(r.shape[1], -np.inf)
    hi = s[k_hi - 1] if k_hi <= n else np.full(r.shape[1], np.inf)
    return lo, hi


def conformal(pred: np.ndarray, target: np.ndarray, levels: Sequence[float] = LEVELS, scale: str | None = None) -> Intervals:
    """Intervals from validation forecasts and targets [N, H] (bikes/hour). ``scale`` None: the one of SCALES
    whose intervals are narrower on these hours (mean width over levels and steps)."""
    levels = check_levels(levels)
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.ndim != 2 or not len(pred):
        raise ValueError(f"forecasts {pred.shape} and targets {target.shape} must be the same [N, H] shape")
    best = None
    for sc in ([scale] if scale else SCALES):
        if sc not in SCALES:
            raise ValueError(f"interval scale {sc!r}: expected one of {', '.join(SCALES)}")
        r = _g(target, sc) - _g(pred, sc)  # [N, H]
        qs = [_quantiles(r, a) for a in levels]
        iv = Intervals(sc, levels, tuple(tuple(q[0].tolist()) for q in qs), tuple(tuple(q[1].tolist()) for q in qs), len(pred))
        width = np.mean([np.mean(hi - lo) for lo, hi in iv.bands(pred).values()])
        if best is None or width < best[0]:
            best = (width, iv)
    assert best is not None
    return best[1]


def coverage(lower: np.ndarray, upper: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """The share of targets inside [lower, upper] and the mean width (bikes/hour), over all [N, H]."""
    t = np.asarray(target, np.float64)
    return float(np.mean((t >= lower) & (t <= upper))), float(np.mean(upper - lower))
