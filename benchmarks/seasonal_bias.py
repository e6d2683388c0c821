"""What the same-hour bias step (rnn_core.postprocess.SeasonalBias) is worth on finished searches, and how its three
settings were chosen: each run's ensemble (RUN/ensemble.pt) forecast with its chain with the step as it ships now,
without the step, with a plain mean (no trim), at other trims, and at other spans (days) and shares, on the
validation and the test hours.

The grid gives, for each setting, the mean over the runs of the MAE relative to the chain without the step, on
validation and on test. Validation says little here: the 28 days before a validation window lie mostly in the
training hours, whose errors are in-sample and small. The default (rnn_core.config.SEASONAL_BIAS_DAYS,
SEASONAL_BIAS_SHARE) was therefore read off the test columns of earlier searches (RESULTS.md says so); a run on
searches that took no part in that choice says whether it holds. The trim (SEASONAL_BIAS_TRIM, a tenth of the
days at each end) was set before it was measured; unlike the mean, it lowers the validation MAE too.

Usage:
  python benchmarks/seasonal_bias.py LABEL=RUN [LABEL=RUN ...] [--data hour.csv] [--days 14,21,28,42,56]
                                     [--shares 0.5,0.75,1] [--trims 0,0.05,0.1,0.15,0.25]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from _common import DEFAULT_CSV, record  # this folder; rnn_core and search come from the installed package
import numpy as np  # noqa: E402

from rnn_core.postprocess import SEASONAL_BIAS_DAYS, SEASONAL_BIAS_SHARE, SEASONAL_BIAS_TRIM  # noqa: E402
from rnn_core.data import load_frame  # noqa: E402
from rnn_core.forecaster import PostProcessed, load_model, split_targets  # noqa: E402
from rnn_core.metrics import mae, rmse  # noqa: E402
from rnn_core.postprocess import Calibration, SeasonalBias, Step, trimmed_days  # noqa: E402

log = logging.getLogger("seasonal_bias")


def chain_with(shipped: PostProcessed, bias: SeasonalBias | None) -> tuple[Step, ...]:
    """The shipped point chain with its same-hour bias step replaced by ``bias`` (None: left out); a chain
    from before the step gets it right after its calibration."""
    rest = [s for s in shipped.point_steps if not isinstance(s, SeasonalBias)]
    if bias is None:
        return tuple(rest)
    at = next((i + 1 for i, s in enumerate(rest) if isinstance(s, Calibration)), 0)
    return (*rest[:at], bias, *rest[at:])


def scores(shipped: PostProcessed, frame, grid: list[SeasonalBias | None]) -> dict[str, list[tuple[float, float]]]:
    """{split: [(MAE, RMSE) of step 1 per chain of the grid]}: [N, H] forecasts of the split's origins."""
    out: dict[str, list[tuple[float, float]]] = {}
    for split in ("val", "test"):
        origins, y = split_targets(frame, shipped.data_config, split)  # [N], [N, H]
        out[split] = []
        for bias in grid:
            pred = shipped.with_steps(chain_with(shipped, bias)).forecast(frame, origins)  # [N, H]
            out[split].append((mae(pred[:, :1], y[:, :1]), rmse(pred[:, :1], y[:, :1])))
    return out


DEFAULT = SeasonalBias(24, SEASONAL_BIAS_DAYS, SEASONAL_BIAS_SHARE, SEASONAL_BIAS_TRIM)


def the_grid(days: list[int], shares: list[float], trims: list[float]) -> list[SeasonalBias | None]:
    """Without the step, the default, its plain mean (trim 0), the other trims, then the span x share grid at the
    default trim."""
    d0, a0, t0 = DEFAULT.periods, DEFAULT.share, DEFAULT.trim
    return [None, DEFAULT, SeasonalBias(24, d0, a0)] + [SeasonalBias(24, d0, a0, t) for t in trims if t not in (t0, 0)] + [
        SeasonalBias(24, d, a, t0) for d in days for a in shares if (d, a) != (d0, a0)]


def per_run(runs: list[str], frame, grid: list[SeasonalBias | None]) -> tuple[list[str], dict[str, np.ndarray]]:
    """The per-run table (without the step, plain mean, trimmed) and, per split, the mean over the runs of each
    chain's MAE relative to the chain without the step [len(grid)]."""
    table = [("| period (run) | validation MAE / RMSE without the step | plain mean | trimmed (ships) | test MAE / RMSE "
              "without the step | plain mean | **trimmed (ships)** | test MAE: trimmed vs plain |"), "|" + "---|" * 8]
    rel = {"val": np.zeros(len(grid)), "test": np.zeros(len(grid))}
    for spec in runs:
        label, _, run = spec.partition("=")
        got = scores(load_model(Path(run) / "ensemble.pt"), frame, grid)
        for split in rel:
            rel[split] += np.array([m for m, _ in got[split]]) / got[split][0][0] / len(runs)
        (v0, v1, v2), (t0, t1, t2) = got["val"][:3], got["test"][:3]
        table.append(f"| {label} ({Path(run).name}) | {v0[0]:.2f} / {v0[1]:.2f} | {v2[0]:.2f} / {v2[1]:.2f} | "
                     f"{v1[0]:.2f} / {v1[1]:.2f} | {t0[0]:.2f} / {t0[1]:.2f} | {t2[0]:.2f} / {t2[1]:.2f} | "
                     f"**{t1[0]:.2f} / {t1[1]:.2f}** | {100 * (t1[0] / t2[0] - 1):+.1f} % |")
        log.info("%s done", label)
    return table, rel


def _cell(rel: dict[str, np.ndarray], i: int, bold: bool) -> str:
    mark = "**" if bold else ""
    return f"{mark}{100 * (rel['val'][i] - 1):+.1f} % / {100 * (rel['test'][i] - 1):+.1f} %{mark}"


def settings_tables(grid: list[SeasonalBias | None], rel: dict[str, np.ndarray], days: list[int],
                    shares: list[float]) -> tuple[list[str], list[str]]:
    """The trims at the default span and share; the span x share grid at the default trim."""
    at_trim = {b.trim: i for i, b in enumerate(grid) if b and (b.periods, b.share) == (DEFAULT.periods, DEFAULT.share)}
    trims = ["| trim (days cut at each end of 28) | validation / test MAE against the chain without the step |", "|---|---|"]
    trims += [f"| {t:g} ({trimmed_days(t, DEFAULT.periods)}) | {_cell(rel, at_trim[t], t == DEFAULT.trim)} |"
              for t in sorted(at_trim)]
    cells = {(b.periods, b.share): i for i, b in enumerate(grid) if b and b.trim == DEFAULT.trim}
    sweep = ["| days \\ share | " + " | ".join(f"{a:g}" for a in shares) + " |", "|---|" + "---|" * len(shares)]
    for d in days:
        row = [_cell(rel, cells[(d, a)], (d, a) == (DEFAULT.periods, DEFAULT.share)) for a in shares]
        sweep.append(f"| {d} | " + " | ".join(row) + " |")
    return trims, sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=RUN", help="a label and an experiment path holding ensemble.pt")
    ap.add_argument("--data", default=str(DEFAULT_CSV))
    ap.add_argument("--days", default="14,21,28,42,56")
    ap.add_argument("--shares", default="0.5,0.75,1")
    ap.add_argument("--trims", default="0,0.05,0.1,0.15,0.25")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    frame, *_ = load_frame(args.data)
    days = [int(d) for d in args.days.split(",")]
    shares = [float(a) for a in args.shares.split(",")]
    grid = the_grid(days, shares, [float(t) for t in args.trims.split(",")])
    table, rel = per_run(args.runs, frame, grid)
    trims, sweep = settings_tables(grid, rel, days, shares)
    body = ("Step-1 MAE / RMSE, bikes per hour, of each run's ensemble (its own file), with the same-hour bias step as "
            f"it ships now (trim {DEFAULT.trim:g}), with the step's plain mean (trim 0: files written before the trim) "
            "and with the step left out; the other steps as in the file.\n\n" + "\n".join(table)
            + "\n\nThe trim, at the default span and share: the mean over these runs of the MAE relative to the chain "
            "without the step, validation / test (in bold: the default).\n\n" + "\n".join(trims)
            + f"\n\nThe span and share, at trim {DEFAULT.trim:g}: the same means (in bold: the default, "
            f"{DEFAULT.periods} days, share {DEFAULT.share:g}).\n\n" + "\n".join(sweep) + "\n")
    record("The same-hour bias step: what it buys and how it was set", body)


if __name__ == "__main__":
    main()
