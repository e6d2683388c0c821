"""rnn_core: the data pipeline (a built-in data set, or a series of your own, described one way), the RNN forecaster, its trainer, checkpoints, metrics and plots.

Pure PyTorch + pandas. Never imports Ray, Optuna or wandb.

"The lecture", wherever the code says it, is the course this project grew out of: the lecture notes
"Recurrent Neural Networks (RNNs)" (KOREATECH, November 2023), whose worked example is an RNN (128 units
x 2 layers, 24-hour windows, batch 32) forecasting hourly rentals (the built-in data set, rnn_core/datasets/) with a
hand-written trainer and early stopping. The ``lecture`` preset and split reproduce that model and split.

The names below load on first use, so that ``rnn_core.config`` imports without torch or pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DataConfig": "config", "Dataset": "config", "ModelConfig": "config", "TrainConfig": "config",
    "Model": "api",
    "WindowData": "data", "DataError": "data", "load": "data",
    "RNNForecaster": "model",
    "FitResult": "train", "evaluate": "train", "fit": "train", "train_epoch": "train",
    "CheckpointError": "checkpoint", "load_bundle": "checkpoint", "load_model": "forecaster", "save_bundle": "checkpoint",
    "Evaluation": "metrics", "evaluate_model": "metrics", "Backtest": "backtest", "cross_validation": "backtest",
    "Forecaster": "forecaster", "PostProcessed": "forecaster", "WeightedMean": "forecaster",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rnn_core' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rnn_core.{_EXPORTS[name]}"), name)
