"""The `rnn-search` command. The only module that configures logging and prints tables."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import traceback
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnn_core.config import (
    CONFIGS, SPLIT_FIELDS, DataConfig, ModelConfig, Setting, TrainConfig, UserError, form_note, parse_lags, pick, settings, split_kwargs,
)

log = logging.getLogger("rnn_search")


# --------------------------------------------------------------------------------------- helpers
# Flags for the fields of rnn_core.config's dataclasses are made from the fields themselves (name, type,
# choices, default, docstring): adding a setting there adds its flag here.


def _argtype(fn: Any, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = what
    return parse


def _add_setting(p: argparse.ArgumentParser, s: Setting, note: str = "") -> None:
    text = s.help.rstrip(".") + note
    if s.type is bool:
        if s.default:  # a switch that turns an on-by-default setting off
            p.add_argument("--no-" + s.flags[0][2:], dest=s.name, action="store_false",
                           help=f"turn off (on by default): {text[:1].lower()}{text[1:]}")
        else:
            p.add_argument(*s.flags, dest=s.name, action="store_true", help=text)
        return
    # a None default means "not given": the help says what happens then
    kw: dict[str, Any] = {"dest": s.name, "default": s.default,
                          "help": text + (" (default: %(default)s)" if s.default is not None else "")}
    if s.type is tuple and s.columns:
        kw.update(type=_argtype(_texts, "columns"), metavar="COL,COL", help=text + " (default: none)")
    elif s.type is tuple:
        kw.update(type=_argtype(parse_lags, "hours"), metavar="H,H", help=text + " (default: none)")
    elif s.choices:
        kw.update(choices=s.choices)
    else:  # named after the flag, not the field (--time-budget TIME_BUDGET, not TIME_BUDGET_MIN)
        kw.update(type=s.type, metavar=s.flags[0][2:].upper().replace("-", "_"))
    p.add_argument(*s.flags, **kw)


def _add_settings(p: argparse.ArgumentParser, cls: type, note: str = "") -> None:
    """One flag per setting of a config class; the four split fields are the one flag --split."""
    group = p.add_argument_group(f"{cls.__name__}: {(cls.__doc__ or '').split('.')[0].lower()}")
    for s in settings(cls):
        if s.name == "split":
            group.add_argument("--split", dest="split_fields", type=_argtype(split_kwargs, "split"), default="default",
                               metavar="SPLIT", help="'default' (val 2012-09/10, test 2012-11/12), 'lecture' (last 24 "
                               "windows test, 96 val), or custom VAL_START,TEST_START[,TEST_END] dates (default: default)")
        elif s.name not in SPLIT_FIELDS:
            _add_setting(group, s, note)


def _config(cls: type, args: argparse.Namespace) -> Any:
    """The config a command's flags describe (DataConfig also takes the fields of --split and the dataset)."""
    values = pick(cls, vars(args))
    if cls is DataConfig:
        values.update(args.split_fields)
        values["dataset"] = _dataset(args)
    return cls(**values)


def _dataset(args: argparse.Namespace) -> Any:
    """The dataset the flags describe: a ``dataset:`` block of --dataset FILE.yaml, then the flags over it (its
    ``file:`` is the --data file unless --data is given). No --target: the built-in bikes data."""
    from rnn_core.config import Dataset

    fields = dict(_dataset_block(args.dataset_file)) if getattr(args, "dataset_file", None) else {}
    file = fields.pop("file", None)
    if file is not None and not args.data:
        args.data = str(Path(args.dataset_file).parent / file) if not Path(file).is_absolute() else file
    given = {s.name: getattr(args, s.name) for s in settings(Dataset) if getattr(args, s.name, None) not in (None, ())}
    return Dataset(**{**fields, **given})


def _dataset_block(path: str) -> dict[str, Any]:
    """The ``dataset:`` mapping of a YAML file, its keys checked (one line naming the file otherwise)."""
    import yaml

    from rnn_core.config import Dataset

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot be read as YAML: {str(exc).splitlines()[0]}") from None
    block = doc.get("dataset") if isinstance(doc, dict) else None
    allowed = {"file"} | {f.name for f in dataclasses.fields(Dataset)}
    if not isinstance(block, dict):
        raise UserError(f"{path}: expected a 'dataset:' mapping with keys {', '.join(sorted(allowed))}")
    if unknown := sorted(set(block) - allowed):
        raise UserError(f"{path}: dataset: unknown key {unknown[0]!r}; expected {', '.join(sorted(allowed))}")
    return block


def _add_storage(p: argparse.ArgumentParser, what: str = "where RUN names are looked up") -> None:
    p.add_argument("--storage", metavar="DIR|URI", help=f"{what} (default: $RNN_SEARCH_STORAGE, else ./runs)")


def _levels(text: str) -> tuple[float, ...]:
    from rnn_core.intervals import check_levels

    try:
        return check_levels([float(v) for v in text.split(",")])
    except ValueError:
        raise ValueError(f"expected levels between 0 and 1 such as 0.8,0.95, got {text!r}") from None


def _texts(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _add_ensemble(p: argparse.ArgumentParser, with_size_default: bool = False) -> None:
    from rnn_core.config import ENSEMBLE_SIZE as DEFAULT_SIZE

    p.add_argument("--size", type=int, default=DEFAULT_SIZE if with_size_default else None, metavar="K",
                   help=f"greedy selection steps with replacement: weights are multiples of 1/K "
                        f"(default: {DEFAULT_SIZE}{'' if with_size_default else ', or the size of the ensemble already chosen'})")
    p.add_argument("--refit", action="store_true",
                   help="also retrain the chosen members on training + validation hours, each for its best epoch count")
    p.add_argument("--jobs", type=int, help="refits at once, one thread each (default: one per CPU)")


def _add_data(p: argparse.ArgumentParser, describe: bool = False) -> None:
    """--data; with ``describe`` also the flags that describe a file of the user's own (rnn_core.config.Dataset)."""
    if not describe:
        p.add_argument("--data", metavar="PATH", help="the data file (default: the one the model or the run was "
                       "trained on; the bikes data: $RNN_SEARCH_DATA, the cache, or a download)")
        return
    from rnn_core.config import Dataset

    p.add_argument("--data", metavar="PATH", help="your own CSV or Parquet file (with --time and --target), or the "
                   "bikes hour.csv (default: $RNN_SEARCH_DATA, the cache, or a download)")
    group = p.add_argument_group("Dataset: your own series (without --target: the built-in UCI bikes data)")
    group.add_argument("--dataset", dest="dataset_file", metavar="FILE.yaml",
                       help="a YAML file with a 'dataset:' block of these settings (and file: PATH); flags override it")
    for s in settings(Dataset):
        _add_setting(group, s)


def _unit(cfg: Any) -> str:
    """What the errors are measured in: bikes/hour, or the target of a user's series."""
    return "bikes/hour" if cfg.dataset.builtin else cfg.dataset.target


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# --------------------------------------------------------------------------------------- data


def cmd_data_info(args: argparse.Namespace) -> int:
    import numpy as np

    from rnn_core.data import load

    data = load(_config(DataConfig, args), args.data)
    cfg, ds = data.config, data.config.dataset
    print(f"source:        {data.source}" + ("" if ds.builtin else f" ({ds.describe()})"))
    print(f"raw rows:      {data.raw_rows:,}")
    print(f"{'hourly' if ds.builtin else 'grid'} rows:   {len(data.hours):,} ({str(data.hours.min())[:16]} .. {str(data.hours.max())[:16]})")
    print(f"{'hours' if ds.builtin else 'steps'} filled:  {data.n_filled:,} " + (
        "(zero counts, forward-filled weather, is_missing=1)" if ds.builtin else
        f"({'target 0' if ds.absent == 'zero' else 'never a target'}, covariates carried forward, is_missing=1)"))
    print(f"windows:       sequence_size {cfg.sequence_size}, horizon {cfg.horizon}, split {cfg.split}")
    for name, s in data.splits.items():
        runs = np.split(s.origin, np.where(np.diff(s.origin) > 1)[0] + 1)  # runs of consecutive windows
        parts = ", ".join(f"{str(data.hours[r[0] + 1])[:16]} .. {str(data.hours[r[-1] + cfg.horizon])[:16]}" for r in runs)
        filled, total = data.filled_targets(name)
        print(f"  {name:<5} {len(s):>6,} windows, targets {parts} ({filled:,} of {total:,} target {'hours' if ds.builtin else 'steps'} filled)")
    ts = data.target_scaler
    change = f"; {ts.form}: change from t, mean {ts.change_mean:.4f}, std {ts.change_std:.4f}" if ts.form != "level" else ""
    print(f"target:        {ts.transform} (train mean {ts.mean:.4f}, std {ts.std:.4f}{change})")
    print(f"features ({len(data.feature_names)}): {', '.join(data.feature_names)}")
    return 0


# --------------------------------------------------------------------------------------- train / predict


def cmd_train(args: argparse.Namespace) -> int:
    from rnn_core.checkpoint import save_bundle
    from rnn_core.data import load
    from rnn_core.train import fit, resolve_device

    dcfg, tcfg = _config(DataConfig, args), _config(TrainConfig, args)
    data = load(dcfg, args.data)
    mcfg = data.model_config(**pick(ModelConfig, vars(args)))
    out = Path(args.out)
    ckpt = out / "model.pt"
    run = None
    if args.wandb != "off":
        import wandb

        run = wandb.init(project="rnn-search", mode=args.wandb, dir=str(out), job_type="train",
                         config={"model": mcfg.to_dict(), "train": tcfg.to_dict(), "data": dcfg.to_dict()})
    log.info("data: %s | train/val/test windows %s | device %s",
             data.source, "/".join(str(len(s)) for s in data.splits.values()), resolve_device(tcfg.device))
    log.info("model: %s %dx%d%s, %d features -> %d outputs", mcfg.cell.upper(), mcfg.hidden_size, mcfg.num_layers,
             " bidirectional" if mcfg.bidirectional else "", mcfg.n_features, mcfg.horizon)

    def on_epoch_end(epoch: int, m: dict[str, Any], snapshot: Any) -> None:
        if m["best_epoch"] == epoch:
            msg = f"best V_loss so far (early stopping follows V_loss, not V_MAE), saved {ckpt}"
            save_bundle(ckpt, snapshot(), data, mcfg, tcfg, meta={"command": "train"})
        elif m["status"] == "non_finite":
            msg = "loss is not finite: stopping"
        else:
            msg = f"early stopping counter {m['bad_epochs']} of {tcfg.patience}"
            if m["status"] == "early_stopped":
                msg += f": stopping, best epoch {m['best_epoch']}"
        log.info("[Epoch %3d] T_loss: %.4f, V_loss: %.4f, V_MAE: %6.2f | %s | T_time: %s, T_speed: %s samples/s",
                 epoch, m["train_loss"], m["val_loss"], m["val_mae"], msg, _hms(m["elapsed_s"]),
                 f"{m['samples_per_s']:,.0f}")
        if run is not None:
            run.log({k: v for k, v in m.items() if isinstance(v, (int, float))}, step=epoch)

    start = time.perf_counter()
    res = fit(data, mcfg, tcfg, on_epoch_end=on_epoch_end)
    if ckpt.exists():  # the kept model as it ships: the post-processing chain fitted on its validation hours
        from rnn_core.data import load_frame
        from rnn_core.forecaster import ship_checkpoint

        ship_checkpoint(ckpt, load_frame(args.data, dataset=data.config.dataset)[0])
    if run is not None:
        run.summary.update({f"best_{k}": v for k, v in res.best_metrics.items()})
        run.finish()
    log.info("finished (%s) in %s; best epoch %d: val MAE %.2f, RMSE %.2f %s; checkpoint %s",
             res.status, _hms(time.perf_counter() - start), res.best_epoch,
             res.best_metrics.get("val_mae", math.nan), res.best_metrics.get("val_rmse", math.nan), _unit(dcfg),
             ckpt if ckpt.exists() else "(none: no finite epoch)")
    return 0 if res.status != "non_finite" or ckpt.exists() else 1


def cmd_predict(args: argparse.Namespace) -> int:
    from rnn_core.api import Model

    model = Model.load(args.file)  # a model or an ensemble file: one forecaster
    table = model.predict(args.data, args.at, args.levels)
    iv, ds = model.forecaster.intervals, model.forecaster.data_config.dataset
    levels = [c[len("lower_"):] for c in table.columns if c.startswith("lower_")]
    unit = "bikes per hour" if ds.builtin else ds.target
    for origin, rows in table.groupby(["origin"] + ([ds.series] if ds.series else []), sort=False):
        name = f" {ds.series} {origin[1]}" if ds.series else ""
        print(f"# origin {origin[0]}{name} (last input step); {len(rows)} step(s) ahead; {unit} with "
              f"{', '.join(levels)} intervals ({iv.describe() if iv else 'none'})")
        print(f"{'time':<20}{'forecast':>9}" + "".join(f"{f'{a} from':>10}{'to':>8}" for a in levels))
        for d in rows.to_dict("records"):
            print(f"{str(d['time']):<20}{d['forecast']:9.2f}"
                  + "".join(f"{d[f'lower_{a}']:10.1f}{d[f'upper_{a}']:8.1f}" for a in levels))
    return 0


# --------------------------------------------------------------------------------------- search


def _data_given(args: argparse.Namespace) -> frozenset[str]:
    """The DataConfig fields whose flags are on the command line (a preset's data settings leave them alone)."""
    tokens = {t.split("=", 1)[0] for t in getattr(args, "argv", []) if t.startswith("--")}
    given = {s.name for s in settings(DataConfig)
             if tokens & {*s.flags, *("--no-" + f[2:] for f in s.flags)}}
    return frozenset(given | (set(SPLIT_FIELDS) if "--split" in tokens else set()))


def _search_options(args: argparse.Namespace) -> Any:
    from search.options import SearchOptions

    return SearchOptions(**pick(SearchOptions, vars(args)), data_path=args.data, data=_config(DataConfig, args),
                         data_given=_data_given(args))


def _shown(config: dict[str, Any], key: str) -> str:
    """A config value for the table; dropout acts only between layers, so a one-layer trial shows '-'."""
    if key == "dropout" and config.get("num_layers") == 1:
        return "-"
    return _fmt(config.get(key, ""))


def _print_table(summaries: list[Any], top: int) -> None:
    keys = sorted({k for s in summaries for k in s.config if k != "seed"})
    head = ["trial", "val_loss", "MAE", "RMSE", "best ep", "epochs", "stopped by"] + keys
    rows = [[s.trial_id, f"{s.best_val_loss:.4f}", f"{s.best_val_mae:.2f}", f"{s.best_val_rmse:.2f}", str(s.best_epoch),
             str(s.epochs), s.stop_reason] + [_shown(s.config, k) for k in keys] for s in summaries[:top]]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    if any(r[head.index("dropout")] == "-" for r in rows if "dropout" in head):
        print("(dropout '-': a one-layer trial; dropout acts between layers, so the sampled value had no effect)")


def _run_unit(path: str) -> str:
    """What a run's errors are measured in (bikes/hour, or its own series' target)."""
    from search.meta import experiment_meta

    try:
        return _unit(DataConfig.from_dict(experiment_meta(path)["data"]))
    except (UserError, ValueError, KeyError, TypeError):
        return "bikes/hour"


def _print_best(best: Any, unit: str = "bikes/hour") -> None:
    print(f"\nbest trial: {best.trial_id}  (by min {best.metric} over all epochs)  val_loss {best.best_val_loss:.4f}, val MAE {best.best_val_mae:.2f}, "
          f"RMSE {best.best_val_rmse:.2f} {unit} at epoch {best.best_epoch} of {best.epochs} ({best.stop_reason})")
    print(f"config: {json.dumps({k: v for k, v in best.config.items()}, default=str)}")
    print(f"best checkpoint: {best.checkpoint}")


def _refuse_a_taken_run(args: argparse.Namespace) -> None:
    """A run that exists (a new --name) or that another search holds (--resume) is refused at once, before
    torch, Ray and Optuna load; the search checks again under the run's lock."""
    from search import storage
    from search.runlock import RunLock

    if args.resume:
        RunLock(storage.experiment_path(args.resume, args.storage), new_run=False).refuse_held()
    elif args.name:
        where = storage.resolve(args.storage)
        if storage.is_uri(where):
            storage.check_writable(where)  # a missing bucket or wrong credentials: that, in one line, first
        RunLock(storage.join(where, args.name), new_run=True).refuse_existing()


def cmd_tune(args: argparse.Namespace) -> int:
    opts = _search_options(args)  # a bad value is refused before anything heavy loads
    _refuse_a_taken_run(args)
    import optuna

    from search.results import best_trial
    from search.tuner import resume_search, run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # optuna installs its own handler

    if args.resume:
        grid, path = resume_search(args.resume, opts)
    else:
        grid, path = run_search(opts)
    errored = [r for r in grid if r.error is not None]
    best, summaries, _ = best_trial(path)
    print(f"\nexperiment: {path}  ({len(summaries)} trials)\ntop {min(5, len(summaries))} by best "
          f"{summaries[0].metric} over all epochs:")
    _print_table(summaries, 5)
    _print_best(best, _run_unit(path))
    if args.ensemble:
        from search.results import build_ensemble

        _print_ensemble(build_ensemble(path, data_path=args.data), _run_unit(path))
    print(f"\nnext: rnn-search test {path} --plots plots/   |   rnn-search export {path} --out model.pt")
    if errored:
        from rnn_core.config import first_line
        from search.storage import name

        print(f"error: {len(errored)} of {len(grid)} trials ended in error after their retries (first: "
              f"{first_line(errored[0].error)}); `rnn-search tune --resume {name(path)}` retries them", file=sys.stderr)
        return 1
    return 0


def _print_ensemble(rep: Any, unit: str = "bikes/hour") -> None:
    from rnn_core.postprocess import describe_steps

    naive = sum("naive" in m["config"] for m in rep.members)
    print(f"\nensemble: {len(rep.members)} {'trial(s)' if not naive else f'member(s), {naive} of them naive forecasts,'} "
          f"of {rep.candidates}{' trials' if naive else ''} chosen greedily on validation "
          f"{rep.selection.upper()} ({rep.size} picks): val MAE {rep.val_mae:.2f}, RMSE {rep.val_rmse:.2f} {unit} "
          f"as the file forecasts ({rep.mean_val_mae:.2f}, {rep.mean_val_rmse:.2f} for the members' mean alone; best "
          f"trial alone {rep.best_val_mae:.2f}, {rep.best_val_rmse:.2f}); chosen in {_hms(rep.select_s)}")
    print(f"  then: {describe_steps(rep.steps)}")
    for m in rep.members:
        if "naive" in m["config"]:  # a naive candidate of a user's series (rnn_core.forecaster.SeasonalNaive)
            print(f"  {m['trial_id']}  weight {m['weight']:.2f}  val MAE {m['val_mae']:.2f}  (a naive forecast)")
            continue
        print(f"  {m['trial_id']}  weight {m['weight']:.2f}  val MAE {m['val_mae']:.2f}  "
              f"{_shown(m['config'], 'cell')} {_shown(m['config'], 'hidden_size')}x{_shown(m['config'], 'num_layers')}, "
              f"{_shown(m['config'], 'sequence_size')} h{form_note(m['config'].get('target_form', 'level'))}")
    print(f"ensemble file: {rep.file}")
    if rep.refit_file:
        print(f"refit on training + validation hours in {_hms(rep.refit_s)}: {rep.refit_file} "
              "(its validation score is not measurable: those hours are training hours now)")


def cmd_ensemble(args: argparse.Namespace) -> int:
    from search.results import build_ensemble

    rep = build_ensemble(args.run, args.storage, size=args.size, refit=args.refit, data_path=args.data, jobs=args.jobs)
    _print_ensemble(rep, _run_unit(rep.file.rsplit("/", 1)[0]))
    refit = " --refit" if args.refit else ""
    print(f"\nnext: rnn-search test {args.run}{refit}   |   rnn-search export {args.run}{refit} --out ensemble.pt")
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from search.results import best_trial

    best, summaries, path = best_trial(args.run, args.storage)
    if args.json:
        from search.results import read_ensemble_report

        rep = read_ensemble_report(path)
        print(json.dumps({"experiment": path, "best": best.to_json(), "trials": [s.to_json() for s in summaries[: args.top]],
                          "ensemble": rep.to_json() if rep else None}, indent=1, default=str))
        return 0
    from search.results import current_ensemble, read_ensemble_report

    print(f"experiment: {path}  ({len(summaries)} trials with results)")
    _print_table(summaries, args.top)
    _print_best(best, _run_unit(path))
    rep = read_ensemble_report(path)
    if rep is not None:
        _print_ensemble(rep, _run_unit(path))
        if current_ensemble(path, summaries) is None:
            print(f"(chosen before the latest trials: `rnn-search ensemble {args.run}` chooses again)")
    else:
        print(f"\nno ensemble yet: rnn-search ensemble {args.run}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from search.results import export_best

    if args.single:
        out, best, (val_mae, val_rmse) = export_best(args.run, args.out, args.storage, args.data)
        print(f"wrote {out}: trial {best.trial_id}, epoch {best.best_epoch}, val MAE {val_mae:.2f}, RMSE {val_rmse:.2f} "
              "bikes/hour as the file forecasts")
        return 0
    import tempfile

    from search import storage
    from search.results import chosen_model

    model, what = chosen_model(args.run, args.storage, refit=args.refit, data_path=args.data, size=args.size, jobs=args.jobs)
    with tempfile.TemporaryDirectory() as tmp:
        storage.write_bytes(args.out, storage.download(model.source, tmp).read_bytes())  # atomic: never half-written
    print(f"wrote {args.out}: {what}")
    return 0


def _origin_rows(split: Any, origins: list[str] | None, origin_times: Any) -> list[int]:
    """Rows of a split for --origins (timestamps of last input hours); default: four evenly spread days,
    each from 23:00, so that the forecast covers the next calendar day."""
    import numpy as np
    import pandas as pd

    from rnn_core.data import DataError

    first = split.target_time[:, 0]  # [N] the step after each origin
    if origins:
        rows = []
        for text in origins:
            try:
                at = np.datetime64(pd.Timestamp(text))
            except ValueError:
                raise DataError(f"--origins: {text!r} is not a timestamp (e.g. 2012-11-14 23:00)") from None
            hits = np.nonzero(origin_times == at)[0]  # origin_times [N]: each window's last input step
            if not len(hits):
                raise DataError(f"--origins: {text} is not an origin of this split ({str(origin_times[0])[:16]} "
                                f".. {str(origin_times[-1])[:16]})")
            rows.append(int(hits[0]))
        return rows
    midnight = np.nonzero(pd.DatetimeIndex(first).hour == 0)[0]
    candidates = midnight if len(midnight) else np.arange(len(first))
    return [int(candidates[i]) for i in np.linspace(0, len(candidates) - 1, min(4, len(candidates))).round().astype(int)]


def _test_target(args: argparse.Namespace) -> tuple[Any, str, str | None, Any]:
    """What `test` scores: (forecaster, title, its experiment or None, (best, summaries) when already read)."""
    import tempfile

    from rnn_core.checkpoint import CheckpointError
    from rnn_core.forecaster import load_model

    from search import storage

    if args.target.endswith(".pt"):  # a model file, local or in a bucket
        if not storage.exists(args.target):
            raise CheckpointError(f"{args.target}: no such model file")
        with tempfile.TemporaryDirectory() as tmp:
            lm = dataclasses.replace(load_model(storage.download(args.target, tmp)), source=args.target)
        return lm, args.target, lm.meta.get("experiment_path"), None
    from search.results import best_trial, chosen_model

    best, summaries, experiment = best_trial(args.target, args.storage)
    lm, what = chosen_model(experiment, single=args.single, refit=args.refit, data_path=args.data)
    print(what)
    return lm, f"{storage.name(experiment)} / {what.split(':')[0]}", experiment, (best, summaries)


def _print_scores(ev: Any, title: str, split_name: str, listing: bool) -> None:
    """`test`'s report: the model and the baselines, filled hours, intervals, per-step errors."""
    split, horizon, unit = ev.data[split_name], ev.model.data_config.horizon, _unit(ev.model.data_config)
    print(f"{title}: {split_name} split, {len(split):,} windows, targets {str(split.target_time[0, 0])[:16]} .. "
          f"{str(split.target_time[-1, -1])[:16]}, horizon {horizon}")
    print(f"{'':<16}{'MAE':>9}{'RMSE':>9}   ({unit}{', mean over the steps' if horizon > 1 else ''})")
    print(f"{'model':<16}{ev.mae:>9.2f}{ev.rmse:>9.2f}")
    for name, m in ev.baselines.items():
        print(f"{name:<16}{m['mae']:>9.2f}{m['rmse']:>9.2f}")
    filled, total = ev.data.filled_targets(split_name)
    if filled and ev.model.data_config.dataset.builtin:  # the bikes file leaves out hours nobody rented a bike
        print(f"({filled:,} of the {total:,} target hours are absent from the file and count as 0 rentals: the bikes "
              "data leaves out hours without rentals)")
    elif filled:
        print(f"({filled:,} of the {total:,} target steps are absent from the file and count as 0 (--absent zero))")
    base_name, base = ev.best_baseline()
    if base["mae"] > 0 and ev.mae <= base["mae"]:
        print(f"improvement over the best baseline ({base_name}): {100 * (1 - ev.mae / base['mae']):.1f}% lower MAE")
    elif base["mae"] > 0:
        print(f"the best baseline ({base_name}) is better: the model's MAE is {100 * (ev.mae / base['mae'] - 1):.1f}% "
              "higher (a longer search, --seasonal-lags, or a larger --space may close the gap)")
    else:
        print(f"the best baseline ({base_name}) is exact on these targets: no improvement is measurable")
    if ev.intervals is not None:
        print(f"intervals ({ev.intervals.describe()}):")
        for a, (cov, width) in ev.coverage.items():
            print(f"  {a:.0%}: {cov:.1%} of the {split_name} targets inside, mean width {width:.1f} {unit}")
    if horizon > 1:
        names = list(ev.steps)
        print("per step (hours ahead), MAE / RMSE:")
        print("step " + "".join(f"{n:>22}" for n in names))
        for k in range(horizon):
            print(f"{k + 1:>4} " + "".join(f"{ev.steps[n]['mae'][k]:>13.2f} /{ev.steps[n]['rmse'][k]:>7.2f}" for n in names))
    if listing:
        for i, (p, t) in enumerate(zip(ev.prediction[:, 0], ev.target[:, 0])):
            print("{0:4}: {1:8,.2f} <--> {2:8,.2f} (Loss: {3:>10,.2f})".format(i, p, t, abs(p - t)))


def _test_plots(ev: Any, args: argparse.Namespace, title: str) -> list[Path]:
    """`test --plots`: every split's forecasts, the test period, and for H > 1 the steps and chosen origins."""
    from rnn_core import plot

    out, split, horizon = Path(args.plots), ev.data[args.split], ev.model.data_config.horizon
    unit, ahead = _unit(ev.model.data_config).replace("/", " / "), "hour" if ev.model.data_config.dataset.builtin else "step"

    def step1(n: str, s: Any) -> Any:
        pred, bands = (ev.prediction, ev.bands) if n == args.split else ev.model.forecast_with_bands(ev.frame, s.origin)
        return plot.Series(n, s.target_time[:, 0], pred[:, 0], s.y_raw.numpy()[:, 0],
                           {a: (lo[:, 0], hi[:, 0]) for a, (lo, hi) in bands.items()})

    series = [step1(n, s) for n, s in ev.data.splits.items()]
    written = [plot.plot_splits(series, f"{title}: forecast vs actual (1 {ahead} ahead)", out / "predictions_by_split.png",
                                unit),
               plot.plot_test(series[list(ev.data.splits).index(args.split)], f"{title}: {args.split} period",
                              out / f"{args.split}_period.png", unit)]
    if horizon > 1:
        written.append(plot.plot_steps({n: v["mae"] for n, v in ev.steps.items()}, f"{title}: error by step",
                                       out / "error_by_step.png", unit=unit))
        days = [plot.DayAhead(ev.data.hours[split.origin[i]], split.target_time[i], ev.prediction[i],
                              ev.target[i], {a: (lo[i], hi[i]) for a, (lo, hi) in ev.bands.items()})
                for i in _origin_rows(split, args.origins, ev.data.hours[split.origin])]
        written.append(plot.plot_day_ahead(days, f"{title}: {horizon}-{ahead} forecasts", out / "forecasts_from_origins.png",
                                           unit))
    return written


def _history_plot(experiment: str, found: Any, out: Path) -> Path:
    """The search's trials' validation MAE by epoch, the best trial marked."""
    from rnn_core import plot

    from search import storage
    from search.results import best_trial

    best, summaries = found if found is not None else best_trial(experiment)[:2]
    history = [plot.TrialHistory(s.trial_id, [h["epoch"] for h in s.history], [h["val_mae"] for h in s.history],
                                 s.stop_reason == "ASHA") for s in summaries]
    return plot.plot_history(history, best.trial_id, f"search history: {storage.name(experiment)}", out / "search_history.png",
                             _run_unit(experiment).replace("/", " / "))


def cmd_test(args: argparse.Namespace) -> int:
    from rnn_core.metrics import evaluate_model

    lm, title, experiment, found = _test_target(args)
    data = args.data
    if experiment and not data:  # the file the run searched, when it is on this machine
        from search.results import recorded_data_path

        data = recorded_data_path(experiment)
    ev = evaluate_model(lm, data, args.split, levels=args.levels)
    _print_scores(ev, title, args.split, args.list)
    if args.plots:
        written = _test_plots(ev, args, title)
        if experiment:
            written.append(_history_plot(experiment, found, Path(args.plots)))
        for w in written:
            print(f"wrote {w}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from search.dashboard import serve

    return serve(args.run, args.storage, host=args.host, port=args.port)


def cmd_submit(args: argparse.Namespace) -> int:
    from search.jobs import follow, submit

    rest = list(args.command)
    if rest and rest[0] == "--":
        rest = rest[1:]
    if not rest or rest[0] != "tune":
        raise ValueError("give the search after --, e.g.: rnn-search submit --address http://HEAD:8265 -- tune --preset quick")
    env = {}
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    job_id, entrypoint = submit(args.address, rest, working_dir=args.working_dir, env=env)
    print(f"submitted job {job_id}: {entrypoint}")
    print(f"  rnn-search jobs status {job_id} --address {args.address}")
    print(f"  rnn-search jobs logs {job_id} --address {args.address}")
    if not args.follow:
        return 0
    status = follow(args.address, job_id, lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    print(f"job {job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    from search.jobs import job_logs, job_status, job_stop

    if args.action == "status":
        status, message = job_status(args.address, args.job_id)
        print(f"{args.job_id}: {status}" + (f" ({message})" if message else ""))
    elif args.action == "logs":
        sys.stdout.write(job_logs(args.address, args.job_id))
    else:
        print(f"{args.job_id}: {'stop requested' if job_stop(args.address, args.job_id) else 'already finished'}")
    return 0


# --------------------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to read the usage, not a usage dump."""

    def error(self, message: str) -> Any:  # noqa: ANN401 - never returns
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rnn-search", description="Hyperparameter search for RNN forecasters of hourly bike rentals.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_model_commands, _tune_command, _result_commands, _cluster_commands):
        add(sub)
    return p


def _model_commands(sub: Any) -> None:
    """data info, train, predict: no Ray."""
    d = sub.add_parser("data", help="inspect the data set").add_subparsers(dest="data_cmd", required=True, metavar="ACTION")
    di = d.add_parser("info", help="source, rows, hours filled, splits and features")
    _add_data(di, describe=True)
    _add_settings(di, DataConfig)
    di.set_defaults(func=cmd_data_info)

    t = sub.add_parser("train", help="train one model without Ray (defaults: the lecture's RNN 128x2)")
    _add_data(t, describe=True)
    t.add_argument("--out", default="runs/train", help="directory for the best checkpoint model.pt (default: %(default)s)")
    t.add_argument("--wandb", choices=("off", "offline", "online"), default="off", help="Weights & Biases logging (default: %(default)s)")
    for cls in CONFIGS:
        _add_settings(t, cls)
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="forecast the hours after an origin with a saved model")
    pr.add_argument("file", help="model.pt (from train, export or a trial checkpoint)")
    _add_data(pr)
    pr.add_argument("--at", metavar="TIMESTAMP", help="forecast origin, the last input hour (default: the data's last hour)")
    pr.add_argument("--levels", type=_argtype(_levels, "levels"), metavar="A,B",
                    help="interval levels, e.g. 0.8,0.95 (default: the model's stored ones, else 0.8,0.95)")
    pr.set_defaults(func=cmd_predict)


def _tune_command(sub: Any) -> None:
    from search.options import SearchOptions  # no Ray: Ray loads only when a search is built
    from search.space import PRESETS

    tu = sub.add_parser("tune", help="run (or resume) a Ray Tune search: Optuna TPE + ASHA")
    tu.add_argument("--resume", metavar="RUN", help="continue an interrupted experiment (run name under --storage, or a path)")
    tu.add_argument("--no-ensemble", dest="ensemble", action="store_false",
                    help="skip choosing an ensemble of the trials at the end (default: choose one; see `ensemble`)")
    _add_settings(tu, SearchOptions)  # one flag per field, its docstring the help (search/options.py)
    _add_data(tu, describe=True)
    _add_settings(tu, DataConfig, note="; for every trial unless the space sets it")
    budget = {"num_samples": "trials", "max_epochs": "max_epochs", "grace_period": "grace_period",
              "reduction_factor": "reduction_factor", "stop_patience": "stop_patience", "stop_margin": "stop_margin"}
    for action in tu._actions:
        if action.dest in budget:  # the preset's budget, by preset
            action.help = (action.help or "").replace("the preset's", "the preset's: " + ", ".join(
                f"{name} {getattr(p, budget[action.dest]):g}" for name, p in PRESETS.items()))
        # a preset's data settings (Preset.data) apply where these flags are not given
        presets = ", ".join(f"{name} {p.data[action.dest]}" for name, p in PRESETS.items() if action.dest in p.data)
        if presets:
            action.help = (action.help or "").replace(" (default: %(default)s)", f" (default: %(default)s, or the preset's: {presets})")
    tu.set_defaults(func=cmd_tune)


def _result_commands(sub: Any) -> None:
    """best, ensemble, export, test: reading an experiment back."""
    b = sub.add_parser("best", help="top trials of an experiment (finished or running) and the best checkpoint")
    b.add_argument("run", help="run name under --storage, or an experiment path (local or s3://)")
    b.add_argument("--top", type=int, default=5, help="(default: %(default)s)")
    b.add_argument("--json", action="store_true", help="machine-readable output")
    _add_storage(b)
    b.set_defaults(func=cmd_best)

    en = sub.add_parser("ensemble", help="choose a weighted ensemble of an experiment's trials on their validation forecasts")
    en.add_argument("run", help="run name under --storage, or an experiment path (finished or running; local or s3://)")
    _add_ensemble(en, with_size_default=True)
    _add_data(en)
    _add_storage(en)
    en.set_defaults(func=cmd_ensemble)

    e = sub.add_parser("export", help="write the experiment's model as one standalone file: its ensemble, or --single")
    e.add_argument("run", help="run name under --storage, or an experiment path")
    e.add_argument("--out", required=True, help="output file, e.g. model.pt")
    e.add_argument("--single", action="store_true", help="the best trial's best checkpoint instead of the ensemble")
    _add_ensemble(e)
    _add_data(e)
    _add_storage(e)
    e.set_defaults(func=cmd_export)

    te = sub.add_parser("test", help="test-set MAE/RMSE against naive baselines, with plots")
    te.add_argument("target", metavar="RUN|MODEL", help="an experiment (run name or path) or a model.pt")
    _add_data(te)
    te.add_argument("--split", choices=("train", "val", "test"), default="test", help="(default: %(default)s)")
    te.add_argument("--plots", metavar="DIR", help="write PNG figures here")
    te.add_argument("--list", action="store_true", help="print every forecast: idx: prediction <--> target (Loss: ...)")
    te.add_argument("--levels", type=_argtype(_levels, "levels"), metavar="A,B",
                    help="interval levels to report, e.g. 0.8,0.95 (default: the model's stored ones, else 0.8,0.95)")
    te.add_argument("--origins", type=_argtype(_texts, "origins"), metavar="T,T",
                    help="with --plots and horizon > 1: origins (last input hours) of the forecasts drawn, e.g. "
                         "'2012-11-14 23:00,2012-12-24 23:00' (default: four days spread over the split)")
    te.add_argument("--single", action="store_true", help="for an experiment: its best trial instead of its ensemble")
    te.add_argument("--refit", action="store_true", help="for an experiment: its ensemble refit on training + validation hours")
    _add_storage(te)
    te.set_defaults(func=cmd_test)


def _cluster_commands(sub: Any) -> None:
    """dashboard, submit, jobs."""
    db = sub.add_parser("dashboard", help="optuna-dashboard on an experiment's Optuna study (local or s3://), on loopback")
    db.add_argument("run", help="run name under --storage, or an experiment path or URI")
    _add_storage(db)
    db.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s: this machine only)")
    db.add_argument("--port", type=int, default=8080, help="(default: %(default)s)")
    db.set_defaults(func=cmd_dashboard)

    s = sub.add_parser("submit", help="run a search on a Ray cluster as a Ray Job")
    s.add_argument("--address", required=True, help="the head's dashboard, e.g. http://HEAD:8265")
    s.add_argument("--follow", action="store_true", help="stream the logs and exit with the job's outcome")
    s.add_argument("--working-dir", default=".", help="uploaded as the job's runtime_env working_dir (default: %(default)s)")
    s.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment variable for the job (repeatable)")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- tune ARGS...")
    s.set_defaults(func=cmd_submit)

    j = sub.add_parser("jobs", help="status, logs or stop of a submitted job")
    j.add_argument("action", choices=("status", "logs", "stop"))
    j.add_argument("job_id")
    j.add_argument("--address", required=True, help="the head's dashboard, e.g. http://HEAD:8265")
    j.set_defaults(func=cmd_jobs)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is now (so in-process callers that swap stdout keep working)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rnn-search` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)  # before anything heavy is imported: --help stays fast
    args.argv = argv
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler], force=True)
    for noisy in ("ray", "optuna", "filelock", "urllib3", "matplotlib", "wandb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.verbose:
        # Tune's driver logs end a search with tracebacks and its own ways back (`Tuner.restore(...)`); the
        # search's own lines say what happened and how to resume (--verbose shows them).
        for tune_driver in ("ray.tune.tune", "ray.tune.execution.tune_controller", "ray.tune.execution.experiment_state"):
            logging.getLogger(tune_driver).setLevel(logging.CRITICAL)
        # ... and when a search stops on a fault, the trial still running when the driver leaves ends in an error
        # that nobody waits for, which Ray reports as a traceback ("Unhandled error") after the search's own line
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    try:
        return int(args.func(args))
    except (UserError, ValueError, FileNotFoundError) as exc:
        if args.verbose or os.environ.get("RNN_SEARCH_DEBUG"):
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # search.tuner.SearchInterrupted says how to resume
        print(str(exc) or "interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
