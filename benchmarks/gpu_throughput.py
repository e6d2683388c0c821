"""Trials per hour of the default preset's typical trial on one GPU with 1, 4, 8 and 16 trials at once (separate
processes, as Ray's fractional GPUs run them), against 2 CPU cores (2 one-thread trials). rnn_core only.

A trial here is what the default preset's searches ship: an LSTM 64x2 on 24-hour windows, batch 256, 4
validation windows. Each process trains it for ``--seconds`` after its first epoch (start-up and CUDA
initialisation are left out) and counts its epochs; the aggregate epochs per hour over the typical trial's
epochs (ASHA with grace 3, reduction 3, at most 20 epochs: 2/3 of the trials stop at 3, 2/9 at 9, 1/9 run 20,
6.2 epochs on average) give trials per hour.

Usage: python benchmarks/gpu_throughput.py [--seconds 20] [--concurrency 1,4,8,16] [--out FILE]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the accelerator machine has nothing installed

TYPICAL_EPOCHS = 3 * 2 / 3 + 9 * 2 / 9 + 20 / 9  # ASHA grace 3, reduction 3, max 20: 6.2


def _worker(device: str, seconds: float, csv: str, threads: int, out: mp.Queue) -> None:
    import torch

    from rnn_core.config import DataConfig, TrainConfig
    from rnn_core.data import load
    from rnn_core.train import fit

    torch.set_num_threads(threads)
    data = load(DataConfig(val_windows=4), csv)
    mcfg = data.model_config(cell="lstm", hidden_size=64, num_layers=2, dropout=0.1)
    tcfg = TrainConfig(batch_size=256, max_epochs=10_000, patience=10_000, seed=0, device=device, num_threads=threads)
    marks: list[float] = []

    class Enough(Exception):
        pass

    def on_epoch_end(epoch, metrics, snapshot):  # noqa: ANN001, ANN202
        marks.append(time.perf_counter())
        if marks[-1] - marks[0] >= seconds:
            raise Enough

    try:
        fit(data, mcfg, tcfg, on_epoch_end=on_epoch_end)
    except Enough:
        pass
    out.put((len(marks) - 1, marks[-1] - marks[0]))  # epochs after the first, and their seconds


def rate(device: str, k: int, seconds: float, csv: str, threads: int = 1) -> float:
    """Aggregate epochs per hour of k concurrent trial processes."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(device, seconds, csv, threads, q)) for _ in range(k)]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds * 4 + 240) for _ in procs]
    for p in procs:
        p.join()
    return sum(n / s for n, s in results if s > 0) * 3600


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--concurrency", default="1,4,8,16")
    ap.add_argument("--data", default=os.environ.get("RNN_SEARCH_DATA", str(Path(__file__).resolve().parents[2]
                                                                            / "shared/data/bike-sharing/hour.csv")))
    ap.add_argument("--out", help="also write the table here")
    args = ap.parse_args()
    rows = ["| where | trials at once | epochs / hour | trials / hour | vs 2 CPU cores |", "|---|---|---|---|---|"]
    cpu = rate("cpu", 2, args.seconds, args.data)
    rows.append(f"| 2 CPU cores (one thread each) | 2 | {cpu:,.0f} | {cpu / TYPICAL_EPOCHS:,.0f} | 1.00 |")
    print(rows[-1], flush=True)
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        for k in (int(v) for v in args.concurrency.split(",")):
            r = rate("cuda", k, args.seconds, args.data)
            rows.append(f"| {name} | {k} | {r:,.0f} | {r / TYPICAL_EPOCHS:,.0f} | {r / cpu:.2f} |")
            print(rows[-1], flush=True)
    else:
        rows.append("| (no CUDA device here) | - | - | - | - |")
    text = (f"Typical trial: LSTM 64x2, 24-hour windows, batch 256, {TYPICAL_EPOCHS:.1f} epochs; {args.seconds:g} s of "
            f"training per process after its first epoch; torch {torch.__version__}.\n\n" + "\n".join(rows) + "\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
