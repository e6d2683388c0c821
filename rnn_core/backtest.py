"""Rolling backtests (:func:`cross_validation`), in the spirit of NeuralForecast's: the last K windows of each
series, each a forecast of the H steps after a cutoff, the cutoffs S steps apart; the errors per window and over
all of them, for the model and for the naive baselines on exactly the same targets.

Without ``refit`` the model is the one given, so a window that falls in the months it trained or was validated
on scores it in sample (the result says which windows do). With ``refit`` each of its networks is retrained for
every window on everything before that window's cutoff, with its own settings, seed and number of epochs
(rnn_core.refit): an honest out-of-sample score, at the cost of one training per window and member.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnn_core.config import DataConfig
from rnn_core.data import DataError, Split, make_targets, valid_origins
from rnn_core.features import segments
from rnn_core.forecaster import PostProcessed, load_model
from rnn_core.metrics import baseline_forecasts, field_scores, mase_scales, mase_season, model_frame, series_keys
from rnn_core.series import baselines_for, step_words

log = logging.getLogger(__name__)


@dataclass
class Backtest:
    """A rolling backtest's forecasts and scores (every error in the target's units; sMAPE and WAPE in percent)."""

    forecasts: pd.DataFrame
    """One row per target step: [series,] window, cutoff, time, target, the model's and each baseline's forecast."""
    windows: pd.DataFrame
    """One row per window (and series): its cutoff and each forecaster's MAE, RMSE, MASE, sMAPE and WAPE."""
    overall: dict[str, dict[str, float]]
    """'model' and each baseline -> its scores over every window's targets."""
    in_sample: list[int]
    """The windows whose targets the model trained or was validated on (none with ``refit``)."""
    refit: bool = False


def cutoffs(frame: pd.DataFrame, model: PostProcessed, windows: int, step: int | None = None) -> np.ndarray:
    """[S * K] the cutoff (last input step) of each of the last ``windows`` windows of every series, ``step``
    steps apart (default: the horizon, so that the windows' targets tile the end of each series); where a gap
    leaves a window without all its targets, its cutoff moves back to the nearest complete one."""
    cfg = model.data_config
    if not (isinstance(windows, (int, np.integer)) and windows >= 1):
        raise DataError(f"windows must be a whole number of at least 1, got {windows!r}")
    step = cfg.horizon if step is None else step
    if not (isinstance(step, (int, np.integer)) and step >= 1):
        raise DataError(f"step must be a whole number of steps of at least 1, got {step!r}")
    valid = valid_origins(frame, cfg)
    out = []
    for a, b in segments(frame, cfg.dataset):
        mine = valid[(valid >= a + model.first_origin) & (valid < b)]
        if not len(mine):
            continue
        want, at = [], mine[-1]
        for _ in range(windows):  # back from the last complete window; a gap moves a cutoff back to a full window
            k = np.searchsorted(mine, at, side="right") - 1
            if k < 0:
                _, steps = step_words(cfg.dataset.freq)
                raise DataError(f"{windows} windows {step} {steps} apart reach back before the first complete window of "
                                f"the series starting {pd.Timestamp(frame.index[a])} (its inputs and known targets): "
                                "ask for fewer windows or a smaller step")
            want.append(mine[k])
            at = mine[k] - step
        out.append(np.array(want[::-1]))  # [K] oldest first
    if not out:
        raise DataError("no series has a complete window to backtest")
    return np.concatenate(out)


def _split_of(frame: pd.DataFrame, cfg: DataConfig, origins: np.ndarray) -> Split:
    """The windows' targets as a Split (no inputs: only the baselines and scores read it)."""
    y = make_targets(frame[cfg.dataset.target].to_numpy(np.float64), origins, cfg.horizon)  # [N, H]
    return Split(X=torch.empty(0), y=torch.empty(0), y_raw=torch.from_numpy(y.astype(np.float32)), origin=origins,
                 target_time=make_targets(frame.index.to_numpy(), origins, cfg.horizon))


def cross_validation(model: Any, data: Any = None, windows: int = 3, step: int | None = None, refit: bool = False,
                     jobs: int | None = None) -> Backtest:
    """A rolling backtest of a model (a file, a :class:`rnn_core.api.Model` or a forecaster) on ``data`` (a file,
    a data frame, or None: the file it was trained on): the last ``windows`` windows of each series, cutoffs
    ``step`` steps apart (default: the horizon), each window's forecast beside the naive baselines'.
    ``refit``: retrain its networks before each window on everything before that window's cutoff."""
    from rnn_core.refit import refit_forecaster

    forecaster = load_model(model) if isinstance(model, str) or hasattr(model, "__fspath__") else model
    forecaster = getattr(forecaster, "forecaster", forecaster)  # a rnn_core.api.Model: its forecaster
    frame = model_frame(forecaster, data)[0]
    cfg = forecaster.data_config
    cuts = cutoffs(frame, forecaster, windows, step).reshape(-1, windows)  # [S, K]
    pred = np.empty((cuts.size, cfg.horizon))  # [S * K, H] in the order of cuts.T.ravel(): window by window
    for i in range(windows):
        at = cuts[:, i]  # [S] this window's cutoff in each series
        if refit:
            log.info("window %d of %d: refitting on the steps before %s", i + 1, windows, pd.Timestamp(frame.index[at.min()]))
        fc = refit_forecaster(forecaster, frame, jobs, until=at) if refit else forecaster
        pred[i * len(at) : (i + 1) * len(at)] = fc.forecast(frame, at)
    origins = cuts.T.ravel()  # [K * S] window-major, the order of pred
    return _scored(frame, forecaster, origins, pred, np.repeat(np.arange(windows), cuts.shape[0]), refit)


def score(frame: pd.DataFrame, cfg: DataConfig, origins: np.ndarray, preds: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Field scores (MAE, RMSE, MASE, sMAPE, WAPE) of [N, H] forecasts from ``origins`` [N] of a frame, and of the
    naive baselines on the same targets: forecaster name -> scores (the benchmarks' peers are scored this way)."""
    _, target, keys, scales, preds = _scoring(frame, cfg, origins, preds)
    return {n: field_scores(p, target, keys, scales) for n, p in preds.items()}


def _scoring(frame: pd.DataFrame, cfg: DataConfig, origins: np.ndarray, preds: dict[str, np.ndarray],
             ) -> tuple[Split, np.ndarray, np.ndarray, dict[int, float], dict[str, np.ndarray]]:
    """What scoring forecasts from ``origins`` needs: (their targets as a Split, the targets [N, H], the series of
    each window [N], MASE's scale of each series, ``preds`` with every naive baseline's forecasts added)."""
    split, values, starts = _split_of(frame, cfg, origins), frame[cfg.dataset.target].to_numpy(np.float64), _starts(frame, cfg)
    keys, scales = series_keys(split, starts), mase_scales(values, split, starts, mase_season(cfg.dataset.freq))
    naive = baseline_forecasts(values, split, baselines_for(cfg), starts)
    return split, split.y_raw.numpy().astype(np.float64), keys, scales, {**preds, **naive}


def _scored(frame: pd.DataFrame, model: PostProcessed, origins: np.ndarray, pred: np.ndarray, window: np.ndarray,
            refit: bool) -> Backtest:
    """The forecasts beside the baselines', scored per window (and series) and overall."""
    cfg, ds = model.data_config, model.data_config.dataset
    split, target, keys, scales, preds = _scoring(frame, cfg, origins, {"model": pred})
    overall = {n: field_scores(p, target, keys, scales) for n, p in preds.items()}
    names = frame[ds.series].to_numpy() if ds.series else None
    rows = []
    for w in np.unique(window):
        for k in np.unique(keys):
            m = (window == w) & (keys == k)
            head = {**({ds.series: names[k]} if ds.series else {}), "window": int(w) + 1,
                    "cutoff": pd.Timestamp(frame.index[origins[m][0]])}
            rows.append({**head, **{f"{n}_{s}": v for n, p in preds.items()
                                    for s, v in field_scores(p[m], target[m], keys[m], {int(k): scales[int(k)]}).items()}})
    return Backtest(forecasts=_long(frame, cfg, origins, window, split, preds), windows=pd.DataFrame(rows),
                    overall=overall, in_sample=[] if refit else _in_sample(frame, model, origins, window), refit=refit)


def _long(frame: pd.DataFrame, cfg: DataConfig, origins: np.ndarray, window: np.ndarray, split: Split,
          preds: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per target step: [series,] window, cutoff, time, target and every forecast."""
    n, h = split.y_raw.shape
    out = pd.DataFrame({"window": np.repeat(window + 1, h), "cutoff": np.repeat(frame.index.to_numpy()[origins], h),
                        "time": split.target_time.ravel(), "target": split.y_raw.numpy().astype(np.float64).ravel()})
    if cfg.dataset.series:
        out.insert(0, cfg.dataset.series, np.repeat(frame[cfg.dataset.series].to_numpy()[origins], h))
    for name, p in preds.items():
        out[name] = p.ravel()
    return out


def _starts(frame: pd.DataFrame, cfg: DataConfig) -> np.ndarray | None:
    from rnn_core.features import segment_start

    return segment_start(frame, cfg.dataset) if cfg.dataset.series else None


def _in_sample(frame: pd.DataFrame, model: PostProcessed, origins: np.ndarray, window: np.ndarray) -> list[int]:
    """Windows (1-based) with a target step before the model's test period: steps it trained or validated on."""
    from rnn_core.data import build

    try:
        test_start = build(frame, model.data_config)["test"].target_time.min()
    except (DataError, KeyError, ValueError):
        return []
    ends = frame.index.to_numpy()[origins + 1]  # [N] each window's first target step
    return sorted({int(w) + 1 for w, t in zip(window, ends) if t < test_start})
