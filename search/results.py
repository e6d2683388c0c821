"""Reading an experiment back: per-trial summaries, the best trial over ALL epochs, its BEST checkpoint."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import ExperimentAnalysis, ResultGrid

from rnn_core.checkpoint import BUNDLE_FILE, load_bundle, model_from_bundle
from rnn_core.config import ENSEMBLE_SIZE
from rnn_core.ensemble import ENSEMBLE_SELECTION
from rnn_core.errors import UserError
from rnn_core.forecaster import member_bundle, save_forecaster
from search import storage
from search.errors import SearchError
from search.meta import MODE, experiment_meta, experiment_metric

log = logging.getLogger(__name__)

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
    """One summary per trial with at least one report, best first: by the validation MAE (in the target's units) of
    each trial's kept checkpoint, the epoch of its min search metric over all epochs. The search metric itself may be
    on the model's scale (val_loss), where a trial higher in both MAE and RMSE can score lower; the ranking a user
    reads, the best trial, the plot and --single all follow the MAE at the kept checkpoint (ties: the metric).

    ``path``: the experiment's location as given (a URI keeps its scheme in the checkpoint locations)."""
    metric = ea.default_metric or "val_loss"  # the experiment's own search metric
    out = []
    status_by_id = {t.trial_id: t.status for t in ea.trials}
    for res in grid:
        df = res.metrics_dataframe
        if df is None or df.empty or metric not in df:
            continue
        # one report per epoch: an epoch reported before an interrupt and run again after the resume (Tune restores
        # from the checkpoint its saved state names, which may be one epoch older) counts once, as its last report
        df = df.drop_duplicates("epoch", keep="last").reset_index(drop=True) if "epoch" in df else df
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
    out.sort(key=lambda s: (s.best_val_mae, s.best_score))
    return out


def best_trial(run: str, where: str | None = None) -> tuple[TrialSummary, list[TrialSummary], str]:
    """The best trial (the lowest validation MAE at a trial's kept checkpoint: :func:`summarize`), all summaries, and
    the path."""
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
    bundle["meta"] = dict(bundle.get("meta", {}), experiment_path=path, data=recorded_data_path(path), trial_id=best.trial_id,
                          best_epoch=best.best_epoch, config=best.config)
    return bundle, best, summaries, path


def export_best(run: str, out: str | Path, where: str | None = None,
                data_path: str | None = None) -> tuple[Path, TrialSummary, tuple[float, float]]:
    """Write the best trial's best checkpoint as one standalone forecaster (loads with rnn_core alone), through
    the same post-processing chain as an ensemble (rnn_core.forecaster.post_process); also its own validation
    (MAE, RMSE)."""
    from rnn_core.forecaster import fit_chain, save_forecaster
    from rnn_core.metrics import mae, rmse

    bundle, best, _, path = best_bundle(run, where)
    frame = run_frame(path, data_path)
    shipped, pred, target = fit_chain(model_from_bundle(member_bundle(bundle), str(best.checkpoint)), frame,
                                      calibration_loss(best.metric), bundle["meta"])
    return save_forecaster(out, shipped), best, (mae(pred, target), rmse(pred, target))


def calibration_loss(metric: str) -> str:
    """What the calibration factor's fit minimises for a search metric: least squares for val_rmse, else
    least absolute deviation."""
    return "rmse" if metric == "val_rmse" else "mae"


# ------------------------------------------------------------------------------------------ ensembles

ENSEMBLE_FILE = "ensemble.pt"
REFIT_FILE = "ensemble_refit.pt"
ENSEMBLE_SUMMARY = "ensemble.json"


@dataclass
class EnsembleReport:
    """What :func:`build_ensemble` chose and measured (also written to the experiment as ensemble.json)."""

    file: str
    """The ensemble file in the experiment (ensemble.pt, or ensemble_refit.pt with refit)."""
    members: list[dict[str, Any]]
    """trial_id, weight, config, val_mae, val_rmse (each member alone) per member, heaviest first."""
    size: int
    loss: str
    """The calibration factor's fit (mae: least absolute deviation; rmse: least squares), by the search metric."""
    candidates: int
    val_mae: float
    val_rmse: float
    """The shipped file's own forecast on the validation hours, target units (before any refit: afterwards they
    are training hours)."""
    steps: list[dict[str, Any]]
    """The file's post-processing chain, as stored (rnn_core.postprocess)."""
    mean_val_mae: float
    mean_val_rmse: float
    """The members' weighted mean alone, on the same hours."""
    best_val_mae: float
    best_val_rmse: float
    """The best trial's checkpoint on the same hours."""
    trials: list[list[Any]]
    """(trial_id, best score) of every trial it chose from: an ensemble is stale when these change."""
    select_s: float
    refit: bool = False
    refit_s: float = 0.0
    refit_file: str | None = None
    selection: str = ""
    """What the greedy selection minimised (rnn_core.config.ENSEMBLE_SELECTION)."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _fingerprint(summaries: list[TrialSummary]) -> list[list[Any]]:
    return sorted([s.trial_id, round(s.best_score, 10)] for s in summaries if s.checkpoint)


def read_ensemble_report(path: str) -> EnsembleReport | None:
    """The experiment's ensemble.json, or None when there is none (or it cannot be read)."""
    text = storage.read_text(storage.join(path, ENSEMBLE_SUMMARY))
    if not text:
        return None
    try:
        return EnsembleReport(**json.loads(text))
    except (ValueError, TypeError):
        return None


def current_ensemble(path: str, summaries: list[TrialSummary], refit: bool = False) -> EnsembleReport | None:
    """The experiment's ensemble report when it was built from the trials as they are now (and refit if asked)."""
    rep = read_ensemble_report(path)
    if rep is None or rep.trials != _fingerprint(summaries) or (refit and not rep.refit_file):
        return None
    return rep


def candidate_bundles(path: str, candidates: list[TrialSummary]) -> dict[str, dict[str, Any]]:
    """The candidates' best checkpoints as member bundles (trial id -> bundle, without the optimizer state:
    200 trials' checkpoints stay small in memory), best first, each with its trial in its ``meta``."""
    bundles = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(candidates):
            bundle = load_bundle(storage.download(storage.join(s.checkpoint or "", BUNDLE_FILE), Path(tmp) / str(i)))
            bundles[s.trial_id] = dict(member_bundle(bundle), meta=dict(
                bundle.get("meta", {}), trial_id=s.trial_id, config=s.config, experiment_path=path, best_epoch=s.best_epoch))
    if not bundles:
        raise ResultsError(f"{path}: no trial has a checkpoint to choose an ensemble from yet")
    return bundles


def build_ensemble(
    run: str,
    where: str | None = None,
    size: int = ENSEMBLE_SIZE,
    refit: bool = False,
    data_path: str | None = None,
    jobs: int | None = None,
    loss: str | None = None,
    selection: str = ENSEMBLE_SELECTION,
) -> EnsembleReport:
    """Choose an ensemble among the trials' best checkpoints (rnn_core.ensemble.choose_ensemble), write it into
    the experiment as one standalone file, and with ``refit`` also a copy whose members were retrained on
    training + validation hours. Works on finished and running experiments, local or s3:// / gs://.

    ``selection``: what the greedy selection minimises; ``loss``: the calibration factor's fit (default: the
    search metric's, mae unless it searched val_rmse)."""
    from rnn_core.config import DataConfig
    from rnn_core.ensemble import choose_ensemble
    from rnn_core.forecaster import naive_bundles

    t0 = time.perf_counter()
    best, summaries, path = best_trial(run, where)
    candidates = [s for s in summaries if s.checkpoint]  # best first: ties in the selection go to better trials
    loss = loss or calibration_loss(best.metric)
    frame = run_frame(path, data_path)
    log.info("choosing an ensemble of up to %d picks among %d trials' best checkpoints, by validation %s",
             size, len(candidates), selection.upper())
    bundles = candidate_bundles(path, candidates)
    cfg = DataConfig.from_dict(next(iter(bundles.values()))["data_config"])
    bundles.update(naive_bundles(cfg))  # the candidate policy (rnn_core.forecaster.naive_bundles)
    choice = choose_ensemble(bundles, frame, size, selection, loss, {"experiment_path": path,
                                                                     "data": data_path or recorded_data_path(path)})
    configs = {s.trial_id: s.config for s in candidates}
    members = [dict(m, config=configs.get(m["trial_id"], {"naive": m["trial_id"]})) for m in choice.members]
    file = storage.join(path, ENSEMBLE_FILE)
    shipped = dataclasses.replace(choice.forecaster, meta=dict(choice.forecaster.meta, members=members,
                                                               val_mae=choice.val_mae, val_rmse=choice.val_rmse))
    _write_model(file, lambda out: save_forecaster(out, shipped))
    report = EnsembleReport(
        file=file, members=members, size=size, loss=loss, candidates=len(candidates), val_mae=choice.val_mae,
        val_rmse=choice.val_rmse, steps=[st.to_dict() for st in shipped.point_steps], mean_val_mae=choice.mean_val_mae,
        mean_val_rmse=choice.mean_val_rmse, best_val_mae=choice.best_val_mae, best_val_rmse=choice.best_val_rmse,
        trials=_fingerprint(summaries), select_s=round(time.perf_counter() - t0, 1), selection=selection)
    if refit:
        from rnn_core.refit import refit_forecaster

        t1 = time.perf_counter()
        report.refit_file = storage.join(path, REFIT_FILE)
        refitted = refit_forecaster(shipped, frame, jobs)
        _write_model(report.refit_file, lambda out: save_forecaster(out, refitted))
        report.refit, report.refit_s = True, round(time.perf_counter() - t1, 1)
    storage.write_text(storage.join(path, ENSEMBLE_SUMMARY), json.dumps(report.to_json(), indent=1, default=str))
    return report


def run_frame(path: str, data_path: str | None = None) -> Any:
    """The data a run searched, read as its dataset description says: ``data_path``, else the file it recorded
    (when it is on this machine), else the built-in data set's usual lookup."""
    from rnn_core.config import DataConfig
    from rnn_core.data import load_frame

    try:
        dataset = DataConfig.from_dict(experiment_meta(path)["data"]).dataset
    except (SearchError, ValueError, KeyError, TypeError):
        dataset = DataConfig().dataset
    return load_frame(data_path or recorded_data_path(path), dataset=dataset)[0]


def recorded_data_path(path: str) -> str | None:
    """The hour.csv the search used, when it is a file on this machine (else the usual lookup applies)."""
    try:
        recorded = experiment_meta(path).get("data_path")
    except (SearchError, ValueError):
        return None
    return recorded if recorded and Path(recorded).is_file() else None


def _write_model(location: str, write: Any) -> None:
    """Write a model file to a local path or a URI (through a local temporary file)."""
    if not storage.is_uri(location):
        write(location)
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = write(Path(tmp) / storage.name(location))
        storage.upload(local, location)


def chosen_model(run: str, where: str | None = None, single: bool = False, refit: bool = False,
                 data_path: str | None = None, size: int | None = None, jobs: int | None = None) -> tuple[Any, str]:
    """What `export` and `test` serve from an experiment: its ensemble (chosen again when the trials changed
    since it was built, or when ``size`` differs; ``refit``: the refit one), or with ``single`` the best trial's
    best checkpoint. Returns (the loaded model or ensemble, a description)."""
    from rnn_core.forecaster import load_model

    if single:
        from rnn_core.forecaster import post_process

        bundle, best, _, path = best_bundle(run, where)
        frame = run_frame(path, data_path)
        shipped = post_process(model_from_bundle(member_bundle(bundle), str(best.checkpoint)), frame,
                               calibration_loss(best.metric), bundle["meta"], str(best.checkpoint))
        return shipped, f"trial {best.trial_id} (epoch {best.best_epoch})"
    _, summaries, path = best_trial(run, where)
    rep = current_ensemble(path, summaries, refit)
    if rep is None or (size is not None and rep.size != size):
        rep = build_ensemble(path, size=size or ENSEMBLE_SIZE, refit=refit, data_path=data_path, jobs=jobs)
    file = rep.refit_file if refit else rep.file
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(storage.download(file or "", tmp))
    model = dataclasses.replace(model, source=file or "")
    what = (f"ensemble of {len(rep.members)} trial(s){' refit on train+val' if refit else ''}: "
            + ", ".join(f"{m['trial_id']} x{m['weight']:.2f}" for m in rep.members))
    return model, what


def model_or_run(target: str, where: str | None = None, single: bool = False, refit: bool = False,
                 data_path: str | None = None) -> tuple[Any, str, str | None, Any, str | None]:
    """What `test` scores, from a model file (``*.pt``, local or in a bucket) or a run: (forecaster, title, its
    experiment or None, (best, summaries) when read, what was chosen for a run)."""
    from rnn_core.checkpoint import CheckpointError
    from rnn_core.forecaster import load_model

    if target.endswith(".pt"):
        if not storage.exists(target):
            raise CheckpointError(f"{target}: no such model file")
        with tempfile.TemporaryDirectory() as tmp:
            lm = dataclasses.replace(load_model(storage.download(target, tmp)), source=target)
        return lm, target, lm.meta.get("experiment_path"), None, None
    best, summaries, experiment = best_trial(target, where)
    lm, what = chosen_model(experiment, single=single, refit=refit, data_path=data_path)
    return lm, f"{storage.name(experiment)} / {what.split(':')[0]}", experiment, (best, summaries), what
