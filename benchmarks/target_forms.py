"""The target forms (DataConfig.target_form) side by side: one fixed setting trained with several seeds in each
form, on several test periods, each form's seeds combined as an equal-weight ensemble (rnn_core.forecaster.
WeightedMean) and given the shipped chain (fit_chain: calibration, same-hour bias, residual correction, floor),
then scored on validation and test, as `rnn-search test` scores a shipped model.

Forms: level (the target itself), change (its change from the count at t), both (one network, two outputs per
hour, the forecast their mean), and level + change (the level seeds and the change seeds in one ensemble: twice
the networks; what a search whose trials choose a form could at best ship).

The setting: the top member of a default-preset search on November-December 2012 (LSTM 32x1, 48 h, Huber,
cosine over 20 epochs, 4 validation windows; its sampled learning rate, batch, weight decay and clip norm).

Usage:
  python benchmarks/target_forms.py [--seeds 6] [--periods nov-dec,mar-apr,jul-aug,sep-oct] [--data hour.csv]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# _common: this folder; rnn_core: the installed package
from _common import DEFAULT_CSV, record

from rnn_core.checkpoint import save_bundle
from rnn_core.config import DataConfig, TrainConfig
from rnn_core.data import build, load_frame
from rnn_core.forecaster import WeightedMean, fit_chain, load_model, split_targets
from rnn_core.metrics import mae, rmse
from rnn_core.train import fit

log = logging.getLogger("target_forms")
PERIODS = {  # label: --split
    "nov-dec": "default", "mar-apr": "2012-01-01,2012-03-01,2012-04-30",
    "jul-aug": "2012-05-01,2012-07-01,2012-08-31", "sep-oct": "2012-07-01,2012-09-01,2012-10-31",
}
MODEL = {"cell": "lstm", "hidden_size": 32, "num_layers": 1}
TRAIN = {"learning_rate": 0.00353, "batch_size": 64, "weight_decay": 3.77e-4, "clip_norm": 0.62, "loss": "huber",
         "lr_schedule": "cosine", "max_epochs": 20, "patience": 100, "num_threads": 1}
FORMS = ("level", "change", "both")


def data_config(split: str, form: str) -> DataConfig:
    bounds = {} if split == "default" else dict(zip(("val_start", "test_start", "test_end"), split.split(",")), split="custom")
    return DataConfig(sequence_size=48, target_transform="sqrt", val_windows=4, target_form=form, **bounds)


def members(frame, split: str, form: str, seeds: int, folder: Path) -> list:
    """``seeds`` networks of the setting in one form, trained and loaded back from their files (LoadedModel)."""
    cfg = data_config(split, form)
    data = build(frame, cfg)
    out = []
    for seed in range(seeds):
        t0 = time.perf_counter()
        mcfg, tcfg = data.model_config(**MODEL), TrainConfig(seed=seed, **TRAIN)
        res = fit(data, mcfg, tcfg)
        path = save_bundle(folder / f"{form}-{seed}.pt", res.state, data, mcfg, tcfg)
        out.append(load_model(path).base)
        log.info("%s %s seed %d: val MAE %.2f (%.0f s)", split, form, seed, res.best_metrics["val_mae"],
                 time.perf_counter() - t0)
    return out


def scores(frame, models: list) -> tuple[float, float, float]:
    """(validation MAE, test MAE, test RMSE) of the models' equal-weight mean with the shipped chain."""
    base = WeightedMean(tuple(models), tuple(f"m{i}" for i in range(len(models))), np.full(len(models), 1 / len(models)))
    shipped, val_pred, val_y = fit_chain(base, frame)
    origins, y = split_targets(frame, base.data_config, "test")
    pred = shipped.forecast(frame, origins)
    return mae(val_pred, val_y), mae(pred, y), rmse(pred, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--periods", default=",".join(PERIODS))
    ap.add_argument("--data", default=str(DEFAULT_CSV))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    frame = load_frame(args.data)[0]
    rows, gains = [], {"change": [], "both": [], "level + change": []}
    for label in args.periods.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            nets = {form: members(frame, PERIODS[label], form, args.seeds, Path(tmp)) for form in FORMS}
            got = {form: scores(frame, nets[form]) for form in FORMS}
            got["level + change"] = scores(frame, nets["level"] + nets["change"])
        ref = got["level"]
        for form, g in gains.items():
            g.append(tuple(100 * (got[form][i] / ref[i] - 1) for i in (0, 1)))
        rows.append(f"| {label} | " + " | ".join(f"{v:.2f} / {t:.2f} / {r:.2f}" for v, t, r in got.values()) + " |")
    mean = {form: np.mean(g, axis=0) for form, g in gains.items()}
    body = (f"Validation MAE / test MAE / test RMSE, bikes per hour, horizon 1, of {args.seeds} seeds of one setting "
            "(the script's header) in each target form, combined with equal weights and given the shipped chain. "
            "'level + change' puts both forms' seeds in one ensemble (twice the networks).\n\n"
            "| period | level | change | both (ships) | level + change |\n|---|---|---|---|---|\n" + "\n".join(rows) +
            "\n\nMean change against the level, validation / test MAE: " +
            "; ".join(f"{form} {m[0]:+.1f} % / {m[1]:+.1f} %" for form, m in mean.items()) + ".\n")
    record("The target in both forms: level, change from t, both", body)


if __name__ == "__main__":
    main()
