"""RNNForecaster: a many-to-one recurrent forecaster (rnn | lstm | gru)."""

from __future__ import annotations

import torch
from torch import nn

from rnn_core.config import ModelConfig


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
