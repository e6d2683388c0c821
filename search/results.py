"""Reading an experiment back: per-trial summaries, the best trial over ALL epochs, its BEST checkpoint."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import ExperimentAnalysis, ResultGrid

from rnn_core.config import UserError
from rnn_core.checkpoint import BUNDLE_FILE, load_bundle, write_bundle
from search import storage
from search.tuner import MODE, experiment_metric

STOP_REASONS = {"early_stopped": "early stopping", "max_epochs": "max epochs", "non_finite": "non-finite loss"}


class ResultsError(UserError):
    """An experiment that cannot be read or has nothing to report; the message says why."""


@dataclass
class TrialSummary:
    trial_id: str
    metric: str
    best_score: float
    config: dict[str, Any]
    best_epoch: int
    best_val_loss: float
    best_val_mae: float
    best_val_rmse: float
    epochs: int
    stop_reason: str
    checkpoint: str | None
    nodes: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "history"}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def load_experiment(run: str, where: str | None = None) -> tuple[ExperimentAnalysis, ResultGrid, str]:
    """Read an experiment (finished or still running) from its storage, local or s3:// / gs://."""
    path = storage.experiment_path(run, where)
    if not storage.exists(path):
        raise ResultsError(f"unknown run {run!r}: {path} does not exist (give a run name under --storage "
                           f"{storage.resolve(where)}, or the experiment's path or URI)")
    try:
        ea = ExperimentAnalysis(path, default_metric=experiment_metric(path), default_mode=MODE)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise ResultsError(f"{path} is not a Tune experiment directory ({str(exc).splitlines()[0]})") from None
    return ea, ResultGrid(ea), path


def summarize(ea: ExperimentAnalysis, grid: ResultGrid, path: str | None = None) -> list[TrialSummary]:
    """One summary per trial with at least one report, best first (min of the search metric over all epochs).

    ``path``: the experiment's location as given (a URI keeps its scheme in the checkpoint locations)."""
    metric = ea.default_metric or "val_loss"  # the experiment's own search metric
    out = []
    status_by_id = {t.trial_id: t.status for t in ea.trials}
    for res in grid:
        df = res.metrics_dataframe
        if df is None or df.empty or metric not in df:
            continue
        best = df.loc[df[metric].idxmin()]
        last = df.iloc[-1]
        tid = str(last["trial_id"])
        status = str(last.get("status", ""))
        if res.error is not None or status_by_id.get(tid) == "ERROR":
            reason = "error"
        elif status in STOP_REASONS:
            reason = STOP_REASONS[status]
        elif status_by_id.get(tid) == "TERMINATED":
            reason = "ASHA"
        else:
            reason = "running"
        ckpt = None
        best_ckpts = [(c, m) for c, m in (res.best_checkpoints or []) if m.get(metric) is not None]
        if best_ckpts:
            c, _ = min(best_ckpts, key=lambda cm: (cm[1][metric], cm[1].get("epoch", 0)))
            ckpt = storage.location_of(path or ea.experiment_path, c.path)
        out.append(TrialSummary(
            trial_id=tid,
            metric=metric,
            best_score=float(best[metric]),
            config={k: v for k, v in res.config.items()},
            best_epoch=int(best["epoch"]),
            best_val_loss=float(best["val_loss"]),
            best_val_mae=float(best["val_mae"]),
            best_val_rmse=float(best["val_rmse"]),
            epochs=int(last["epoch"]),
            stop_reason=reason,
            checkpoint=ckpt,
            nodes=sorted({str(n) for n in df.get("node_id", [])}),
            history=df[["epoch", "val_loss", "val_mae"]].to_dict("records"),
        ))
    out.sort(key=lambda s: s.best_score)
    return out


def best_trial(run: str, where: str | None = None) -> tuple[TrialSummary, list[TrialSummary], str]:
    """The best trial (min of the experiment's metric over all epochs of all trials), all summaries, and the path."""
    ea, grid, path = load_experiment(run, where)
    summaries = summarize(ea, grid, path)
    if not summaries:
        raise ResultsError(f"{path}: no trial has reported a result yet")
    best = summaries[0]
    if best.checkpoint is None:
        raise ResultsError(f"{path}: the best trial {best.trial_id} has no checkpoint")
    return best, summaries, path


def best_bundle(run: str, where: str | None = None) -> tuple[dict[str, Any], TrialSummary, list[TrialSummary], str]:
    """The best trial's best checkpoint, loaded and verified, with the trial's identity in its ``meta``;
    also the summaries of all trials and the experiment path."""
    best, summaries, path = best_trial(run, where)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = load_bundle(storage.download(storage.join(best.checkpoint or "", BUNDLE_FILE), tmp))
    bundle["meta"] = dict(bundle.get("meta", {}), experiment_path=path, trial_id=best.trial_id,
                          best_epoch=best.best_epoch, config=best.config)
    return bundle, best, summaries, path


def export_best(run: str, out: str | Path, where: str | None = None) -> tuple[Path, TrialSummary]:
    """Write the best trial's best checkpoint as one standalone bundle (loads with rnn_core alone)."""
    bundle, best, _, _ = best_bundle(run, where)
    return write_bundle(out, bundle), best
