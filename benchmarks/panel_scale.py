"""Panels at scale (issue 46): 10, 100 and 1,000 related series of the same length (synthetic: a daily and a
weekly season, a level per series, noise, one past covariate and a future flag), written as one CSV, then read
(rnn_core.series.read_frame: the grid), built (features, windows, splits, scalers: rnn_core.data.build) and one
epoch of a small GRU trained over every training window. Each size runs in a fresh process, so that its peak
memory (ru_maxrss) is its own; seconds per series show whether each stage grows linearly.

  python benchmarks/panel_scale.py [--sizes 10,100,1000] [--steps 1000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import record  # this folder; rnn_core comes from the installed package


def synthetic(series: int, steps: int, seed: int = 0) -> pd.DataFrame:
    """[series * steps] rows: store, ts (hourly), sales (>= 0), temp (past), promo (future)."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    rows = []
    for s in range(series):
        level = rng.uniform(5, 50)
        temp = 10 + 8 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1, steps)
        promo = (rng.random(steps) < 0.05).astype(int)
        y = level * (1 + 0.5 * np.sin(2 * np.pi * t / 24) + 0.2 * np.sin(2 * np.pi * t / 168)) + 0.3 * temp + 5 * promo
        rows.append(pd.DataFrame({"store": f"s{s:04d}", "ts": pd.date_range("2024-01-01", periods=steps, freq="h"),
                                  "sales": np.maximum(0, y + rng.normal(0, 1, steps)).round(2), "temp": temp.round(2),
                                  "promo": promo}))
    return pd.concat(rows, ignore_index=True)


def one(series: int, steps: int, folder: Path) -> dict[str, float]:
    """Read, build and one epoch for one panel size, in this process."""
    import torch

    from rnn_core.config import DataConfig, Dataset, ModelConfig
    from rnn_core.data import build
    from rnn_core.model import RNNForecaster
    from rnn_core.series import read_frame
    from rnn_core.train import train_epoch

    csv = folder / f"panel{series}.csv"
    synthetic(series, steps).to_csv(csv, index=False)
    torch.set_num_threads(2)
    cfg = DataConfig(dataset=Dataset(time="ts", target="sales", past=("temp",), future=("promo",), series="store",
                                     freq="h"), sequence_size=24)
    t0 = time.perf_counter()
    frame = read_frame(csv, cfg.dataset)[0]
    t1 = time.perf_counter()
    data = build(frame, cfg)
    t2 = time.perf_counter()
    tr = data["train"]
    model = RNNForecaster(data.model_config(cell="gru", hidden_size=32, num_layers=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with torch.no_grad():
        model(tr.X[:256])  # warm-up: the first call's one-time set-up is not the epoch's cost
    t2b = time.perf_counter()
    train_epoch(model, opt, tr.X, tr.y, 256, torch.Generator().manual_seed(0))
    t3 = time.perf_counter() - (t2b - t2)
    return {"series": series, "rows": len(frame), "windows": len(tr), "read_s": t1 - t0, "build_s": t2 - t1,
            "epoch_s": t3 - t2, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--steps", type=int, default=1000, help="hourly steps per series (default: 1000)")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one size
    args = p.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one(args.one, args.steps, Path(tmp))))
        return
    rows = []
    for n in map(int, args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--steps", str(args.steps)], check=True,
                             capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr)
    base = rows[0]
    lines = ["| series | rows | training windows | read s | build s | one epoch s | per series vs the smallest "
             "(read / build / epoch) | peak memory MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        k = r["series"] / base["series"]
        ratio = " / ".join(f"{r[s] / (k * base[s]):.2f}" for s in ("read_s", "build_s", "epoch_s"))
        lines.append(f"| {r['series']:,} | {r['rows']:,} | {r['windows']:,} | {r['read_s']:.2f} | {r['build_s']:.2f} | "
                     f"{r['epoch_s']:.2f} | {ratio} | {r['peak_mib']:.0f} |")
    body = ("Synthetic hourly panels of equal-length series (a level per series, daily and weekly seasons, a past "
            f"covariate and a future flag), {args.steps:,} steps each; one GRU 32x1 epoch over every training window "
            "(batch 256, 2 threads). A ratio of 1.00 is linear growth from the smallest panel.\n\n" + "\n".join(lines))
    record("Panels at scale", body)


if __name__ == "__main__":
    main()
