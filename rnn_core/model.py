"""RNNForecaster: a recurrent forecaster (rnn | lstm | gru), many-to-one with a linear head or encoder-decoder."""

from __future__ import annotations

import torch
from torch import nn

from rnn_core.config import ModelConfig


class RNNForecaster(nn.Module):
    """[B, L, F] -> [B, T*H] (T = cfg.targets outputs per target hour, each output's H hours together).

    arch 'head': the last step's top-layer hidden state through a linear head to the H outputs.
    arch 'seq2seq': the encoder's final state starts a decoder of the same cell that steps through the H
    target hours; its input at step k is what is known in advance about hour t+k (the calendar features
    that every input step carries for t+1..t+H: the last step's, i.e. the origin's). No count after t enters.
    """

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
        if cfg.arch == "seq2seq":
            if not cfg.future_features:
                raise ValueError("arch seq2seq needs future_features: the calendar of each target hour in the inputs")
            self.decoder = rnn_cls(
                input_size=cfg.future_features,
                hidden_size=cfg.hidden_size,
                num_layers=cfg.num_layers,
                batch_first=True,
                dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            )
            self.head = nn.Linear(cfg.hidden_size, cfg.targets)  # T outputs per decoder step
        else:
            self.head = nn.Linear(cfg.hidden_size * directions, cfg.horizon * cfg.targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, state = self.rnn(x)  # out [B, L, D*hidden]; state [layers, B, hidden] (LSTM: a pair)
        if self.cfg.arch != "seq2seq":
            return self.head(out[:, -1, :])  # last step: [B, D*hidden] -> [B, T*H]
        h, f = self.cfg.horizon, self.cfg.future_features
        # The origin step's last H*f channels are the calendar of t+1..t+H, hour by hour: [B, H, f].
        future = x[:, -1, x.shape[2] - h * f :].reshape(x.shape[0], h, f)
        dec, _ = self.decoder(future, state)  # [B, H, hidden]
        return self.head(dec).transpose(1, 2).reshape(x.shape[0], -1)  # [B, H, T] -> [B, T*H], output by output
