"""What the ensemble's choices are worth on the test period of finished searches: greedy selection by validation
MAE vs RMSE, each without the residual correction, with an AR(1) one (lag 1 only) and with the default lags
(rnn_core.config.CORRECTION_LAGS); the chain's other steps (rolling level, same-hour bias, floor) always on.

Each variant is chosen among the same trials' best checkpoints by the product's own code
(rnn_core.ensemble.choose_ensemble); the ablations are prefixes and variants of its post-processing chain.
Nothing in the experiments is changed.

Usage:
  python benchmarks/ensemble_variants.py RUN [RUN ...] [--data hour.csv] [--size 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from _common import DEFAULT_CSV, record  # this folder; rnn_core and search come from the installed package

from rnn_core.config import ENSEMBLE_SIZE  # noqa: E402
from rnn_core.postprocess import CORRECTION_LAGS, CORRECTION_WINDOW, LEVEL_WINDOW
from rnn_core.data import load_frame  # noqa: E402
from rnn_core.ensemble import choose_ensemble  # noqa: E402
from rnn_core.forecaster import split_targets  # noqa: E402
from rnn_core.metrics import mae, rmse  # noqa: E402
from rnn_core.postprocess import ResidualCorrection  # noqa: E402
from search.results import best_trial, calibration_loss, candidate_bundles  # noqa: E402

SELECTIONS = ("mae", "rmse")


def variants(run: str, frame, size: int) -> tuple[str, list[tuple[str, float, float, float, float]]]:
    """[(selection, MAE, RMSE, all-step MAE without the correction, the same with lag 1, with the default lags)]
    on the run's test period (MAE and RMSE of step 1)."""
    best, summaries, path = best_trial(run)
    candidates = [s for s in summaries if s.checkpoint]
    bundles = candidate_bundles(path, candidates)
    out, period = [], ""
    for selection in SELECTIONS:
        shipped = choose_ensemble(bundles, frame, size, selection, calibration_loss(best.metric)).forecaster
        origins, y = split_targets(frame, shipped.data_config, "test")  # [N], [N, H]
        times = frame.index[origins + 1]
        period = f"{str(times[0])[:10]} .. {str(times[-1])[:10]}"
        chain = shipped.point_steps
        without = tuple(s for s in chain if not isinstance(s, ResidualCorrection))
        ar1 = tuple(dataclasses.replace(s, lags=(1,)) if isinstance(s, ResidualCorrection) else s for s in chain)
        row = [selection]
        # ablations are chains: the shipped one without its residual correction; with an AR(1) one; as shipped
        for steps in (without, ar1, chain):
            pred = shipped.with_steps(steps).forecast(frame, origins)  # [N, H]
            row += [mae(pred[:, :1], y[:, :1]), rmse(pred[:, :1], y[:, :1]), mae(pred, y)]
        out.append(tuple(row))
        logging.info("%s: selection by %s done", Path(path).name, selection)
    return f"`{Path(path).name}` ({len(candidates)} trials, test {period})", out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="experiment paths")
    ap.add_argument("--data", default=str(DEFAULT_CSV))
    ap.add_argument("--size", type=int, default=ENSEMBLE_SIZE)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    frame, *_ = load_frame(args.data)
    lags = ", ".join(map(str, CORRECTION_LAGS))
    lines = ["| experiment | selection by | no correction | correction, lag 1 | correction, lags " + lags + " |",
             "|---|---|---|---|---|"]
    wins = {"mae": 0, "rmse": 0}
    for run in args.runs:
        name, rows = variants(run, frame, args.size)
        for sel, *v in rows:
            cells = [f"{v[i]:.2f} / {v[i + 1]:.2f} ({v[i + 2]:.2f})" for i in (0, 3, 6)]
            lines.append(f"| {name} | {sel.upper()} | {cells[0]} | {cells[1]} | **{cells[2]}** |")
        (_, *m), (_, *r) = rows
        wins["rmse" if r[6] < m[6] else "mae"] += 1
    body = (f"Test MAE / RMSE of step 1 (MAE over all steps), bikes per hour; {args.size} greedy picks; the rolling level "
            f"({LEVEL_WINDOW // 24} days) and the chain's other steps in every row, the residual correction fitted on {CORRECTION_WINDOW // 24} days.\n\n"
            + "\n".join(lines) +
            f"\n\nLower test MAE (step 1, default correction): selection by RMSE on {wins['rmse']} of {len(args.runs)} "
            f"experiments, by MAE on {wins['mae']}.\n")
    record("Ensemble variants on finished searches: selection metric x residual correction", body)


if __name__ == "__main__":
    main()
