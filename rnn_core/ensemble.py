"""Weighted ensembles of model bundles, chosen on validation forecasts: candidates in, the shipped forecaster
(rnn_core.forecaster: the weighted mean and the standard post-processing chain) and its figures out.

Selection is greedy forward selection with replacement (Caruana et al., "Ensemble selection from libraries
of models", ICML 2004; the final step of AutoGluon): start empty, and ``size`` times add the member whose
addition gives the lowest validation error of the running mean (squared error by default:
rnn_core.config.ENSEMBLE_SELECTION). A member picked k times weighs k/size.
It works on forecasts in the target's units, so members with different windows, target transforms, cells or
lags combine; each member turns the hourly frame into its own inputs with its own stored config.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rnn_core.forecaster import PostProcessed, WeightedMean, fit_chain, member_from_bundle, split_targets

#: What the greedy ensemble selection minimises on validation forecasts. Squared error: the weighted mean is
#: the combination squared error rewards, and it picks members whose errors cancel. Against picks by absolute
#: error, on eight recorded searches over three test periods of the built-in data set (benchmarks/ensemble_variants.py) it gave a
#: lower test RMSE on seven, a lower MAE on four and within 0.07 on the rest, and on the day-ahead search a 24-step
#: MAE of 35.61 vs 36.75. The calibration factor still follows the search metric.
ENSEMBLE_SELECTION = "rmse"


SELECTION_METRICS = ("mae", "rmse")


# ------------------------------------------------------------------------------------------ selection


def _score(pred: np.ndarray, target: np.ndarray, metric: str) -> np.ndarray:
    """Errors of candidate forecasts pred [M, N, H] against target [N, H] -> [M]."""
    err = pred - target[None]
    if metric == "mae":
        return np.abs(err).mean(axis=(1, 2))
    return np.sqrt((err**2).mean(axis=(1, 2)))


def select(forecasts: np.ndarray, target: np.ndarray, size: int, metric: str = "mae") -> tuple[np.ndarray, list[float]]:
    """Greedy forward selection with replacement.

    forecasts: [M, N, H] each candidate's validation forecasts in the target's units; target: [N, H].
    Returns the weights [M] of the best prefix of the ``size`` steps (picks / steps kept, summing to 1) and
    the validation error after each step. Ties go to the lower index, so candidates sorted best first make
    the first pick the best single model, and the ensemble is never worse on validation than that model.
    """
    if metric not in SELECTION_METRICS:
        raise ValueError(f"selection metric {metric!r}: expected one of {', '.join(SELECTION_METRICS)}")
    if size < 1:
        raise ValueError(f"ensemble size must be at least 1, got {size}")
    forecasts = np.asarray(forecasts, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if forecasts.ndim != 3 or forecasts.shape[1:] != target.shape:
        raise ValueError(f"forecasts {forecasts.shape} do not match the targets {target.shape} ([M, N, H] vs [N, H])")
    picks = np.zeros((size, len(forecasts)), dtype=np.int64)  # [step, M]: picks after each step
    running = np.zeros(target.shape)  # [N, H] sum of the picked forecasts
    trace = []
    for step in range(1, size + 1):
        errors = _score((running[None] + forecasts) / step, target, metric)  # [M]: the mean with each candidate added
        best = int(np.argmin(errors))
        if step > 1:
            picks[step - 1] = picks[step - 2]
        picks[step - 1, best] += 1
        running += forecasts[best]
        trace.append(float(errors[best]))
    # The best prefix (Caruana et al.): picks beyond the lowest validation error are not kept.
    keep = int(np.argmin(trace))
    return picks[keep] / (keep + 1), trace


# ------------------------------------------------------------------------------------------ building


@dataclass(frozen=True)
class EnsembleChoice:
    """An ensemble chosen from candidates: the forecaster and its figures, each scored on the validation hours."""

    forecaster: PostProcessed
    members: list[dict[str, Any]]
    """Chosen candidates, heaviest first: name, weight, val_mae, val_rmse (each alone, raw)."""
    val_mae: float
    """The shipped forecaster's own forecast (the whole chain) on the validation hours."""
    val_rmse: float
    mean_val_mae: float
    """The members' weighted mean alone."""
    mean_val_rmse: float
    best_val_mae: float
    """The best candidate alone (the first: candidates come best first)."""
    best_val_rmse: float


def choose_ensemble(bundles: dict[str, dict[str, Any]], frame: pd.DataFrame, size: int, selection: str = "rmse",
                    loss: str = "mae", meta: dict[str, Any] | None = None) -> EnsembleChoice:
    """Candidates (name -> model bundle, best first) -> the ensemble that ships: greedy selection (``size``
    picks, minimising ``selection``) on their validation forecasts, the weighted mean post-processed with the
    standard chain (calibration loss ``loss``), and its figures."""
    if not bundles:
        raise ValueError("an ensemble needs at least one candidate")
    models = {n: member_from_bundle(b, n) for n, b in bundles.items()}
    return choose_from_forecasts(models, validation_forecasts(models, frame), frame, size, selection, loss, meta)


def validation_targets(models: dict[str, Any], frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The validation origins [N] every candidate can forecast, and their targets [N, H]: those of the longest
    input window among them (as an ensemble's own data config has it): in a panel of short series a trial with
    a longer window has fewer validation windows, and all are scored on the same targets."""
    members = list(models.values())
    cfg = dataclasses.replace(members[0].data_config, sequence_size=max(m.data_config.sequence_size for m in members))
    return split_targets(frame, cfg, "val")


def validation_forecasts(models: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """Each model's forecasts of the validation targets every candidate can forecast (validation_targets): [M, N, H]."""
    origins, _ = validation_targets(models, frame)
    return np.stack([m.forecast(frame, origins) for m in models.values()])


def competing(members: list[Any], F: np.ndarray, target: np.ndarray) -> list[int]:
    """The candidate policy, in one place: the trials always; the naive forecasts (rnn_core.forecaster.naive_bundles,
    after the trials) only where the best of them is at least as good on validation MAE as the median trial: on a
    series a naive forecast already fits, the selection may weigh it (the shipped model is then never worse on
    validation than it), and where every naive forecast is far behind the trials it cannot trade the chain's
    accuracy for a little diversity. Returns the rows of ``F`` [M, N, H] that compete."""
    from rnn_core.forecaster import SeasonalNaive
    from rnn_core.metrics import mae

    naive = [i for i, m in enumerate(members) if isinstance(m, SeasonalNaive)]
    trials = [i for i in range(len(members)) if i not in naive]
    if not naive or not trials:
        return list(range(len(members)))
    best_naive = min(mae(F[i], target) for i in naive)
    median_trial = float(np.median([mae(F[i], target) for i in trials]))
    return list(range(len(members))) if best_naive <= median_trial else trials


def choose_from_forecasts(models: dict[str, Any], F: np.ndarray, frame: pd.DataFrame, size: int,
                          selection: str = "rmse", loss: str = "mae", meta: dict[str, Any] | None = None) -> EnsembleChoice:
    """:func:`choose_ensemble` from forecasts the caller has: ``models`` (name -> forecaster, best first) and
    their validation forecasts F [M, N, H] in the same order (a search that chooses its ensemble again as
    trials finish forecasts each trial once: search.knee)."""
    from rnn_core.metrics import mae, rmse

    names, members = list(models), list(models.values())
    origins, target = validation_targets(models, frame)
    keep = competing(members, F, target)
    names, members, F = [names[i] for i in keep], [members[i] for i in keep], F[keep]
    weights, _ = select(F, target, size, selection)
    chosen = [int(i) for i in np.argsort(-weights, kind="stable") if weights[i] > 0]
    base = WeightedMean(tuple(members[i] for i in chosen), tuple(names[i] for i in chosen),
                        weights[chosen] / weights[chosen].sum())
    mean = np.tensordot(base.weights, F[chosen], axes=1)  # [N, H]: the base's validation forecasts, from F
    shipped, pred, _ = fit_chain(base, frame, loss, dict(meta or {}, size=size, selection=selection, loss=loss), base_val=mean,
                                 origins=origins)
    picked = [{"trial_id": names[i], "weight": float(weights[i]), "val_mae": mae(F[i], target),
               "val_rmse": rmse(F[i], target)} for i in chosen]
    return EnsembleChoice(shipped, picked, mae(pred, target), rmse(pred, target), mae(mean, target), rmse(mean, target),
                          mae(F[0], target), rmse(F[0], target))
