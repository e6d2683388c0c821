"""Figures: forecast vs actual per split, the test period with its error, and a search's history.

matplotlib with the Agg backend (no display needed). Each function writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


@dataclass
class Series:
    """Forecasts of one split: first-horizon-step values, in the target's units."""

    name: str
    times: np.ndarray
    prediction: np.ndarray
    target: np.ndarray
    bands: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """level -> (lower, upper) around ``prediction`` (drawn as shaded bands)."""


@dataclass
class DayAhead:
    """One origin's forecast of the next H steps, with what happened and the interval bands."""

    origin: np.datetime64
    times: np.ndarray
    """[H] target times."""
    prediction: np.ndarray
    target: np.ndarray
    bands: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class TrialHistory:
    """Validation MAE per epoch of one trial."""

    trial_id: str
    epochs: Sequence[int]
    val_mae: Sequence[float]
    stopped_early_by_scheduler: bool


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bands(ax: plt.Axes, times: np.ndarray, bands: dict[float, tuple[np.ndarray, np.ndarray]]) -> None:
    """Interval bands, the widest palest, under the lines."""
    for a in sorted(bands, reverse=True):
        lo, hi = bands[a]
        # the 80 % band darker than the 95 % one, both visible under a dense line
        ax.fill_between(times, lo, hi, color="tab:purple", alpha=0.18 + 0.5 * (1 - a) / 0.25, lw=0,
                        label=f"{a:.0%} interval", step=None)


def _forecast_axes(ax: plt.Axes, s: Series, title: str, lw: float, unit: str = "") -> None:
    """Target and prediction of one series on one axis, with its title, y label and legend."""
    _bands(ax, s.times, s.bands)
    ax.plot(s.times, s.target, lw=lw, label="target")
    ax.plot(s.times, s.prediction, lw=lw, label="prediction", alpha=0.85)
    ax.set_title(title)
    ax.set_ylabel(unit)
    # outside the data, above the axes: over the first days it would hide what it explains
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=4, fontsize=8, frameon=False)


#: A panel longer than this (steps) shows only its last LAST_HOURS: 14,592 training hours in one panel are a solid block.
LONGEST_PANEL = 62 * 24
LAST_HOURS = 28 * 24


def plot_splits(series: Sequence[Series], title: str, path: str | Path, unit: str = "") -> Path:
    """Stacked panels, one per split: prediction against target (the lecture's predict_all figure). A split
    longer than LONGEST_PANEL steps (the training split) shows its last LAST_HOURS, so that steps can be told apart."""
    fig, axs = plt.subplots(len(series), 1, figsize=(11, 3.2 * len(series)), squeeze=False)
    for ax, s in zip(axs[:, 0], series):
        n = len(s.target)
        if n > LONGEST_PANEL:
            s = Series(s.name, s.times[-LAST_HOURS:], s.prediction[-LAST_HOURS:], s.target[-LAST_HOURS:],
                       {a: (lo[-LAST_HOURS:], hi[-LAST_HOURS:]) for a, (lo, hi) in s.bands.items()})
            label = f"{s.name}: last {LAST_HOURS:,} of {n:,} steps"
        else:
            label = f"{s.name} ({n:,} steps)"
        _forecast_axes(ax, s, label, lw=0.6, unit=unit)
        ax.set_xlabel("time")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_test(s: Series, title: str, path: str | Path, unit: str = "") -> Path:
    """The test period at full resolution, with the absolute error below."""
    fig, (a, b) = plt.subplots(2, 1, figsize=(14, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    _forecast_axes(a, s, f"{s.name}: forecast vs actual", lw=0.8, unit=unit)
    err = np.abs(s.prediction - s.target)
    b.fill_between(s.times, err, step="mid", color="tab:red", alpha=0.6, label=f"|error| (MAE {err.mean():.1f})")
    b.set_ylabel(f"|error|, {unit}")
    b.set_xlabel("time")
    b.legend(loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


#: The closer view: the first this many points of the test period (two weeks of hourly data).
CLOSER = 14 * 24


def plot_closer(s: Series, title: str, path: str | Path, unit: str = "", points: int = CLOSER) -> Path:
    """The first ``points`` steps of a split, where each step can be told apart and the bands are seen."""
    n = min(points, len(s.target))
    near = Series(s.name, s.times[:n], s.prediction[:n], s.target[:n], {a: (lo[:n], hi[:n]) for a, (lo, hi) in s.bands.items()})
    fig, ax = plt.subplots(figsize=(14, 5))
    _forecast_axes(ax, near, f"{s.name}: its first {n:,} steps", lw=1.2, unit=unit)
    ax.set_xlabel("time")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def origin_rows(split, origins: Sequence[str] | None, origin_times: np.ndarray) -> list[int]:  # noqa: ANN001
    """Rows of a split for --origins (timestamps of last input steps); default: four evenly spread origins, each
    the last step before a midnight where there are such, so that the forecast covers the next calendar day."""
    import pandas as pd

    from rnn_core.series import DataError

    first = split.target_time[:, 0]  # [N] the step after each origin
    if origins:
        rows = []
        for text in origins:
            try:
                at = np.datetime64(pd.Timestamp(text))
            except ValueError:
                raise DataError(f"--origins: {text!r} is not a timestamp (e.g. 2024-11-14 23:00)") from None
            hits = np.nonzero(origin_times == at)[0]  # origin_times [N]: each window's last input step
            if not len(hits):
                raise DataError(f"--origins: {text} is not an origin of this split ({str(origin_times[0])[:16]} "
                                f".. {str(origin_times[-1])[:16]})")
            rows.append(int(hits[0]))
        return rows
    midnight = np.nonzero(pd.DatetimeIndex(first).hour == 0)[0]
    candidates = midnight if len(midnight) else np.arange(len(first))
    return [int(candidates[i]) for i in np.linspace(0, len(candidates) - 1, min(4, len(candidates))).round().astype(int)]


def plot_history(trials: Sequence[TrialHistory], best_id: str, title: str, path: str | Path,
                 unit: str = "") -> Path:
    """Validation MAE per epoch for every trial; trials stopped by the scheduler marked; the best highlighted."""
    fig, ax = plt.subplots(figsize=(10, 5.5))
    marked = False
    for t in trials:
        best = t.trial_id == best_id
        ax.plot(t.epochs, t.val_mae, marker="o", ms=3, lw=2.5 if best else 1, alpha=1 if best else 0.6,
                color="tab:red" if best else None, label=f"best trial {t.trial_id}" if best else None, zorder=3 if best else 2)
        if t.stopped_early_by_scheduler and len(t.epochs):
            ax.scatter([t.epochs[-1]], [t.val_mae[-1]], marker="x", s=70, color="black", zorder=4,
                       label=None if marked else "stopped by ASHA")
            marked = True
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation MAE ({unit})")
    finite = [v for t in trials for v in t.val_mae if np.isfinite(v) and v < 1e5]
    if finite:
        ax.set_ylim(0.9 * min(finite), min(max(finite), 4 * min(finite)) * 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def plot_steps(steps: dict[str, Sequence[float]], title: str, path: str | Path, what: str = "MAE",
               unit: str = "", ahead: str = "steps") -> Path:
    """Error against forecast step (``ahead``) for the model and each baseline."""
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, values in steps.items():
        k = np.arange(1, len(values) + 1)
        ax.plot(k, values, marker="o", ms=3, lw=2.5 if name == "model" else 1.2, label=name,
                color="tab:red" if name == "model" else None, zorder=3 if name == "model" else 2)
    ax.set_xlabel(f"{ahead} ahead")
    ax.set_ylabel(f"{what}, {unit}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def plot_day_ahead(days: Sequence[DayAhead], title: str, path: str | Path, unit: str = "") -> Path:
    """One panel per origin: the forecast of the next H steps with its bands, against what happened."""
    fig, axs = plt.subplots(len(days), 1, figsize=(10, 3.0 * len(days)), squeeze=False)
    for ax, d in zip(axs[:, 0], days):
        _bands(ax, d.times, d.bands)
        ax.plot(d.times, d.target, marker=".", lw=1.2, label="target")
        ax.plot(d.times, d.prediction, marker=".", lw=1.2, label="prediction")
        ax.set_title(f"from origin {str(d.origin)[:16]} (last input step)")
        ax.set_ylabel(unit)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
