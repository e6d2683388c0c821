"""What else might lift a knee ensemble, measured on finished searches without training anything: other ways to
choose its members from the same trials, the pools of two searches put together (what a second search with a new
TPE path after the knee would ship), and a same-hour bias step that reads only days of the same kind.

Each variant differs from what ships (rnn_core.ensemble.choose_from_forecasts over the trials finished by the
knee, then the standard chain) in one thing:
- bagged: greedy selection repeated on 25 random halves of the validation days, the weights averaged (Caruana et
  al. 2004, section 5: less fitted to the validation hours);
- post-processed: greedy selection on each candidate's own post-processed validation forecasts (the chain fitted
  on it alone) instead of its raw ones;
- same-kind days: the same-hour bias step averages only the days of the 28 before that are of the target hour's
  kind (working day or not), trimmed as it ships;
- two pools: the candidates of two searches together, chosen as one pool.

Usage (the runs: finished searches of the default preset; RUN:N takes its first N finished trials, as the knee
rule replayed on a longer search would):
  python benchmarks/knee_variants.py LABEL=RUN[:N] [LABEL=RUN[:N] ...] [--pairs]
"""

from __future__ import annotations

import argparse
import itertools
import logging

import numpy as np

# _common and budget_curve: this folder; rnn_core and search: the installed package
from _common import record
from budget_curve import Run

from rnn_core import postprocess as pp
from rnn_core.config import ENSEMBLE_SIZE
from rnn_core.ensemble import ENSEMBLE_SELECTION
from rnn_core.data import history_span, known_targets, target_column
from rnn_core.ensemble import choose_from_forecasts, select
from rnn_core.forecaster import WeightedMean, fit_chain, split_targets
from rnn_core.metrics import mae, rmse
from search.results import calibration_loss

BAGS, BAG_SHARE = 25, 0.5
log = logging.getLogger("knee_variants")
Figures = tuple[float, float, float]  # validation MAE of the shipped chain, test MAE, test RMSE


class Pool:
    """A search's candidates finished by its N-th trial (best first) and their validation forecasts."""

    def __init__(self, run: Run, n: int | None) -> None:
        order = sorted(range(len(run.names)), key=lambda i: run.ends.get(run.names[i], np.inf))
        self.run, self.idx = run, sorted(order[:n] if n else order)
        self.loss = calibration_loss(run.metric)
        self.val_origins, self.val_target = split_targets(run.frame, run.models[run.names[0]].data_config, "val")

    def base(self, w: np.ndarray) -> tuple[WeightedMean, np.ndarray]:
        """The weighted mean of the pool's candidates with weights w [M] (zeros dropped) and its validation
        forecasts [N, H]."""
        keep = [k for k in range(len(self.idx)) if w[k] > 0]
        members = tuple(self.run.models[self.run.names[self.idx[k]]] for k in keep)
        ww = w[keep] / w[keep].sum()
        mean = np.tensordot(ww, self.run.F[[self.idx[k] for k in keep]], axes=1)
        return WeightedMean(members, tuple(self.run.names[self.idx[k]] for k in keep), ww), mean

    def figures(self, w: np.ndarray) -> Figures:
        """The shipped chain on the weighted mean of the candidates, weights w [M]."""
        base, mean = self.base(w)
        shipped, val, _ = fit_chain(base, self.run.frame, self.loss, base_val=mean)
        test = shipped.forecast(self.run.frame, self.run.test_origins)  # [N, H]
        return mae(val, self.val_target), mae(test, self.run.test_target), rmse(test, self.run.test_target)


def shipped_weights(pool: Pool) -> np.ndarray:
    return select(pool.run.F[pool.idx], pool.val_target, ENSEMBLE_SIZE, ENSEMBLE_SELECTION)[0]


def bagged_weights(pool: Pool, seed: int = 0) -> np.ndarray:
    """Greedy selection on BAGS random halves of the validation days, the weights averaged: [M]."""
    rng = np.random.default_rng(seed)
    days = pool.val_origins // 24 - pool.val_origins.min() // 24  # [N] each origin's day
    w = np.zeros(len(pool.idx))
    for _ in range(BAGS):
        rows = (rng.random(days.max() + 1) < BAG_SHARE)[days]  # [N]: the origins of the days drawn
        w += select(pool.run.F[pool.idx][:, rows], pool.val_target[rows], ENSEMBLE_SIZE, ENSEMBLE_SELECTION)[0]
    return w / BAGS


def postprocessed_weights(pool: Pool) -> np.ndarray:
    """Greedy selection on each candidate's own post-processed validation forecasts: [M]."""
    P = np.stack([fit_chain(pool.run.models[pool.run.names[i]], pool.run.frame, pool.loss, base_val=pool.run.F[i])[1]
                  for i in pool.idx])  # [M, N, H]
    return select(P, pool.val_target, ENSEMBLE_SIZE, ENSEMBLE_SELECTION)[0]


def same_kind_biases(pred: np.ndarray, target: np.ndarray, hours: np.ndarray, workingday: np.ndarray,
                     step: pp.SeasonalBias) -> np.ndarray:
    """pp.seasonal_biases over only the days of the target hour's kind (working day or not) among the
    ``step.periods`` before: pred and target [S, H] of the consecutive origins ``hours`` [S] -> [S, H]."""
    spread, err = pp._sqrt_errors(pred, target)  # [S, H] each
    q = np.arange(step.period * step.periods, len(pred))  # rows with the whole span before them
    out = np.zeros(pred.shape)
    for k in range(1, pred.shape[1] + 1):
        back = step.period * np.arange(-(-k // step.period), step.periods + 1)  # [D] the days before
        same = workingday[hours[q][:, None] - back + k] == workingday[hours[q] + k][:, None]  # [Nq, D]
        past = np.where(same, err[q[:, None] - back, k - 1], np.nan)  # [Nq, D] the same kind's errors
        out[q, k - 1] = pp.trimmed_means(past, step.trim) * spread[q, k - 1]
    return step.share * out


def same_kind_figures(pool: Pool, w: np.ndarray) -> Figures:
    """The shipped chain with :func:`same_kind_biases` in place of its same-hour bias step."""
    base, mean = pool.base(w)
    shipped, _, _ = fit_chain(base, pool.run.frame, pool.loss, base_val=mean)
    frame, cfg = pool.run.frame, base.data_config
    y = frame[target_column(cfg)].to_numpy(np.float64)
    workingday = frame["workingday"].to_numpy()
    out = []
    for origins, target in ((pool.val_origins, pool.val_target), (pool.run.test_origins, pool.run.test_target)):
        # the chain's own span: consecutive origins from its whole lookback before the first asked one
        span, rows = history_span(origins, base.first_origin, sum(s.lookback for s in shipped.point_steps))
        pred = base.forecast(frame, span)  # [S, H]
        known = known_targets(y, span, cfg.horizon)
        for s in shipped.point_steps:
            pred = pred + same_kind_biases(pred, known, span, workingday, s) if isinstance(s, pp.SeasonalBias) \
                else s.apply(pred, known)
        out.append(pred[rows])
    return mae(out[0], pool.val_target), mae(out[1], pool.run.test_target), rmse(out[1], pool.run.test_target)


def pair_figures(a: Pool, b: Pool) -> Figures:
    """The candidates of two searches as one pool (best first by raw validation MAE), chosen and shipped."""
    named = [(f"{p.run.path}/{p.run.names[i]}", p.run.models[p.run.names[i]], p.run.F[i]) for p in (a, b) for i in p.idx]
    named.sort(key=lambda c: mae(c[2], a.val_target))
    models = {n: m for n, m, _ in named}
    choice = choose_from_forecasts(models, np.stack([f for _, _, f in named]), a.run.frame, ENSEMBLE_SIZE,
                                   ENSEMBLE_SELECTION, a.loss)
    test = choice.forecaster.forecast(a.run.frame, a.run.test_origins)
    return choice.val_mae, mae(test, a.run.test_target), rmse(test, a.run.test_target)


VARIANTS = {"ships": lambda p: p.figures(shipped_weights(p)),
            "bagged": lambda p: p.figures(bagged_weights(p)),
            "post-processed": lambda p: p.figures(postprocessed_weights(p)),
            "same-kind days": lambda p: same_kind_figures(p, shipped_weights(p))}


def cell(f: Figures) -> str:
    return f"{f[0]:.2f} / {f[1]:.2f} / {f[2]:.2f}"


def variant_table(pools: dict[str, Pool]) -> tuple[str, dict[str, list[Figures]]]:
    lines = ["| pool (trials) | " + " | ".join(VARIANTS) + " |", "|---" * (len(VARIANTS) + 1) + "|"]
    figs: dict[str, list[Figures]] = {v: [] for v in VARIANTS}
    for label, pool in pools.items():
        row = []
        for name, fn in VARIANTS.items():
            figs[name].append(fn(pool))
            row.append(cell(figs[name][-1]))
        log.info("%s: %s", label, " | ".join(row))
        lines.append(f"| {label} ({len(pool.idx)}) | " + " | ".join(row) + " |")
    return "\n".join(lines), figs


def pairs_table(pools: dict[str, Pool], alone: list[Figures]) -> str:
    single = dict(zip(pools, alone))
    lines = ["| pools | each alone: test MAE | together: val MAE / test MAE / RMSE |", "|---|---|---|"]
    both, paired = [], set()
    for a, b in itertools.combinations(pools, 2):
        if not np.array_equal(pools[a].run.test_origins, pools[b].run.test_origins):
            continue  # two pools of one test period only
        both.append(pair_figures(pools[a], pools[b]))
        paired |= {a, b}
        lines.append(f"| {a} + {b} | {single[a][1]:.2f}, {single[b][1]:.2f} | {cell(both[-1])} |")
        log.info("%s + %s: %s", a, b, cell(both[-1]))
    lines.append(f"\nMean test MAE of the pools paired: each alone {np.mean([single[k][1] for k in paired]):.2f}, two together "
                 f"{np.mean([f[1] for f in both]):.2f}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=RUN[:N]", help="finished searches (RUN:N: its first N finished trials)")
    ap.add_argument("--pairs", action="store_true", help="also every two pools of one test period together")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pools = {}
    for arg in args.runs:
        label, _, spec = arg.partition("=")
        path, _, n = (spec or label).rpartition(":") if ":" in (spec or label) else ((spec or label), "", "")
        pools[label] = Pool(Run(path), int(n) if n else None)
    table, figs = variant_table(pools)
    body = ("Validation MAE of the shipped chain / test MAE / test RMSE, bikes per hour, horizon 1, of each pool's "
            "ensemble: as it ships, and with one thing changed (the script's header says what).\n\n" + table + "\n")
    for name in list(VARIANTS)[1:]:
        d = [100 * (v[1] / s[1] - 1) for v, s in zip(figs[name], figs["ships"])]
        body += (f"\n- {name}: test MAE {min(d):+.1f} to {max(d):+.1f}% against what ships (mean {np.mean(d):+.1f}%), "
                 f"lower on {sum(x < 0 for x in d)} of {len(d)}.")
    if args.pairs:
        body += "\n\nTwo pools together (what a second search after the knee would add):\n\n" + pairs_table(pools, figs["ships"])
    record("Knee ensembles: other selections, two pools, a same-kind-day bias", body)


if __name__ == "__main__":
    main()
