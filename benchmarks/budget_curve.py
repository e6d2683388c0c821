"""What each minute of search buys: for finished searches, the test error of the ensemble the product would
have shipped had the search stopped after T minutes, built with the product's own selection and
post-processing (rnn_core.ensemble.choose_from_forecasts, as `rnn-search ensemble`) from the trials finished by
then; and where the knee rule (search.knee.KneeRule) would have ended each search, for several settings.

Usage (the searches first, e.g. `rnn-search tune --preset default --time-budget 40 --stop-patience 0 --name nd40
--storage runs`, inside a private network namespace):
  python benchmarks/budget_curve.py LABEL=RUN [LABEL=RUN ...] [--minutes 1,2,5,10,20,40,60]
Each run's curve is cached in RUN/budget_curve.json (computed again with --again) and kept, as figures only, in
benchmarks/budget_curves.json under its label (a label given again replaces its curve; --drop LABEL removes one):
the table and the plot (benchmarks/budget_curve.png) cover every curve kept there, so a section survives the
deletion of the runs it was measured on. With RNN_SEARCH_BENCH_NO_RECORD set, nothing is written but the caches.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _common import RESULTS, record, revision  # this folder; rnn_core and search come from the installed package
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rnn_core.config import ENSEMBLE_SIZE  # noqa: E402
from rnn_core.ensemble import ENSEMBLE_SELECTION
from rnn_core.ensemble import choose_from_forecasts, validation_forecasts  # noqa: E402
from rnn_core.forecaster import member_from_bundle, split_targets  # noqa: E402
from rnn_core.metrics import mae, rmse  # noqa: E402
from search.knee import KneeRule  # noqa: E402
from search.results import calibration_loss, candidate_bundles, load_experiment, run_frame, summarize  # noqa: E402

MINUTES = (1, 2, 5, 10, 20, 40, 60)
RULES = (KneeRule(10, 0.01), KneeRule(20, 0.01), KneeRule(20, 0.005), KneeRule(30, 0.005), KneeRule(40, 0.01))


def finish_times(path: str) -> tuple[dict[str, float], float]:
    """Minutes from the search's first trial start to each trial's last report; and the search's length."""
    ea, _, _ = load_experiment(path)
    dfs = [d for d in ea.trial_dataframes.values() if len(d)]
    start = min(float(d["started_at"].min()) for d in dfs)
    ends = {str(d["trial_id"].iloc[-1]): (float(d["started_at"].iloc[-1] + d["elapsed_s"].iloc[-1]) - start) / 60 for d in dfs}
    return ends, max(ends.values())


class Run:
    """A finished search's candidates (best first), their validation forecasts, and the ensemble of any subset."""

    def __init__(self, path: str) -> None:
        ea, grid, self.path = load_experiment(path)
        summaries = [s for s in summarize(ea, grid, self.path) if s.checkpoint]
        self.metric = summaries[0].metric
        self.ends, self.length = finish_times(self.path)
        self.frame = run_frame(self.path)
        bundles = candidate_bundles(self.path, summaries)
        self.models = {n: member_from_bundle(b, n) for n, b in bundles.items()}
        self.F = validation_forecasts(self.models, self.frame)  # [M, N, H]
        self.names = list(self.models)
        self.test_origins, self.test_target = split_targets(self.frame, next(iter(self.models.values())).data_config, "test")

    def by(self, minutes: float) -> list[int]:
        return [i for i, n in enumerate(self.names) if self.ends.get(n, np.inf) <= minutes]

    def ensemble(self, idx: list[int]) -> dict[str, float]:
        """The shipped ensemble of the candidates ``idx`` (in best-first order): its validation and test figures."""
        models = {self.names[i]: self.models[self.names[i]] for i in idx}
        choice = choose_from_forecasts(models, self.F[idx], self.frame, ENSEMBLE_SIZE, ENSEMBLE_SELECTION,
                                       calibration_loss(self.metric))
        pred = choice.forecaster.forecast(self.frame, self.test_origins)  # [N, H]
        return {"trials": len(idx), "val_mae": choice.val_mae, "test_mae": mae(pred, self.test_target),
                "test_rmse": rmse(pred, self.test_target), "members": len(choice.members)}


def knee_checks(run: Run, every: int = 10) -> list[dict[str, float]]:
    """The ensemble after every ``every`` finished trials, in the order they finished (what search.knee sees)."""
    order = sorted(range(len(run.names)), key=lambda i: run.ends.get(run.names[i], np.inf))
    out = []
    for n in range(every, len(order) + 1, every):
        first = sorted(order[:n])  # best-first order among those finished
        out.append(dict(run.ensemble(first), minutes=run.ends[run.names[order[n - 1]]]))
    return out


def last_gain(rule: KneeRule, checks: list[dict]) -> float:
    """The minute of the last check that gained more than the rule's margin (its clock's last restart)."""
    since = rule.last_gains([(c["trials"], c["val_mae"]) for c in checks])[-1]
    return next((c["minutes"] for c in checks if c["trials"] == since), checks[0]["minutes"])


def knees(checks: list[dict]) -> list[dict]:
    """Where each of RULES ends a search with these checks: from the checks alone, so that every kept curve is
    judged by the rule as it is now, whatever rule was in force when it was measured."""
    out = []
    for rule in RULES:
        i = rule.stop_at([(c["trials"], c["val_mae"]) for c in checks])
        out.append({"rule": [rule.patience, rule.margin], "best_min": last_gain(rule, checks[:i + 1]) if i is not None else None,
                    **(checks[i] if i is not None else {"trials": None})})
    return out


def curve(path: str, minutes: tuple[float, ...]) -> dict:
    run = Run(path)
    points = [dict(run.ensemble(run.by(t)), minutes=t) for t in minutes if t <= run.length + 0.5 and run.by(t)]
    checks = knee_checks(run)
    return {"length_min": run.length, "trials": len(run.names), "points": points, "checks": checks, "knees": knees(checks)}


def cached(path: str, minutes: tuple[float, ...], again: bool) -> dict:
    file = Path(path) / "budget_curve.json"
    if file.is_file() and not again:
        data = json.loads(file.read_text())
        if data.get("minutes") == list(minutes):
            return data
    data = dict(curve(path, minutes), minutes=list(minutes))
    file.write_text(json.dumps(data, indent=1))
    return data


def plot(curves: dict[str, dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, c in curves.items():
        ch = c["checks"]
        first = ch[0]["test_mae"] if ch else c["points"][-1]["test_mae"]
        ax.plot([p["minutes"] for p in ch], [100 * p["test_mae"] / first for p in ch], marker=".", label=label)
    ax.set_xlabel("minutes of search (2 CPU cores)")
    ax.set_ylabel("test MAE of the shipped ensemble\n(% of its value after 10 trials)")
    ax.set_title("What each minute of search buys (ensemble every 10 finished trials)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def table(curves: dict[str, dict], minutes: tuple[float, ...]) -> str:
    head = "| period (run) | trials | " + " | ".join(f"{t:g} min" for t in minutes) + " | measured |\n"
    head += "|---|---|" + "---|" * (len(minutes) + 1) + "\n"
    rows = []
    for label, c in curves.items():
        at = {p["minutes"]: p for p in c["points"]}
        cells = [f"{at[t]['test_mae']:.2f} / {at[t]['test_rmse']:.2f} ({at[t]['trials']})" if t in at else "-" for t in minutes]
        run = f" ({c['run']})" if c.get("run") else ""
        rows.append(f"| {label}{run} | {c['trials']} in {c['length_min']:.0f} min | " + " | ".join(cells)
                    + f" | {c.get('measured', '')} |")
    return head + "\n".join(rows)


def knee_table(curves: dict[str, dict]) -> str:
    head = "| period | " + " | ".join(f"patience {r.patience}, margin {100 * r.margin:g}%" for r in RULES) + " | full run |\n"
    head += "|---|" + "---|" * (len(RULES) + 1) + "\n"
    rows = []
    for label, c in curves.items():
        cells = [f"{k['minutes']:.1f} min ({k['best_min']:.1f}), {k['trials']} trials: {k['test_mae']:.2f}" if k.get("trials")
                 else "does not stop"
                 for k in c["knees"]]
        last = c["checks"][-1] if c["checks"] else {}
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {c['length_min']:.1f} min, {c['trials']} trials: "
                    f"{last.get('test_mae', float('nan')):.2f} |")
    return head + "\n".join(rows)


def keep(store: Path, new: dict[str, dict], drop: list[str]) -> dict[str, dict]:
    """The curves kept in ``store`` with ``new`` (label -> curve) replacing theirs and ``drop`` removed; written
    then renamed, unless RNN_SEARCH_BENCH_NO_RECORD is set."""
    kept = json.loads(store.read_text()) if store.is_file() else {}
    for label in drop:
        kept.pop(label, None)
    kept.update(new)
    if not os.environ.get("RNN_SEARCH_BENCH_NO_RECORD"):
        tmp = store.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(kept, indent=1) + "\n")
        tmp.replace(store)
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="LABEL=RUN: a finished search's folder, with its row's label")
    ap.add_argument("--minutes", default=",".join(map(str, MINUTES)))
    ap.add_argument("--again", action="store_true", help="compute the cached curves again")
    ap.add_argument("--drop", action="append", default=[], metavar="LABEL", help="remove a kept curve")
    args = ap.parse_args()
    minutes = tuple(float(m) for m in args.minutes.split(","))
    new = {}
    for spec in args.runs:
        label, _, path = spec.rpartition("=")
        new[label or Path(path).name] = dict(cached(path, minutes, args.again), run=Path(path).name,
                                             measured=f"{time.strftime('%Y-%m-%d', time.gmtime())}, commit {revision()}")
    curves = {label: dict(c, knees=knees(c["checks"])) for label, c in
              keep(RESULTS.with_name("budget_curves.json"), new, args.drop).items()}
    png = RESULTS.with_name("budget_curve.png")
    if not os.environ.get("RNN_SEARCH_BENCH_NO_RECORD"):
        plot(curves, png)
    body = ("Test MAE / RMSE (bikes per hour, horizon 1) of the ensemble the default preset would ship had its search "
            "stopped after T minutes: the product's selection and post-processing over the trials finished by then "
            "(their count in brackets); 2 trials at a time on 2 CPU cores. Every curve kept in "
            "`benchmarks/budget_curves.json`, with the run and the commit it was measured on.\n\n"
            + table(curves, minutes) +
            "\n\nWhere the knee rule (search.knee: the ensemble chosen again every 10 finished trials; the search ends "
            "once its validation MAE has not fallen by the margin below its value at the last such gain for the "
            "patience's finished trials, small gains adding up; replayed from each curve's checks) would have "
            "ended each search (in brackets: the minute of its last gain above the margin), and the shipped test MAE "
            "then:\n\n" + knee_table(curves) +
            f"\n\nPlot: `benchmarks/{png.name}` (test MAE after every 10 finished trials, relative to the first).\n")
    record("Budget curves: what each minute of the default preset's search buys", body)


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    main()
