"""RNNForecaster: a many-to-one recurrent forecaster (rnn | lstm | gru)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

CELLS = ("rnn", "lstm", "gru")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the forecaster. Defaults are the lecture's model (RNN 128 x 2)."""

    n_features: int
    """F: input features per step (from DataConfig.n_features)."""
    horizon: int = 1
    """H: hours forecast per window (outputs of the linear head)."""
    cell: str = "rnn"
    """'rnn' (tanh, the lecture's), 'lstm' or 'gru'."""
    hidden_size: int = 128
    """Units per recurrent layer."""
    num_layers: int = 2
    """Stacked recurrent layers."""
    dropout: float = 0.0
    """Dropout between recurrent layers (ignored by PyTorch when num_layers == 1)."""
    bidirectional: bool = False
    """Run each layer forwards and backwards over the window."""

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        for name in ("n_features", "horizon", "hidden_size", "num_layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**d)


class RNNForecaster(nn.Module):
    """[B, L, F] -> [B, H]: the last step's top-layer hidden state through a linear head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        rnn_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cfg.cell]
        self.rnn = rnn_cls(
            input_size=cfg.n_features,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,  # PyTorch warns on dropout with 1 layer
            bidirectional=cfg.bidirectional,
        )
        directions = 2 if cfg.bidirectional else 1
        self.head = nn.Linear(cfg.hidden_size * directions, cfg.horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # [B, L, D*hidden]
        return self.head(out[:, -1, :])  # last step: [B, D*hidden] -> [B, H]
