"""What the `rnn-search` command prints: tables and reports on stdout, in the series' own units and step.

Numbers carry the significant digits their scale needs (:func:`decimals`): errors of a target in GW get four
decimals where the target's units get two. Only search.cli calls these; the work they report is done elsewhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rnn_core.config import DataConfig, form_note
from rnn_core.errors import UserError

#: Significant digits every reported error, width and forecast keeps at least.
DIGITS = 3


def decimals(values: Iterable[float], digits: int = DIGITS) -> int:
    """Decimals that give the smallest non-zero magnitude among ``values`` ``digits`` significant digits (at least
    2, at most 8): 22.92 rentals per hour keeps 2, a 0.0215 GW error 4."""
    mags = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not mags:
        return 2
    return int(min(8, max(2, digits - 1 - math.floor(math.log10(min(mags))))))


def unit(cfg: DataConfig) -> str:
    """What a data config's errors are measured in: its built-in definition's unit, else its target column."""
    from rnn_core.datasets import definition_of

    definition = definition_of(cfg.dataset)
    return definition.unit if definition is not None and definition.unit else cfg.dataset.target


def run_unit(path: str) -> str:
    """What a run's errors are measured in."""
    from search.meta import experiment_meta

    try:
        return unit(DataConfig.from_dict(experiment_meta(path)["data"]))
    except (UserError, ValueError, KeyError, TypeError):
        return "the target's units"


def run_freq(path: str) -> str | None:
    """A run's step (its data config's frequency), for the words of its chain."""
    from search.meta import experiment_meta

    try:
        return DataConfig.from_dict(experiment_meta(path)["data"]).dataset.freq
    except (UserError, ValueError, KeyError, TypeError):
        return None


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def shown(config: dict[str, Any], key: str) -> str:
    """A config value for the table; dropout acts only between layers, so a one-layer trial shows '-'."""
    if key == "dropout" and config.get("num_layers") == 1:
        return "-"
    return _fmt(config.get(key, ""))


def grid(rows: list[list[str]], right: int = 0) -> list[str]:
    """Rows of cells as aligned lines: every column as wide as its widest cell (a long name never slips a
    column); the first ``right`` columns left-aligned, the rest right-aligned (numbers)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i < right else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def trials_table(summaries: list[Any], top: int) -> None:
    keys = sorted({k for s in summaries for k in s.config if k != "seed"})
    d = decimals([v for s in summaries[:top] for v in (s.best_val_mae, s.best_val_rmse)])
    head = ["trial", "val_loss", "MAE", "RMSE", "best ep", "epochs", "stopped by"] + keys
    rows = [[s.trial_id, f"{s.best_val_loss:.4f}", f"{s.best_val_mae:.{d}f}", f"{s.best_val_rmse:.{d}f}", str(s.best_epoch),
             str(s.epochs), s.stop_reason] + [shown(s.config, k) for k in keys] for s in summaries[:top]]
    for line in grid([head] + rows, right=len(head)):
        print(line)
    if any(r[head.index("dropout")] == "-" for r in rows if "dropout" in head):
        print("(dropout '-': a one-layer trial; dropout acts between layers, so the sampled value had no effect)")


def best(best: Any, unit_: str) -> None:
    d = decimals([best.best_val_mae, best.best_val_rmse])
    print(f"\nbest trial: {best.trial_id}  (the lowest val MAE at a trial's kept checkpoint, its epoch of min "
          f"{best.metric})  val_loss {best.best_val_loss:.4f}, "
          f"val MAE {best.best_val_mae:.{d}f}, RMSE {best.best_val_rmse:.{d}f} {unit_} at epoch {best.best_epoch} of "
          f"{best.epochs} ({best.stop_reason})")
    print(f"config: {json.dumps(dict(best.config), default=str)}")
    print(f"best checkpoint: {best.checkpoint}")


def ensemble(rep: Any, unit_: str, freq: str | None) -> None:
    from rnn_core.postprocess import describe_steps
    from rnn_core.series import step_words

    naive = sum("naive" in m["config"] for m in rep.members)
    d = decimals([rep.val_mae, rep.val_rmse, rep.best_val_mae])
    print(f"\nensemble: {len(rep.members)} {'trial(s)' if not naive else f'member(s), {naive} of them naive forecasts,'} "
          f"of {rep.candidates}{' trials' if naive else ''} chosen greedily on validation "
          f"{rep.selection.upper()} ({rep.size} picks): val MAE {rep.val_mae:.{d}f}, RMSE {rep.val_rmse:.{d}f} {unit_} "
          f"as the file forecasts ({rep.mean_val_mae:.{d}f}, {rep.mean_val_rmse:.{d}f} for the members' mean alone; best "
          f"trial alone {rep.best_val_mae:.{d}f}, {rep.best_val_rmse:.{d}f}); chosen in {hms(rep.select_s)}")
    print(f"  then: {describe_steps(rep.steps, freq)}")
    steps = step_words(freq)[1]
    for m in rep.members:
        if "naive" in m["config"]:  # a naive candidate (rnn_core.forecaster.SeasonalNaive)
            print(f"  {m['trial_id']}  weight {m['weight']:.2f}  val MAE {m['val_mae']:.{d}f}  (a naive forecast)")
            continue
        c = m["config"]
        print(f"  {m['trial_id']}  weight {m['weight']:.2f}  val MAE {m['val_mae']:.{d}f}  {shown(c, 'cell')} "
              f"{shown(c, 'hidden_size')}x{shown(c, 'num_layers')}, {shown(c, 'sequence_size')} "
              f"{steps}{form_note(c.get('target_form', 'level'))}")
    print(f"ensemble file: {rep.file}")
    if rep.refit_file:
        print(f"refit on training + validation steps in {hms(rep.refit_s)}: {rep.refit_file} "
              "(its validation score is not measurable: those steps are training steps now)")


def data_info(data: Any) -> None:
    """`data info`: where the data came from, its grid, windows per split (at most three runs each), scalers."""
    import numpy as np

    cfg, ds = data.config, data.config.dataset
    print(f"source:        {data.source} ({ds.describe()})")
    print(f"raw rows:      {data.raw_rows:,}")
    print(f"grid rows:     {len(data.times):,} ({str(data.times.min())[:16]} .. {str(data.times.max())[:16]}, "
          f"step {ds.freq})")
    what = "target 0" if ds.absent == "zero" else "never a target"
    print(f"steps filled:  {data.n_filled:,} ({what}, covariates carried forward, is_missing=1)")
    print(f"windows:       sequence_size {cfg.sequence_size}, horizon {cfg.horizon}, split {cfg.split}")
    for name, s in data.splits.items():
        runs = np.split(s.origin, np.where(np.diff(s.origin) > 1)[0] + 1)  # runs of consecutive windows
        spans = [f"{str(data.times[r[0] + 1])[:16]} .. {str(data.times[r[-1] + cfg.horizon])[:16]}" for r in runs]
        shown_ = ", ".join(spans[:3]) + (f" and {len(spans) - 3:,} more runs (gaps between them)" if len(spans) > 3 else "")
        filled, total = data.filled_targets(name)
        print(f"  {name:<5} {len(s):>6,} windows, targets {shown_} ({filled:,} of {total:,} target steps filled)")
    ts = data.target_scaler
    change = f"; {ts.form}: change from t, mean {ts.change_mean:.4g}, std {ts.change_std:.4g}" if ts.form != "level" else ""
    own = (f"each of {len(ts.series.names)} series first standardised by its own training steps (std "
           f"{min(ts.series.std):.4g} .. {max(ts.series.std):.4g}), then " if ts.series is not None else "")
    print(f"target:        {ds.target}, {ts.transform} ({own}train mean {ts.mean:.4g}, std {ts.std:.4g}{change})")
    print(f"features ({len(data.feature_names)}): {', '.join(data.feature_names)}")


def forecast(table: Any, model: Any) -> None:
    """`predict`: per origin (and series), a header line and the forecasts with their intervals."""
    from rnn_core.series import step_words

    iv, ds = model.forecaster.intervals, model.forecaster.data_config.dataset
    levels = [c[len("lower_"):] for c in table.columns if c.startswith("lower_")]
    d = decimals([v for c in table.columns if c == "forecast" or c.startswith(("lower_", "upper_")) for v in table[c]])
    for origin, rows in table.groupby(["origin"] + ([ds.series] if ds.series else []), sort=False):
        name = f" {ds.series} {origin[1]}" if ds.series else ""
        print(f"# origin {origin[0]}{name} (last input step); {len(rows)} {step_words(ds.freq)[1]} ahead; "
              f"{unit(model.forecaster.data_config)} with {', '.join(levels)} intervals "
              f"({iv.describe(ds.freq) if iv else 'none'})")
        cells = [["time", "forecast"] + [x for a in levels for x in (f"{a} from", "to")]]
        cells += [[str(r["time"]), f"{r['forecast']:.{d}f}"] + [f"{r[f'{e}_{a}']:.{d}f}" for a in levels for e in ("lower", "upper")]
                  for r in rows.to_dict("records")]
        for line in grid(cells, right=1):
            print(line)


def forecast_as(table: Any, fmt: str) -> str:
    """`predict --format csv|json`: the forecast table as CSV, or JSON records (ISO times), for a program to read."""
    if fmt == "csv":
        return table.to_csv(index=False)
    return table.to_json(orient="records", date_format="iso", indent=1) + "\n"


def scores(ev: Any, title: str, split_name: str, listing: bool) -> None:
    """`test`'s report: the model and the baselines, filled steps, intervals, per-step errors."""
    from rnn_core.series import step_words

    cfg = ev.model.data_config
    split, horizon, unit_ = ev.data[split_name], cfg.horizon, unit(cfg)
    print(f"{title}: {split_name} split, {len(split):,} windows, targets {str(split.target_time[0, 0])[:16]} .. "
          f"{str(split.target_time[-1, -1])[:16]}, horizon {horizon} "
          f"({step_words(cfg.dataset.freq)[0] if horizon == 1 else f'{horizon} ' + step_words(cfg.dataset.freq)[1]})")
    rows = {"model": ev.scores or {"mae": ev.mae, "rmse": ev.rmse}, **ev.baselines}
    d = decimals([r[k] for r in rows.values() for k in ("mae", "rmse")])
    for line in score_table(rows, d, f"{unit_}{', mean over the steps' if horizon > 1 else ''}"):
        print(line)
    if ev.by_series is not None:
        _by_series(ev.by_series, d)
    filled, total = ev.data.filled_targets(split_name)
    if filled:
        print(f"({filled:,} of the {total:,} target steps are absent from the file and count as 0: an absent step "
              "means nothing happened then (absent = zero))")
    _verdict(ev)
    if ev.intervals is not None:
        widths = decimals([w for _, w in ev.coverage.values()])
        print(f"intervals ({ev.intervals.describe(cfg.dataset.freq)}):")
        for a, (cov, width) in ev.coverage.items():
            print(f"  {a:.0%}: {cov:.1%} of the {split_name} targets inside, mean width {width:.{widths}f} {unit_}")
    if horizon > 1:
        _per_step(ev, horizon, d, step_words(cfg.dataset.freq)[1])
    if listing:
        for i, (p, t) in enumerate(zip(ev.prediction[:, 0], ev.target[:, 0])):
            print(f"{i:4}: {p:8,.{d}f} <--> {t:8,.{d}f} (Loss: {abs(p - t):>10,.{d}f})")


def _by_series(table: Any, d: int, most: int = 20) -> None:
    """A panel's scores per series: every series up to ``most``, else the worst ``most`` by MASE."""
    m = table["mase"]
    print(f"{len(m)} series: MASE median {m.median():.3f}, best {m.min():.3f}, worst {m.max():.3f}; "
          + ("per series:" if len(m) <= most else f"the {most} worst:"))
    rows = table if len(m) <= most else table.sort_values("mase", ascending=False).head(most)
    cells = [["series", "windows", "MAE", "RMSE", "MASE", "sMAPE %", "WAPE %"]] + [
        [str(r["series"]), str(r["windows"]), f"{r['mae']:.{d}f}", f"{r['rmse']:.{d}f}", f"{r['mase']:.3f}",
         f"{r['smape']:.2f}", f"{r['wape']:.2f}"] for r in rows.to_dict("records")]
    for line in grid(cells, right=1):
        print(line)


def score_table(rows: dict[str, dict[str, float]], d: int, note: str) -> list[str]:
    """Aligned lines of MAE and RMSE (``d`` decimals, in ``note``'s units), then MASE, sMAPE and WAPE where known."""
    extra = [k for k in ("mase", "smape", "wape") if all(k in r for r in rows.values())]
    heads = {"mase": "MASE", "smape": "sMAPE %", "wape": "WAPE %"}
    places = {k: decimals([r[k] for r in rows.values()]) for k in extra}  # >= 3 significant digits each
    cells = [["", "MAE", "RMSE", *(heads[k] for k in extra)]] + [
        [n, f"{r['mae']:.{d}f}", f"{r['rmse']:.{d}f}", *(f"{r[k]:.{places[k]}f}" for k in extra)]
        for n, r in rows.items()]
    lines = grid(cells, right=1)
    return [f"{lines[0]}   ({note})", *lines[1:]]


def _verdict(ev: Any) -> None:
    base_name, base = ev.best_baseline()
    if base["mae"] > 0 and ev.mae <= base["mae"]:
        print(f"improvement over the best baseline ({base_name}): {100 * (1 - ev.mae / base['mae']):.1f}% lower MAE")
    elif base["mae"] > 0:
        print(f"the best baseline ({base_name}) is better: the model's MAE is {100 * (ev.mae / base['mae'] - 1):.1f}% "
              "higher (a longer search, --seasonal-lags, or a larger --space may close the gap)")
    else:
        print(f"the best baseline ({base_name}) is exact on these targets: no improvement is measurable")


def _per_step(ev: Any, horizon: int, d: int, steps: str) -> None:
    names = list(ev.steps)
    print(f"per step ({steps} ahead), MAE / RMSE:")
    cells = [["step"] + names] + [[str(k + 1)] + [f"{ev.steps[n]['mae'][k]:.{d}f} / {ev.steps[n]['rmse'][k]:.{d}f}"
                                                  for n in names] for k in range(horizon)]
    for line in grid(cells):
        print(line)


def test_plots(ev: Any, out: Path, split_name: str, origins: list[str] | None, title: str) -> list[Path]:
    """`test --plots`: every split's forecasts, the test period (and its first weeks up close), and for H > 1 the
    steps and chosen origins."""
    from rnn_core import plot
    from rnn_core.series import step_words

    cfg = ev.model.data_config
    split, horizon, unit_ = ev.data[split_name], cfg.horizon, unit(cfg).replace("/", " / ")
    one, many = step_words(cfg.dataset.freq)

    def step1(n: str, s: Any) -> Any:
        if n == split_name:
            rows, (pred, bands) = slice(None), (ev.prediction, ev.bands)
        else:  # a long split's panel shows its last LAST_HOURS points: only those are forecast (the chain reads
            rows = slice(-plot.LAST_HOURS, None) if len(s.origin) > plot.LONGEST_PANEL else slice(None)  # its lookback)
            pred, bands = ev.model.forecast_with_bands(ev.frame, s.origin[rows])
        return plot.Series(n, s.target_time[rows, 0], pred[:, 0], s.y_raw.numpy()[rows, 0],
                           {a: (lo[:, 0], hi[:, 0]) for a, (lo, hi) in bands.items()})

    series = [step1(n, s) for n, s in ev.data.splits.items()]
    test = series[list(ev.data.splits).index(split_name)]
    written = [plot.plot_splits(series, f"{title}: forecast vs actual ({one} ahead)", out / "predictions_by_split.png", unit_),
               plot.plot_test(test, f"{title}: {split_name} period", out / f"{split_name}_period.png", unit_),
               plot.plot_closer(test, f"{title}: {split_name} period, up close", out / f"{split_name}_period_closer.png", unit_)]
    if horizon > 1:
        written.append(plot.plot_steps({n: v["mae"] for n, v in ev.steps.items()}, f"{title}: error by step",
                                       out / "error_by_step.png", unit=unit_, ahead=many))
        rows = plot.origin_rows(split, origins, ev.data.times[split.origin])
        days = [plot.DayAhead(ev.data.times[split.origin[i]], split.target_time[i], ev.prediction[i],
                              ev.target[i], {a: (lo[i], hi[i]) for a, (lo, hi) in ev.bands.items()}) for i in rows]
        written.append(plot.plot_day_ahead(days, f"{title}: {horizon}-step forecasts", out / "forecasts_from_origins.png", unit_))
    return written


def history_plot(experiment: str, found: Any, out: Path) -> Path:
    """The search's trials' validation MAE by epoch, the best trial (the one the search ranks first) marked."""
    from rnn_core import plot

    from search import storage
    from search.results import best_trial

    best_, summaries = found if found is not None else best_trial(experiment)[:2]
    history = [plot.TrialHistory(s.trial_id, [h["epoch"] for h in s.history], [h["val_mae"] for h in s.history],
                                 s.stop_reason == "ASHA") for s in summaries]
    return plot.plot_history(history, best_.trial_id, f"search history: {storage.name(experiment)}",
                             out / "search_history.png", run_unit(experiment).replace("/", " / "))
