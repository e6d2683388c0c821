"""One model without Ray (`rnn-search train`): the trainer with its per-epoch log line, the best checkpoint
saved as it improves, W&B logging where asked, and the kept model shipped with its post-processing chain."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from rnn_core.config import DataConfig, ModelConfig, TrainConfig
from search.show import hms

log = logging.getLogger(__name__)


def train_one(dcfg: DataConfig, model_fields: dict[str, Any], tcfg: TrainConfig, data_path: str | None, out: str | Path,
              wandb_mode: str = "off", argv: list[str] | None = None) -> tuple[Any, Path, str]:
    """Train one model; returns (its FitResult, the checkpoint file, what its errors are measured in). ``argv``: the
    command line, whose lack of --target-transform lets a user's series choose it (rnn_core.data.load's suit)."""
    from rnn_core.checkpoint import save_bundle
    from rnn_core.data import load
    from rnn_core.train import fit, resolve_device

    from search.options import transform_open

    data = load(dcfg, data_path, suit=argv is not None and transform_open(argv))
    mcfg: ModelConfig = data.model_config(**model_fields)
    ckpt = Path(out) / "model.pt"
    run = None
    if wandb_mode != "off":
        import wandb

        run = wandb.init(project="rnn-search", mode=wandb_mode, dir=str(out), job_type="train",
                         config={"model": mcfg.to_dict(), "train": tcfg.to_dict(), "data": data.config.to_dict()})
    log.info("data: %s | train/val/test windows %s | device %s",
             data.source, "/".join(str(len(s)) for s in data.splits.values()), resolve_device(tcfg.device))
    log.info("model: %s %dx%d%s, %d features -> %d outputs", mcfg.cell.upper(), mcfg.hidden_size, mcfg.num_layers,
             " bidirectional" if mcfg.bidirectional else "", mcfg.n_features, mcfg.horizon)

    def on_epoch_end(epoch: int, m: dict[str, Any], snapshot: Any) -> None:
        if m["best_epoch"] == epoch:
            msg = f"best V_loss so far (early stopping follows V_loss, not V_MAE), saved {ckpt}"
            save_bundle(ckpt, snapshot(), data, mcfg, tcfg, meta={"command": "train", "data": _absolute(data_path)})
        elif m["status"] == "non_finite":
            msg = "loss is not finite: stopping"
        else:
            msg = f"early stopping counter {m['bad_epochs']} of {tcfg.patience}"
            if m["status"] == "early_stopped":
                msg += f": stopping, best epoch {m['best_epoch']}"
        log.info("[Epoch %3d] T_loss: %.4f, V_loss: %.4f, V_MAE: %.4g | %s | T_time: %s, T_speed: %s samples/s",
                 epoch, m["train_loss"], m["val_loss"], m["val_mae"], msg, hms(m["elapsed_s"]),
                 f"{m['samples_per_s']:,.0f}")
        if run is not None:
            run.log({k: v for k, v in m.items() if isinstance(v, (int, float))}, step=epoch)

    start = time.perf_counter()
    res = fit(data, mcfg, tcfg, on_epoch_end=on_epoch_end)
    if ckpt.exists():  # the kept model as it ships: the post-processing chain fitted on its validation steps
        from rnn_core.data import load_frame
        from rnn_core.forecaster import ship_checkpoint

        ship_checkpoint(ckpt, load_frame(data_path, dataset=data.config.dataset)[0])
    if run is not None:
        run.summary.update({f"best_{k}": v for k, v in res.best_metrics.items()})
        run.finish()
    log.info("finished (%s) in %s; best epoch %d: val MAE %.4g, RMSE %.4g; checkpoint %s", res.status,
             hms(time.perf_counter() - start), res.best_epoch, res.best_metrics.get("val_mae", math.nan),
             res.best_metrics.get("val_rmse", math.nan), ckpt if ckpt.exists() else "(none: no finite epoch)")
    return res, ckpt, data.config.dataset.target


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None
