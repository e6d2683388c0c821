"""Search efficiency at equal budget: (a) ours, TPE + ASHA with ASHA-stopped trials told to Optuna as PRUNED;
(b) Ray's stock OptunaSearch + ASHA; (c) random search + FIFO (no early stopping). Several seeds each.

Budget: a fixed total of training epochs per run (a Tune stopper ends the run when all trials together have
trained that many epochs). Reports the best validation MAE against epochs and wall seconds, the compute to
first reach a target validation MAE, and a PNG of best-so-far validation MAE against cumulative epochs.

Usage (inside a private network namespace):
  unshare -rn sh -c 'ip link set lo up && exec python benchmarks/search_efficiency.py [--budget 60] [--seeds 0 1 2]'
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ray  # noqa: E402
from ray import tune  # noqa: E402

from _common import DEFAULT_CSV, RESULTS, record  # this folder; rnn_core and search come from the installed package
from search.tuner import SearchOptions, run_search  # noqa: E402

SPACE = """
cell: {choice: [gru, lstm, rnn]}
hidden_size: {choice: [16, 32, 64]}
num_layers: {choice: [1, 2]}
sequence_size: 24
learning_rate: {loguniform: [3.0e-4, 3.0e-2]}
batch_size: {choice: [128, 256, 512]}
"""
METHODS = {"a: TPE+ASHA, pruned told (ours)": "optuna-asha", "b: stock OptunaSearch+ASHA": "optuna",
           "c: random + FIFO": "random"}


class EpochBudget(tune.Stopper):
    """Stops the whole run once all trials together have reported `budget` epochs."""

    def __init__(self, budget: int) -> None:
        self.budget, self.seen = budget, 0

    def __call__(self, trial_id: str, result: dict) -> bool:
        self.seen += 1
        return False

    def stop_all(self) -> bool:
        return self.seen >= self.budget


class Trace(tune.Callback):
    """(wall seconds, val MAE) of every reported epoch, in the order the driver saw them."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.points: list[tuple[float, float]] = []

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.points.append((time.monotonic() - self.t0, float(result["val_mae"])))


def curve(points: list[tuple[float, float]], budget: int) -> tuple[list[int], list[float], list[float]]:
    epochs, best, wall, b = [], [], [], float("inf")
    for i, (t, mae) in enumerate(points[:budget], start=1):
        b = min(b, mae)
        epochs.append(i)
        best.append(b)
        wall.append(t)
    return epochs, best, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_CSV))
    ap.add_argument("--budget", type=int, default=80, help="total epochs per run")
    ap.add_argument("--n-startup", type=int, default=4, help="TPE's random start-up trials (a and b)")
    ap.add_argument("--max-epochs", type=int, default=8, help="epochs per trial (ASHA max_t)")
    ap.add_argument("--target", type=float, default=45.0, help="target validation MAE (bikes/hour)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    tmp = Path(tempfile.mkdtemp(prefix="search-eff-"))
    space = tmp / "space.yaml"
    space.write_text(SPACE)
    runs: dict[str, list[tuple[list[int], list[float], list[float]]]] = {m: [] for m in METHODS}
    for seed in args.seeds:
        for label, searcher in METHODS.items():
            trace = Trace()
            opts = SearchOptions(preset="quick", space_file=str(space), num_samples=200, max_epochs=args.max_epochs,
                                 grace_period=1, reduction_factor=2, max_concurrent=2, storage=str(tmp / "runs"),
                                 name=f"{searcher}-{seed}", data_path=args.data, seed=seed, searcher=searcher,
                                 n_startup_trials=args.n_startup,
                                 stop=EpochBudget(args.budget), callbacks=[trace], progress_interval_s=3600)
            run_search(opts)
            c = curve(trace.points, args.budget)
            runs[label].append(c)
            print(f"{label} seed {seed}: best val MAE {c[1][-1]:.2f} after {c[0][-1]} epochs, {c[2][-1]:.0f} s", flush=True)

    def first_reach(c, target):
        for e, b, w in zip(*c):
            if b <= target:
                return e, w
        return None, None

    rows = []
    for label, cs in runs.items():
        finals = [c[1][-1] for c in cs]
        walls = [c[2][-1] for c in cs]
        reach = [first_reach(c, args.target) for c in cs]
        got = [r for r in reach if r[0] is not None]
        reach_txt = (f"{len(got)}/{len(cs)} runs; median {statistics.median(r[0] for r in got):.0f} epochs, "
                     f"{statistics.median(r[1] for r in got):.0f} s" if got else f"0/{len(cs)} runs")
        half = [min(b for e, b in zip(c[0], c[1]) if e <= args.budget // 2) for c in cs]
        rows.append(f"| {label} | {statistics.median(half):.2f} | {statistics.median(finals):.2f} "
                    f"({', '.join(f'{f:.2f}' for f in finals)}) | {statistics.median(walls):.0f} | {reach_txt} |")
    fig, ax = plt.subplots(figsize=(9, 5))
    for (label, cs), color in zip(runs.items(), ("tab:red", "tab:blue", "tab:gray")):
        for i, c in enumerate(cs):
            ax.plot(c[0], c[1], color=color, alpha=0.8, lw=1.5, label=label if i == 0 else None)
    ax.axhline(args.target, color="black", ls=":", lw=1, label=f"target {args.target:g}")
    ax.set_xlabel("cumulative training epochs (all trials)")
    ax.set_ylabel("best-so-far validation MAE (bikes / hour)")
    ax.set_title(f"Search efficiency, {args.budget}-epoch budget, seeds {args.seeds}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = RESULTS.with_name("search_efficiency.png")
    fig.savefig(png, dpi=110)
    body = (f"Space: GRU/LSTM/RNN, hidden 16-64, 1-2 layers, lr 3e-4..3e-2, batch 128-512, sequence 24; at most "
            f"{args.max_epochs} epochs per trial; budget **{args.budget} epochs per run** (all trials together); "
            f"2 trials at a time; TPE starts modelling after {args.n_startup} random trials; seeds {args.seeds}.\n\n"
            f"| method | median best val MAE at {args.budget // 2} epochs | median best val MAE at {args.budget} epochs (per seed) "
            f"| median wall s | reached val MAE <= {args.target:g} |\n|---|---|---|---|---|\n" + "\n".join(rows) +
            f"\n\nFigure: `benchmarks/{png.name}` (best-so-far validation MAE against cumulative epochs, one line per run).\n")
    record("Search efficiency: TPE+ASHA (pruned told) vs stock OptunaSearch+ASHA vs random+FIFO", body)
    ray.shutdown()


if __name__ == "__main__":
    main()
