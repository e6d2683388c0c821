"""Forecast quality of the `default` preset: run the search on a time budget (or read a finished run), then
the best model's test error (2012-11-01 to 2012-12-31, horizon 1) against the naive baselines.

Usage (inside a private network namespace):
  unshare -rn sh -c 'ip link set lo up && exec python benchmarks/forecast_quality.py [--minutes 55]'
  python benchmarks/forecast_quality.py --run runs/quality        # only evaluate and record a finished run
Goal: test MAE <= 21 and RMSE <= 35 bikes/hour within 60 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_CSV, RESULTS, record  # noqa: E402
from rnn_core import plot  # noqa: E402
from rnn_core.metrics import evaluate_model  # noqa: E402
from search.results import best_trial  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_CSV))
    ap.add_argument("--run", help="an existing experiment to evaluate instead of running the search")
    ap.add_argument("--minutes", type=float, default=55.0, help="search time budget")
    ap.add_argument("--storage", default="runs")
    ap.add_argument("--max-epochs", type=int, default=20, help="epochs per trial (ASHA's max_t; the cosine schedule's length)")
    ap.add_argument("--grace-period", type=int, default=3, help="ASHA: epochs before a trial may be stopped")
    ap.add_argument("--reduction-factor", type=float, default=3, help="ASHA: 1/N of the trials go on at each rung")
    args = ap.parse_args()
    wall = None
    if args.run:
        path = args.run
    else:
        from search.tuner import SearchOptions, run_search

        opts = SearchOptions(preset="default", max_epochs=args.max_epochs, grace_period=args.grace_period,
                             reduction_factor=args.reduction_factor, storage=args.storage,
                             name=time.strftime("quality-%Y%m%d-%H%M%S"), data_path=args.data,
                             time_budget_s=args.minutes * 60, progress_interval_s=120)
        t0 = time.time()
        _, path = run_search(opts)
        wall = time.time() - t0
    meta = json.loads((Path(path) / "rnn_search.json").read_text()) if (Path(path) / "rnn_search.json").is_file() else {}
    best, summaries, path = best_trial(path)
    ev = evaluate_model(Path(best.checkpoint) / "model.pt", args.data)
    te = ev.data["test"]
    m_mae, m_rmse, base = ev.mae, ev.rmse, ev.baselines
    png = RESULTS.with_name("quality_test_period.png")
    plot.plot_test(plot.Series("test", te.target_time[:, 0], ev.prediction[:, 0], ev.target[:, 0]),
                   f"best of the default preset ({Path(path).name}, trial {best.trial_id})", png)
    rows = [f"| best model of the search | **{m_mae:.2f}** | **{m_rmse:.2f}** |"]
    rows += [f"| {k} | {v['mae']:.2f} | {v['rmse']:.2f} |" for k, v in base.items()]
    rows += ["| gradient boosting on lagged counts (issue's reference) | ~24 | ~37 |",
             "| hand-run GRU, cosine LR, clipping (issue's reference) | ~24 | ~38 |"]
    met = m_mae <= 21 and m_rmse <= 35
    stopped = sum(1 for s in summaries if s.stop_reason == "ASHA")
    body = (
        f"Search: preset `default`, {len(summaries)} trials ({stopped} stopped by ASHA), metric "
        f"`{best.metric}`, at most {meta.get('max_epochs', args.max_epochs)} epochs per trial, ASHA grace "
        f"{args.grace_period} / reduction {args.reduction_factor:g}, time budget "
        f"{args.minutes:g} min" + (f" (wall {wall / 60:.1f} min)" if wall else "") + f", 2 trials at a time on 2 cores; "
        f"experiment `{Path(path).name}`.\n\n"
        f"Test split 2012-11-01 .. 2012-12-31, horizon 1, {len(te):,} hours (bikes per hour):\n\n"
        "| model | test MAE | test RMSE |\n|---|---|---|\n" + "\n".join(rows) +
        f"\n\nGoal MAE <= 21 and RMSE <= 35: **{'met' if met else 'NOT met'}**.\n\n"
        f"Winning configuration (trial {best.trial_id}, best epoch {best.best_epoch} of {best.epochs}, val MAE "
        f"{best.best_val_mae:.2f}): `{json.dumps(best.config, default=str)}`\n\n"
        f"Test plot: `benchmarks/{png.name}`.\n"
    )
    record("Forecast quality: the default preset on a 2-core CPU", body)


if __name__ == "__main__":
    main()
