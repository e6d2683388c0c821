"""CSV -> all split tensors: rnn_core.data.load against a reimplementation of the lecture's loop-based loader.

Usage: python benchmarks/data_pipeline.py [--data hour.csv] [--runs 5]
Reports the median of N runs of each, in one process, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from _common import DEFAULT_CSV, record  # this folder; rnn_core and search come from the installed package
from rnn_core.data import DataConfig, load  # noqa: E402


def lecture_loader(path: str, sequence_size: int = 24, validation_size: int = 96, test_size: int = 24,
                   y_normalizer: float = 100.0) -> tuple[torch.Tensor, ...]:
    """The course's get_hourly_bikes_data, reimplemented: np.loadtxt, a Python loop to one-hot the weather
    of every hour, and a Python loop over windows. (It also leaks the target: see rnn_core.data.)"""
    bikes_numpy = np.loadtxt(path, dtype=np.float32, delimiter=",", skiprows=1,
                             converters={1: lambda x: float(x[8:10])})
    bikes = torch.from_numpy(bikes_numpy)
    target = bikes[:, -1].unsqueeze(-1)  # cnt
    data = bikes[:, :-1]
    eye = torch.eye(4)
    rows = []
    for idx in range(data.shape[0]):  # one-hot weathersit, hour by hour
        hour = data[idx]
        rows.append(torch.cat((hour, eye[hour[9].long() - 1]), dim=-1))
    data = torch.stack(rows)
    data = torch.cat([data[:, 1:9], data[:, 10:]], dim=-1)  # drop instant and weathersit: 18 features
    X, y = [], []
    for idx in range(len(data) - sequence_size + 1):  # one window per iteration
        X.append(data[idx : idx + sequence_size])
        y.append(target[idx + sequence_size - 1])  # cnt of the LAST input hour: casual+registered are in the input
    X, y = torch.stack(X), torch.stack(y) / y_normalizer
    n_val, n_test = validation_size, test_size
    return (X[: -(n_val + n_test)], X[-(n_val + n_test) : -n_test], X[-n_test:],
            y[: -(n_val + n_test)], y[-(n_val + n_test) : -n_test], y[-n_test:])


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_CSV))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    def ours() -> None:
        d = load(DataConfig(), args.data)
        assert d["train"].X.shape[1:] == (24, 28)

    ours()  # warm imports and the page cache
    ts_ours = timed(ours, args.runs)
    ts_lect = timed(lambda: lecture_loader(args.data), args.runs)
    m_ours, m_lect = statistics.median(ts_ours), statistics.median(ts_lect)
    body = (
        f"| loader | median of {args.runs} (s) | runs (s) |\n|---|---|---|\n"
        f"| rnn_core.data.load (grid, features, 3 splits, scalers) | {m_ours:.3f} | {', '.join(f'{t:.3f}' for t in ts_ours)} |\n"
        f"| lecture loop-based loader | {m_lect:.3f} | {', '.join(f'{t:.3f}' for t in ts_lect)} |\n\n"
        f"Ratio (lecture / ours): **{m_lect / m_ours:.1f}x**. Goal: ours under 1 s: **{'met' if m_ours < 1 else 'NOT met'}**.\n"
    )
    record("Data pipeline: CSV to all split tensors", body)


if __name__ == "__main__":
    main()
