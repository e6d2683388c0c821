"""Forecast quality of the `default` preset: run the search on a time budget (or read a finished run), then
the best model's test error (horizon 1) against the naive baselines and the gradient-boosting reference
(benchmarks/gbm_reference.py; needs scikit-learn), on the default test period or any other (--split).

Usage (inside a private network namespace):
  unshare -rn sh -c 'ip link set lo up && exec python benchmarks/forecast_quality.py [--minutes 55] [--split V,T,E]'
  python benchmarks/forecast_quality.py --run runs/quality        # only evaluate and record a finished run
  python benchmarks/forecast_quality.py --references-only --split 2012-05-01,2012-07-01,2012-08-31
Goal (issue 14): test MAE <= 21 and RMSE <= 34 bikes/hour on November-December 2012 within 60 minutes on a
2-core CPU, and better than the gradient-boosting reference on every period.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_CSV, RESULTS, record  # noqa: E402
import numpy as np  # noqa: E402

from rnn_core import plot  # noqa: E402
from rnn_core.config import DataConfig, split_kwargs  # noqa: E402
from rnn_core.data import build, load_frame  # noqa: E402
from rnn_core.metrics import baseline_metrics, evaluate_model  # noqa: E402
from search.results import best_trial  # noqa: E402


def gbm_rows(frame, test_origins) -> list[str]:
    """The gradient-boosting reference (benchmarks/gbm_reference.py), as issue 14 states it (sklearn's default
    early stopping: seeds differ) and without early stopping (1500 iterations, the stronger of the two)."""
    import benchmarks.gbm_reference as gbm

    rows = []
    for label, extra in (("as stated (early stopping on: sklearn's default), mean of seeds 0-2", {}),
                         ("without early stopping (1500 iterations)", {"early_stopping": False})):
        r = gbm.reference(frame, test_origins, params=dict(gbm.PARAMS, **extra))
        rows.append(f"| gradient boosting reference, {label} | {r['mae']:.2f} | {r['rmse']:.2f} | {r['fit_s']:.0f} s a fit |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_CSV))
    ap.add_argument("--split", default="default",
                    help="the period: default (test 2012-11/12), or VAL_START,TEST_START[,TEST_END] as rnn-search takes it")
    ap.add_argument("--run", help="an existing experiment to evaluate instead of running the search")
    ap.add_argument("--references-only", action="store_true",
                    help="only the naive baselines and the gradient-boosting reference on the split's test targets")
    ap.add_argument("--minutes", type=float, default=55.0, help="search time budget")
    ap.add_argument("--storage", default="runs")
    ap.add_argument("--max-epochs", type=int, default=20, help="epochs per trial (ASHA's max_t; the cosine schedule's length)")
    ap.add_argument("--grace-period", type=int, default=3, help="ASHA: epochs before a trial may be stopped")
    ap.add_argument("--reduction-factor", type=float, default=3, help="ASHA: 1/N of the trials go on at each rung")
    args = ap.parse_args()
    data_cfg = DataConfig(**split_kwargs(args.split))
    frame, *_ = load_frame(args.data)
    if args.references_only:
        te = build(frame, data_cfg)["test"]
        period = f"{str(te.target_time[0, 0])[:10]} .. {str(te.target_time[-1, -1])[:10]}"
        rows = [f"| {k} | {v['mae']:.2f} | {v['rmse']:.2f} | |" for k, v in baseline_metrics(frame["cnt"].to_numpy(np.float32), te).items()]
        rows += gbm_rows(frame, te.origin)
        record(f"References on the test period {period} (horizon 1)",
               f"Split `{args.split}`, {len(te):,} test hours, bikes per hour:\n\n"
               "| model | test MAE | test RMSE | cost |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
        return
    wall = None
    if args.run:
        path = args.run
    else:
        from search.tuner import SearchOptions, run_search

        opts = SearchOptions(preset="default", max_epochs=args.max_epochs, grace_period=args.grace_period,
                             reduction_factor=args.reduction_factor, storage=args.storage, data=data_cfg,
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
    period = f"{str(te.target_time[0, 0])[:10]} .. {str(te.target_time[-1, -1])[:10]}"
    png = RESULTS.with_name("quality_test_period.png")
    plot.plot_test(plot.Series("test", te.target_time[:, 0], ev.prediction[:, 0], ev.target[:, 0]),
                   f"best of the default preset ({Path(path).name}, trial {best.trial_id})", png)
    rows = [f"| best model of the search | **{m_mae:.2f}** | **{m_rmse:.2f}** | |"]
    rows += [f"| {k} | {v['mae']:.2f} | {v['rmse']:.2f} | |" for k, v in base.items()]
    rows += gbm_rows(frame, te.origin)
    met = m_mae <= 21 and m_rmse <= 34
    stopped = sum(1 for s in summaries if s.stop_reason == "ASHA")
    body = (
        f"Search: preset `default`, {len(summaries)} trials ({stopped} stopped by ASHA), metric "
        f"`{best.metric}`, at most {meta.get('max_epochs', args.max_epochs)} epochs per trial, ASHA grace "
        f"{args.grace_period} / reduction {args.reduction_factor:g}, time budget "
        f"{args.minutes:g} min" + (f" (wall {wall / 60:.1f} min)" if wall else "") + f", 2 trials at a time on 2 cores; "
        f"experiment `{Path(path).name}`.\n\n"
        f"Test period {period} (split `{args.split}`), horizon 1, {len(te):,} hours (bikes per hour):\n\n"
        "| model | test MAE | test RMSE | cost |\n|---|---|---|---|\n" + "\n".join(rows) +
        f"\n\nGoal MAE <= 21 and RMSE <= 34 (November-December): **{'met' if met else 'NOT met'}**.\n\n"
        f"Winning configuration (trial {best.trial_id}, best epoch {best.best_epoch} of {best.epochs}, val MAE "
        f"{best.best_val_mae:.2f}): `{json.dumps(best.config, default=str)}`\n\n"
        f"Test plot: `benchmarks/{png.name}`.\n"
    )
    record(f"Forecast quality: the default preset on a 2-core CPU, test {period}", body)


if __name__ == "__main__":
    main()
