"""Interval coverage on the test period: residuals from the validation months only vs rolling conformal over
the weeks before each origin, per scale, for any model or ensemble files (each on its own stored split).

Usage:
  python benchmarks/interval_coverage.py MODEL.pt [MODEL.pt ...] [--data hour.csv]
The product's default (rnn_core.intervals): rolling, 28 days, sqrt scale.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import DEFAULT_CSV, record  # this folder; rnn_core and search come from the installed package


from rnn_core.data import build, load_frame  # noqa: E402
from rnn_core.forecaster import load_model  # noqa: E402
from rnn_core.intervals import LEVELS, SCALES, WINDOW, conformal, coverage  # noqa: E402

WINDOWS_DAYS = (0, 14, 28, 56)  # 0: the validation offsets everywhere


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", default=str(DEFAULT_CSV))
    args = ap.parse_args()
    frame, source, n_filled, raw_rows = load_frame(args.data)
    header = "| model | test period | H | intervals | scale | " + " | ".join(f"{a:.0%}: coverage / width" for a in LEVELS) + " |"
    rows = [header, "|" + "---|" * (5 + len(LEVELS))]
    for f in args.models:
        lm = load_model(f)
        data = build(frame, lm.data_config, source=source, n_filled=n_filled, raw_rows=raw_rows)
        va, te = data["val"], data["test"]
        val_pred = lm.forecast(frame, va.origin)  # [N, H]: the shipped point forecasts the intervals are fitted on
        period = f"{str(te.target_time[0, 0])[:10]} .. {str(te.target_time[-1, -1])[:10]}"
        name = f"{Path(f).parent.name}/{Path(f).name}"
        for days in WINDOWS_DAYS:
            for scale in SCALES:
                iv = conformal(val_pred, va.y_raw.numpy(), LEVELS, scale=scale, window=days * 24)
                pred, bands = lm.with_intervals(iv).forecast_with_bands(frame, te.origin)  # the chain, this interval step last
                cells = [coverage(lo, hi, te.y_raw.numpy()) for lo, hi in bands.values()]
                how = f"rolling, {days} days" if days else "validation months only"
                default = " **(default)**" if days * 24 == WINDOW and scale == SCALES[0] else ""
                rows.append(f"| {name} | {period} | {pred.shape[1]} | {how}{default} | {scale} | "
                            + " | ".join(f"{100 * c:.1f}% / {w:.0f}" for c, w in cells) + " |")
                print(rows[-1], flush=True)
    record("Interval coverage: validation residuals only vs rolling conformal",
           "Each model's own stored test period (bikes per hour; width = mean upper - lower). Rolling: at each origin "
           "the residuals of the N days of origins before it whose targets are known there; the validation months' "
           "offsets where less history exists.\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
