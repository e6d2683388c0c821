"""The trainer as pure step functions: train_epoch(), evaluate(), fit(..., on_epoch_end=callback).

No globals, no Ray, no wandb: a caller that wants to report or checkpoint passes ``on_epoch_end``.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rnn_core.config import ModelConfig, TrainConfig
from rnn_core.data import WindowData, TargetScaler
from rnn_core.model import RNNForecaster

log = logging.getLogger(__name__)

#: Training losses by name (the names are rnn_core.config.LOSSES).
LOSS_FNS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": nn.functional.mse_loss, "l1": nn.functional.l1_loss, "huber": nn.functional.huber_loss,
}
EVAL_BATCH = 4096


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel per step where PyTorch supports it (CPU and CUDA)."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # an older PyTorch or a device without a fused kernel
        return torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def seed_everything(seed: int) -> None:
    """Seed every RNG a trial touches (dropout and init use torch's global RNG)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    clip_norm: float = 0.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.mse_loss,
    ema: tuple[nn.Module, float] | None = None,
) -> float:
    """One pass over shuffled mini-batches of device-resident tensors. Returns the mean training loss.

    X: [N, L, F] and y: [N, H] already on the model's device; batches are gathered by index, with no
    Dataset or DataLoader. A non-finite loss returns at once (the caller ends the run).
    """
    model.train()
    n = X.shape[0]
    perm = torch.randperm(n, generator=generator).to(X.device)  # CPU generator: same order on any device
    total = torch.zeros((), device=X.device)  # sum on device: no host sync per batch
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        xb, yb = X[idx], y[idx]  # [B, L, F], [B, H]
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)  # clip: RNN gradients explode
        optimizer.step()
        if ema is not None:  # ema <- ema + (1 - decay) * (w - ema), one fused op over all tensors
            with torch.no_grad():
                torch._foreach_lerp_(list(ema[0].parameters()), list(model.parameters()), 1.0 - ema[1])
        total += loss.detach() * len(idx)
    return float(total) / n


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """[N, L, F] -> [N, H] model outputs (model space), in eval mode, batched to bound memory."""
    model.eval()
    if X.shape[0] == 0:
        return model(X[:1].expand(0, *X.shape[1:]))  # [0, H]: a forward pass keeps the output shape
    return torch.cat([model(X[i : i + batch_size]) for i in range(0, X.shape[0], batch_size)])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    y_raw: torch.Tensor,
    target_scaler: TargetScaler,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.mse_loss,
    anchor: np.ndarray | None = None,
    series: np.ndarray | None = None,
) -> dict[str, float]:
    """Loss (the training loss, in model space) and MAE/RMSE in the target's units, after the inverse transform.
    ``anchor`` [N]: the counts at the origins, for a change target (Split.anchor); ``series`` [N]: their series,
    for a panel scaled per series (Split.series)."""
    out = predict(model, X)  # [N, H]
    loss = float(loss_fn(out, y))
    units = target_scaler.inverse(out.double(), anchor, series)  # [N, H] target units
    err = units - y_raw.double()
    return {"loss": loss, "mae": float(err.abs().mean()), "rmse": float(err.pow(2).mean().sqrt())}


@dataclass
class FitResult:
    """What fit() returns: the model holds the best weights."""

    status: str
    """'early_stopped', 'max_epochs' or 'non_finite'."""
    model: RNNForecaster
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    """The final resumable state (see :func:`fit`)."""


#: on_epoch_end(epoch, metrics, snapshot): ``snapshot()`` builds the resumable state of this epoch on demand.
EpochCallback = Callable[[int, dict[str, Any], Callable[[], dict[str, Any]]], None]


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclass
class _Run:
    """The mutable state of one fit: model, optimizer, early-stopping counters, history, RNGs."""

    cfg: TrainConfig
    device: torch.device
    model: RNNForecaster
    ema: RNNForecaster | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    gen: torch.Generator
    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    in_epochs_s: float = 0.0
    status: str = "running"

    @property
    def scored(self) -> RNNForecaster:
        """The weights that are validated, early-stopped on and kept: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.model


def _start(model_cfg: ModelConfig, cfg: TrainConfig) -> _Run:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model = RNNForecaster(model_cfg).to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.max_epochs)
                 if cfg.lr_schedule == "cosine" else None)
    run = _Run(cfg=cfg, device=device, model=model, ema=copy.deepcopy(model) if cfg.ema_decay else None,
               optimizer=optimizer, scheduler=scheduler,
               gen=torch.Generator().manual_seed(cfg.seed))  # batch order, independent of the global RNG
    run.best_state = _clone_state(run.scored)
    return run


def _restore(run: _Run, resume: dict[str, Any]) -> None:
    """Continue from a state written by :func:`_snapshot` (a loaded bundle)."""
    run.model.load_state_dict(resume["model"])
    if run.ema is not None:
        run.ema.load_state_dict(resume["ema"])
    run.optimizer.load_state_dict(resume["optimizer"])
    if run.scheduler is not None and resume.get("scheduler"):
        run.scheduler.load_state_dict(resume["scheduler"])
    run.best_state = resume["best_model"]
    run.epoch = int(resume["epoch"])
    run.best_metrics = dict(resume["best_metrics"])
    run.best_loss = float(run.best_metrics.get("val_loss", math.inf))
    run.best_epoch = int(run.best_metrics.get("epoch", 0))
    run.bad_epochs = int(resume["bad_epochs"])
    run.history = [dict(h) for h in resume["history"]]
    run.in_epochs_s = float(resume["metrics"].get("epochs_time_total_s", 0.0))
    run.status = str(resume.get("status", "running"))
    run.gen.set_state(resume["rng"]["shuffle"])
    torch.set_rng_state(resume["rng"]["torch"])
    if run.device.type == "cuda" and resume["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(resume["rng"]["cuda"], run.device)
    log.info("resuming at epoch %d (best epoch %d, val loss %.5f)", run.epoch + 1, run.best_epoch, run.best_loss)


def _snapshot(run: _Run) -> dict[str, Any]:
    """The resumable state after the current epoch: copies, so that training on does not change it."""
    return {
        "model": _clone_state(run.model),
        "ema": _clone_state(run.ema) if run.ema is not None else {},
        "optimizer": copy.deepcopy(run.optimizer.state_dict()),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else {},
        "weights": _clone_state(run.scored),  # the weights validated at this epoch (what load_model serves)
        "best_model": run.best_state,
        "epoch": run.epoch,
        "bad_epochs": run.bad_epochs,
        "best_metrics": dict(run.best_metrics),
        "metrics": dict(run.history[-1]) if run.history else {},
        "status": run.status,
        "history": [dict(h) for h in run.history],
        "rng": {
            "shuffle": run.gen.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None,
        },
    }


def _status(cfg: TrainConfig, finite: bool, bad_epochs: int, epoch: int) -> str:
    """Why the run ends after this epoch, or 'running'. The one place that decides."""
    if not finite:
        return "non_finite"
    if bad_epochs >= cfg.patience:
        return "early_stopped"
    if epoch >= cfg.max_epochs:
        return "max_epochs"
    return "running"


def _record_epoch(run: Any, cfg: TrainConfig, train_loss: float, val: dict[str, float], lr: float,
                  elapsed: tuple[float, float], samples_per_s: float) -> dict[str, Any]:
    """After an epoch: keep the weights if validation improved by ``min_delta``, count bad epochs, set the run's
    status; returns the epoch's metrics. ``elapsed``: (this epoch's seconds, seconds since fit started)."""
    finite = math.isfinite(train_loss) and math.isfinite(val["loss"])
    if finite and val["loss"] < run.best_loss - cfg.min_delta:
        run.best_loss, run.best_epoch, run.bad_epochs = val["loss"], run.epoch, 0
        run.best_state = _clone_state(run.scored)
        run.best_metrics = {"epoch": run.epoch, "val_loss": val["loss"], "val_mae": val["mae"], "val_rmse": val["rmse"]}
    else:
        run.bad_epochs += 1
    run.status = _status(cfg, finite, run.bad_epochs, run.epoch)
    return {
        "epoch": run.epoch, "train_loss": train_loss, "val_loss": val["loss"], "val_mae": val["mae"], "val_rmse": val["rmse"],
        "lr": lr, "epoch_time_s": elapsed[0], "samples_per_s": samples_per_s, "elapsed_s": elapsed[1],
        "epochs_time_total_s": run.in_epochs_s, "bad_epochs": run.bad_epochs, "best_epoch": run.best_epoch,
        "best_val_loss": run.best_loss,
    }


def fit(
    data: WindowData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
    resume: dict[str, Any] | None = None,
) -> FitResult:
    """Train with early stopping; keep the best weights.

    With ``ema_decay`` an averaged copy of the weights is validated, early-stopped on and saved.

    ``on_epoch_end(epoch, metrics, snapshot)`` runs after every epoch; ``snapshot()`` returns the resumable
    state (model/optimizer/scheduler state, the best weights so far, counters, history, RNG states), built
    only when called. ``checkpoint.save_bundle`` writes it, and ``resume=`` (a loaded bundle) continues from
    it so that the per-epoch metrics match an uninterrupted run.
    """
    run = _start(model_cfg, train_cfg)
    if resume is not None:
        _restore(run, resume)
    loss_fn = LOSS_FNS[train_cfg.loss]
    # Data moves to the device once; batches are indexed from these tensors.
    tr, va = data["train"], data["val"]
    Xtr, ytr = tr.X.to(run.device), tr.y.to(run.device)  # [N, L, F], [N, H]
    Xva, yva, yva_raw = va.X.to(run.device), va.y.to(run.device), va.y_raw.to(run.device)
    ema = (run.ema, train_cfg.ema_decay) if run.ema is not None else None

    start = time.perf_counter()
    while run.status == "running" and run.epoch < train_cfg.max_epochs:
        run.epoch += 1
        t0 = time.perf_counter()
        train_loss = train_epoch(run.model, run.optimizer, Xtr, ytr, train_cfg.batch_size, run.gen,
                                 train_cfg.clip_norm, loss_fn, ema=ema)
        train_time = time.perf_counter() - t0
        val = (evaluate(run.scored, Xva, yva, yva_raw, data.target_scaler, loss_fn, va.anchor, va.series) if math.isfinite(train_loss)
               else {"loss": math.nan, "mae": math.nan, "rmse": math.nan})
        run.in_epochs_s += time.perf_counter() - t0  # train + evaluate only: what overhead is measured against
        lr = run.optimizer.param_groups[0]["lr"]
        if run.scheduler is not None:
            run.scheduler.step()
        metrics = _record_epoch(run, train_cfg, train_loss, val, lr, elapsed=(time.perf_counter() - t0,
                                time.perf_counter() - start), samples_per_s=len(tr) / train_time if train_time > 0 else math.inf)
        run.history.append(metrics)
        if on_epoch_end is not None:
            on_epoch_end(run.epoch, dict(metrics, status=run.status), lambda: _snapshot(run))

    if run.status == "running":  # resumed at max_epochs from a state saved before its status was known
        run.status = "max_epochs"
    state = _snapshot(run) if run.history else dict(resume or {})
    run.model.load_state_dict(run.best_state)
    return FitResult(status=run.status, model=run.model, best_epoch=run.best_epoch, best_metrics=run.best_metrics,
                     history=run.history, state=state)
