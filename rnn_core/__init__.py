"""rnn_core: the bikes data pipeline, the RNN forecaster, its trainer, checkpoints, metrics and plots.

Pure PyTorch + pandas. Never imports Ray, Optuna or wandb at module level.
"""

from rnn_core.checkpoint import CheckpointError, load_bundle, load_model, save_bundle
from rnn_core.data import BikeData, DataConfig, DataError, load
from rnn_core.model import ModelConfig, RNNForecaster
from rnn_core.train import FitResult, TrainConfig, evaluate, fit, train_epoch

__all__ = [
    "BikeData", "CheckpointError", "DataConfig", "DataError", "FitResult", "ModelConfig", "RNNForecaster",
    "TrainConfig", "evaluate", "fit", "load", "load_bundle", "load_model", "save_bundle", "train_epoch",
]
__version__ = "0.1.0"
