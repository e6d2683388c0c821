"""`rnn-search backtest RUN|MODEL --windows K [--step S] [--refit]`: a rolling backtest (rnn_core.backtest) of a
run's model or a model file, its scores beside the naive baselines' on stdout, overall and per window."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search import show

log = logging.getLogger(__name__)


def add_command(sub: Any, add_data: Callable[[argparse.ArgumentParser], None],
                add_storage: Callable[[argparse.ArgumentParser], None]) -> None:
    bt = sub.add_parser("backtest", help="rolling-origin backtest: the last K windows, errors per window and overall")
    bt.add_argument("target", metavar="RUN|MODEL", help="an experiment (run name or path) or a model.pt")
    add_data(bt)
    bt.add_argument("--windows", type=_whole, default=3, metavar="K", help="windows per series, the last ones (default: 3)")
    bt.add_argument("--step", type=_whole, metavar="S", help="steps between two cutoffs (default: the horizon)")
    bt.add_argument("--refit", action="store_true",
                    help="retrain the model's networks before each window on everything before its cutoff (slower; "
                         "without it, a window inside the training or validation period scores the model in sample)")
    bt.add_argument("--jobs", type=int, help="with --refit: networks retrained at once (default: one per CPU)")
    bt.add_argument("--single", action="store_true", help="for an experiment: its best trial instead of its ensemble")
    bt.add_argument("--forecasts", metavar="FILE", help="also write every window's forecasts and targets (.csv or .json)")
    add_storage(bt)
    bt.set_defaults(func=cmd_backtest)


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def cmd_backtest(args: argparse.Namespace) -> int:
    from rnn_core.backtest import cross_validation
    from search.results import model_or_run, recorded_data_path

    lm, title, experiment, _, what = model_or_run(args.target, args.storage, args.single, False, args.data)
    if what:
        log.info(what)
    data = args.data or (recorded_data_path(experiment) if experiment else None)
    bt = cross_validation(lm, data, args.windows, args.step, args.refit, args.jobs)
    report(bt, lm, title)
    if args.forecasts:
        out = write_table(bt.forecasts, Path(args.forecasts))
        log.info("wrote %s: %d forecast steps", out, len(bt.forecasts))
    return 0


def report(bt: Any, model: Any, title: str) -> None:
    """Overall scores (model and baselines), then the model's and the best baseline's MAE per window."""
    from rnn_core.series import step_words

    cfg = model.data_config
    one, many = step_words(cfg.dataset.freq)
    n_windows = int(bt.windows["window"].max())
    print(f"{title}: backtest over the last {n_windows} window(s) of {f'{cfg.horizon} {many}' if cfg.horizon > 1 else one} "
          f"per series, cutoffs {bt.windows['cutoff'].min()} .. {bt.windows['cutoff'].max()}"
          f"{', refit before each cutoff' if bt.refit else ''}")
    d = show.decimals([r[k] for r in bt.overall.values() for k in ("mae", "rmse")])
    for line in show.score_table(bt.overall, d, show.unit(cfg)):
        print(line)
    base = min((n for n in bt.overall if n != "model"), key=lambda n: bt.overall[n]["mae"], default=None)
    per = bt.windows.groupby("window").agg(cutoff=("cutoff", "min"), model=("model_mae", "mean"),
                                           **({base: (f"{base}_mae", "mean")} if base else {}))
    print(f"per window, MAE{' (mean over the series)' if cfg.dataset.series else ''}:")
    cells = [["window", "cutoff", "model", *([base] if base else [])]] + [
        [str(w), str(r["cutoff"]), f"{r['model']:.{d}f}", *([f"{r[base]:.{d}f}"] if base else [])]
        for w, r in per.iterrows()]
    for line in show.grid(cells, right=2):
        print(line)
    if bt.in_sample:
        log.warning("window(s) %s end before the model's test period: the model trained or was validated on those "
                    "steps (--refit scores them out of sample)", ", ".join(map(str, bt.in_sample)))


def write_table(table: Any, path: Path) -> Path:
    """A table as CSV or JSON records (by the file's suffix), written then renamed: never half-written."""
    from search import storage

    if path.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"{path}: expected a .csv or .json file name")
    text = table.to_csv(index=False) if path.suffix.lower() == ".csv" else table.to_json(
        orient="records", date_format="iso", indent=1)
    storage.write_bytes(str(path), text.encode())
    return path
