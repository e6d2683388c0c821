"""Per-series scaling for a panel: each series' target and history on its own scale.

One network learns every series of a panel. With one scale for all, a series of 20 and one of 130,000 (the US
employment panel of the suite) share a standardisation whose unit is the big series' spread: the small series'
history is a flat line to the network and their errors are noise in its loss. Here each series is standardised
by the mean and standard deviation of its own training steps, on the transform's scale, before the global
statistics apply (what GluonTS' mean scaler and mlforecast's LocalStandardScaler do for the same reason).

The statistics are fitted on the training steps only and stored with the model (TargetScaler.series and
TargetScaler.history), so a model file forecasts any of its series; a series it never trained on (or one with
no training step) is scaled by the statistics of all training steps together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["SeriesScales", "fit_series_scales"]


@dataclass(frozen=True)
class SeriesScales:
    """Mean and standard deviation of each series (``names``) on one scale, and of all together (``pooled``)."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pooled: tuple[float, float] = (0.0, 1.0)

    def _stats(self, series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N] series names (str, as rnn_core.data.origin_series gives them) -> ([N] means, [N] stds); a name not
        stored gets the pooled statistics."""
        at = pd.Index(self.names).get_indexer(series)  # [N], -1 unknown
        mean = np.append(np.asarray(self.mean, np.float64), self.pooled[0])[at]  # index -1: the pooled entry
        std = np.append(np.asarray(self.std, np.float64), self.pooled[1])[at]
        return mean, std

    def _column(self, v: np.ndarray | torch.Tensor, stats: np.ndarray) -> Any:
        """[N] statistics shaped to broadcast over ``v`` ([N] or [N, H]) and of its kind."""
        s = stats.reshape(-1, *([1] * (v.ndim - 1)))
        return torch.from_numpy(s).to(v) if isinstance(v, torch.Tensor) else s

    def normalize(self, v: np.ndarray | torch.Tensor, series: np.ndarray) -> Any:
        """Values [N] or [N, H] on the transform's scale, row n of series ``series[n]`` -> standardised."""
        mean, std = self._stats(series)
        return (v - self._column(v, mean)) / self._column(v, std)

    def denormalize(self, z: np.ndarray | torch.Tensor, series: np.ndarray) -> Any:
        """The inverse of :meth:`normalize`."""
        mean, std = self._stats(series)
        return z * self._column(z, std) + self._column(z, mean)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": list(self.mean), "std": list(self.std), "pooled": list(self.pooled)}

    @classmethod
    def from_dict(cls, d: Any, finite: Any) -> SeriesScales:
        """A stored one, every field checked with ``finite`` (rnn_core.data._finite). Raises ValueError."""
        keys = {"names", "mean", "std", "pooled"}
        if not isinstance(d, dict) or set(d) != keys:
            raise ValueError(f"series scales: expected the fields {', '.join(sorted(keys))}")
        names = d["names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("series scales: names must be a list of series names")
        if not all(isinstance(d[k], list) and len(d[k]) == len(names) for k in ("mean", "std")):
            raise ValueError(f"series scales: mean and std must hold {len(names)} numbers, one per series")
        if not isinstance(d["pooled"], list) or len(d["pooled"]) != 2:
            raise ValueError("series scales: pooled must be [mean, std]")
        mean = tuple(finite(f"mean of series {n}", v) for n, v in zip(names, d["mean"]))
        std = tuple(finite(f"std of series {n}", v) for n, v in zip(names, d["std"]))
        pooled = (finite("pooled mean", d["pooled"][0]), finite("pooled std", d["pooled"][1]))
        if min((*std, pooled[1])) <= 0:
            raise ValueError("series scales: every std must be above 0")
        return cls(tuple(names), mean, std, pooled)


def _spread(v: np.ndarray, mean: float) -> float:
    """A standard deviation to divide by: a series flat over its training steps keeps its level's size (or 1)."""
    std = float(v.std()) if len(v) else 0.0
    return std if std > 1e-9 * max(1.0, abs(mean)) else max(1.0, abs(mean))


def fit_series_scales(values: np.ndarray, series: np.ndarray, rows: np.ndarray) -> SeriesScales:
    """Mean and std of ``values`` [T] per series (``series`` [T] names) over the training ``rows`` (a bool mask
    [T] or indices), NaN left out; a series without a known training step is left out (it gets the pooled ones)."""
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    mask &= np.isfinite(values)
    known = pd.Series(values[mask]).groupby(np.asarray(series)[mask], sort=False)
    names, mean, std = [], [], []
    for name, v in known:
        m = float(v.mean())
        names.append(str(name))
        mean.append(m)
        std.append(_spread(v.to_numpy(), m))
    pooled_mean = float(values[mask].mean()) if mask.any() else 0.0
    return SeriesScales(tuple(names), tuple(mean), tuple(std), (pooled_mean, _spread(values[mask], pooled_mean)))
