"""Refit (:func:`refit_bundles`): retrain each member with its own settings and seed on the training and
validation hours together, for as many epochs as its chosen checkpoint had (the same passes over the data; the
larger data set gives each epoch proportionally more steps), keeping its scalers. This is NeuralForecast's
``refit_with_val``. Its learning-rate schedule is compressed to those epochs (a cosine anneals to zero at the
last one): nothing is held out any more, so the last weights are the ones kept.

Kept apart from the product's path: on 6 of 7 recorded searches it was worse than the validation-only ensemble
(benchmarks/RESULTS.md), and it is offered only where a user asks for it (``--refit``).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnn_core.checkpoint import CheckpointError, model_from_bundle
from rnn_core.config import DataConfig, ModelConfig, TrainConfig
from rnn_core.data import (
    FeatureScaler, Split, TargetScaler, build, features_for, make_targets, make_windows, origin_series, origin_values,
    valid_origins,
)
from rnn_core.features import segment_start
from rnn_core.forecaster import PostProcessed, SeasonalNaive, WeightedMean, member_bundle

log = logging.getLogger(__name__)


def train_through_val(frame: pd.DataFrame, bundle: dict[str, Any], until: np.ndarray | None = None):  # noqa: ANN201 - WindowData
    """The member's windows with the training split extended over the validation hours (every origin whose
    targets end before the test period), scaled with the member's own stored scalers. ``until`` [S]: a
    backtest's cutoff in each series instead: every origin whose targets end by its own series' cutoff."""
    cfg = DataConfig.from_dict(bundle["data_config"])
    fs = FeatureScaler.stored(bundle)
    ts = TargetScaler.from_dict(bundle["target_scaler"])
    data = build(frame, cfg, scalers=(fs, ts))
    tr, va = data["train"], data["val"]
    # Every origin from the first training window to the last validation one: also the H-1 windows that
    # straddle the boundary, and with several validation windows the training hours left out around them.
    origins = np.arange(min(tr.origin[0], va.origin[0]), max(tr.origin[-1], va.origin[-1]) + 1)
    if until is not None:
        origins = _before_cutoffs(frame, cfg, np.arange(origins[0], len(frame)), until)
    origins = np.intersect1d(origins, valid_origins(frame, cfg))  # never across two series, never onto a missing target
    if not len(origins):
        raise CheckpointError("no training window ends before the backtest's first cutoff: ask for fewer windows")
    y_raw = make_targets(data.target.astype(np.float64), origins, cfg.horizon)  # [N, H]
    anchor, series = origin_values(frame, cfg, origins), origin_series(frame, cfg, origins)  # [N] or None each
    data.splits["train"] = Split(
        X=make_windows(features_for(frame, cfg, fs, ts.history), origins, cfg.sequence_size),  # [N, L, F]
        y=torch.from_numpy(np.asarray(ts.forward(y_raw, anchor, series), dtype=np.float32)),
        y_raw=torch.from_numpy(y_raw.astype(np.float32)),
        origin=origins,
        target_time=make_targets(data.times, origins, cfg.horizon).copy(),
        anchor=anchor,
        series=series,
    )
    return data


def _before_cutoffs(frame: pd.DataFrame, cfg: DataConfig, origins: np.ndarray, until: np.ndarray) -> np.ndarray:
    """The origins whose targets end by the cutoff of their own series (``until`` [S], one per series)."""
    starts = segment_start(frame, cfg.dataset)  # [T] first row of each row's series
    limit = np.full(len(frame), -1, np.int64)
    limit[starts[until]] = until  # at each series' first row: its cutoff
    return origins[origins + cfg.horizon <= limit[starts[origins]]]


def refit_bundle(bundle: dict[str, Any], frame: pd.DataFrame, num_threads: int = 1,
                 until: np.ndarray | None = None) -> dict[str, Any]:
    """Retrain one member on training + validation hours (see the module docstring), or up to a backtest's
    cutoffs (``until``, see train_through_val); returns its new bundle."""
    from rnn_core.train import fit  # heavy; only a refit needs the trainer

    started = time.perf_counter()
    epochs = int(bundle.get("best_metrics", {}).get("epoch") or bundle.get("epoch") or 0)
    if epochs < 1:
        raise CheckpointError("cannot refit a member without a recorded best epoch")
    data = train_through_val(frame, bundle, until)
    mcfg = ModelConfig.from_dict(bundle["model_config"])
    tcfg = TrainConfig.from_dict(bundle["train_config"])
    # The member's settings and seed, its schedule compressed to ``epochs`` and no early stopping: the
    # validation hours are training hours now, so it runs exactly ``epochs`` epochs and keeps the last.
    tcfg = dataclasses.replace(tcfg, max_epochs=epochs, patience=epochs + 1, num_threads=num_threads)
    res = fit(data, mcfg, tcfg)
    out = member_bundle(bundle)
    out.update(weights=res.state["weights"], best_model=res.state["weights"], epoch=epochs, history=res.history,
               meta=dict(bundle.get("meta", {}), refit={
                   "epochs": epochs, "train_windows": len(data["train"]),
                   "through": str(data["train"].target_time[-1, -1])[:16], "seconds": round(time.perf_counter() - started, 1),
               }))
    return out


def _refit_one(args: tuple[dict[str, Any], pd.DataFrame, np.ndarray | None]) -> dict[str, Any]:
    bundle, frame, until = args
    return refit_bundle(bundle, frame, num_threads=1, until=until)


def refit_bundles(bundles: dict[str, dict[str, Any]], frame: pd.DataFrame, jobs: int | None = None,
                  until: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """Refit several members, ``jobs`` at a time in worker processes of one thread each (default: one per CPU)."""
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(bundles)))
    names = list(bundles)
    log.info("refitting %d network(s) on %s, %d at a time", len(names),
             "training + validation steps" if until is None else "the steps before each series' cutoff", jobs)
    if jobs == 1:
        return {n: refit_bundle(bundles[n], frame, torch.get_num_threads(), until) for n in names}
    out = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for name, refit in zip(names, pool.map(_refit_one, [(bundles[n], frame, until) for n in names])):
            log.info("  refit %s: %d epochs on %d windows in %.0f s", name, refit["meta"]["refit"]["epochs"],
                     refit["meta"]["refit"]["train_windows"], refit["meta"]["refit"]["seconds"])
            out[name] = refit
    return out


def refit_forecaster(shipped: PostProcessed, frame: pd.DataFrame, jobs: int | None = None,
                     until: np.ndarray | None = None) -> PostProcessed:
    """The one entry point: a forecaster whose networks are refit (:func:`refit_bundles`; one network alone or an
    ensemble's members, with the same weights), the same chain (its factor and intervals stay the validation
    ones: their own would be in-sample) and ``meta["refit"]``. ``until``: a backtest's cutoffs (train_through_val)."""
    base = shipped.base
    if not isinstance(base, WeightedMean):
        if isinstance(base, SeasonalNaive):
            raise ValueError("a naive forecast has nothing to refit")
        refit = model_from_bundle(refit_bundles({"model": base.bundle}, frame, 1, until)["model"], base.source)
        return dataclasses.replace(shipped, base=refit, meta=dict(shipped.meta, refit=True))
    networks = {n: m.bundle for n, m in zip(base.names, base.members) if not isinstance(m, SeasonalNaive)}
    refits = refit_bundles(networks, frame, jobs, until)  # a naive member has nothing to train: it stays
    members = tuple(model_from_bundle(refits[n], n) if n in refits else m for n, m in zip(base.names, base.members))
    return dataclasses.replace(shipped, base=WeightedMean(members, base.names, base.weights), meta=dict(shipped.meta, refit=True))
