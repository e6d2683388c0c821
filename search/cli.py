"""The `rnn-search` command. The only module that configures logging and prints tables."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnn_core.config import CONFIGS, DataConfig, ModelConfig, TrainConfig
from rnn_core.errors import UserError
from rnn_core.settings import pick, settings
from search import backtest, flags, show

log = logging.getLogger("rnn_search")


def _config(cls: type, args: argparse.Namespace) -> Any:
    """The config a command's flags describe (DataConfig also takes the fields of --split and the dataset)."""
    values = pick(cls, vars(args))
    if cls is DataConfig:
        from rnn_core.config import Dataset
        from search.options import describe_dataset

        values.update(args.split_fields)
        given = {s.name: getattr(args, s.name, None) for s in settings(Dataset)}
        values["dataset"], args.data = describe_dataset(getattr(args, "dataset_file", None), given, args.data)
    return cls(**values)


def _add_storage(p: argparse.ArgumentParser, what: str = "where RUN names are looked up") -> None:
    p.add_argument("--storage", metavar="DIR|URI", help=f"{what} (default: $RNN_SEARCH_STORAGE, else ./runs)")


def _add_ensemble(p: argparse.ArgumentParser, with_size_default: bool = False) -> None:
    from rnn_core.config import ENSEMBLE_SIZE as DEFAULT_SIZE

    p.add_argument("--size", type=int, default=DEFAULT_SIZE if with_size_default else None, metavar="K",
                   help=f"greedy selection steps with replacement: weights are multiples of 1/K "
                        f"(default: {DEFAULT_SIZE}{'' if with_size_default else ', or the size of the ensemble already chosen'})")
    p.add_argument("--refit", action="store_true",
                   help="also retrain the chosen members on training + validation steps, each for its best epoch count")
    p.add_argument("--jobs", type=int, help="refits at once, one thread each (default: one per CPU)")


def _add_data(p: argparse.ArgumentParser, describe: bool = False) -> None:
    """--data; with ``describe`` also the flags that describe a file of the user's own (rnn_core.config.Dataset)."""
    if not describe:
        p.add_argument("--data", metavar="PATH", help="the data file (default: the one the model or the run was "
                       "trained on; the built-in data set: $RNN_SEARCH_DATA, the cache, or a download)")
        return
    from rnn_core.config import Dataset

    p.add_argument("--data", metavar="PATH", help="your own CSV or Parquet file (with --time and --target), or a "
                   "copy of the built-in data set's file (default: $RNN_SEARCH_DATA, the cache, or a download)")
    group = p.add_argument_group("the series: a file of your own (without --time and --target: the built-in data set)")
    group.add_argument("--dataset", dest="dataset_file", metavar="FILE.yaml",
                       help="a YAML file with a 'dataset:' block of these settings (and file: PATH); flags override it")
    for s in settings(Dataset):
        flags.add_setting(group, s)


# --------------------------------------------------------------------------------------- data


def cmd_data_info(args: argparse.Namespace) -> int:
    from rnn_core.data import load
    from search.options import transform_open

    show.data_info(load(_config(DataConfig, args), args.data, suit=transform_open(args.argv)))
    return 0


# --------------------------------------------------------------------------------------- train / predict


def cmd_train(args: argparse.Namespace) -> int:
    from search.single import train_one

    res, ckpt, _ = train_one(_config(DataConfig, args), pick(ModelConfig, vars(args)), _config(TrainConfig, args),
                             args.data, args.out, args.wandb, args.argv)
    return 0 if res.status != "non_finite" or ckpt.exists() else 1


def cmd_predict(args: argparse.Namespace) -> int:
    from rnn_core.api import Model

    model = Model.load(args.file)  # a model or an ensemble file: one forecaster
    table = model.predict(args.data, args.at, args.levels)
    print(show.forecast_as(table, args.format), end="") if args.format != "table" else show.forecast(table, model)
    return 0


# --------------------------------------------------------------------------------------- search


def _search_options(args: argparse.Namespace) -> Any:
    from search.options import SearchOptions, flags_given

    data = _config(DataConfig, args)
    return SearchOptions(**pick(SearchOptions, vars(args)), data_path=args.data, data=data,
                         data_given=flags_given(getattr(args, "argv", [])))


def cmd_tune(args: argparse.Namespace) -> int:
    opts = _search_options(args)  # a bad value is refused before anything heavy loads
    from search.runlock import refuse_taken

    refuse_taken(args.resume, args.name, args.storage)
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
    print(f"\nexperiment: {path}  ({len(summaries)} trials)\ntop {min(5, len(summaries))} by val MAE at each trial's "
          f"kept checkpoint (its epoch of min {summaries[0].metric}):")
    show.trials_table(summaries, 5)
    show.best(best, show.run_unit(path))
    if args.ensemble:
        from search.results import build_ensemble

        show.ensemble(build_ensemble(path, data_path=args.data), show.run_unit(path), show.run_freq(path))
    print(f"\nnext: rnn-search test {path} --plots plots/   |   rnn-search export {path} --out model.pt")
    if errored:
        from rnn_core.errors import first_line
        from search.storage import name

        print(f"error: {len(errored)} of {len(grid)} trials ended in error after their retries (first: "
              f"{first_line(errored[0].error)}); `rnn-search tune --resume {name(path)}` retries them", file=sys.stderr)
        return 1
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from search.results import build_ensemble

    rep = build_ensemble(args.run, args.storage, size=args.size, refit=args.refit, data_path=args.data, jobs=args.jobs)
    path = rep.file.rsplit("/", 1)[0]
    show.ensemble(rep, show.run_unit(path), show.run_freq(path))
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
    show.trials_table(summaries, args.top)
    show.best(best, show.run_unit(path))
    rep = read_ensemble_report(path)
    if rep is not None:
        show.ensemble(rep, show.run_unit(path), show.run_freq(path))
        if current_ensemble(path, summaries) is None:
            print(f"(chosen before the latest trials: `rnn-search ensemble {args.run}` chooses again)")
    else:
        print(f"\nno ensemble yet: rnn-search ensemble {args.run}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from search.results import export_best

    if args.single:
        out, best, (val_mae, val_rmse) = export_best(args.run, args.out, args.storage, args.data)
        from search.results import best_trial

        path = best_trial(args.run, args.storage)[2]
        d = show.decimals([val_mae, val_rmse])
        print(f"wrote {out}: trial {best.trial_id}, epoch {best.best_epoch}, val MAE {val_mae:.{d}f}, RMSE "
              f"{val_rmse:.{d}f} {show.run_unit(path)} as the file forecasts")
        return 0
    import tempfile

    from search import storage
    from search.results import chosen_model

    model, what = chosen_model(args.run, args.storage, refit=args.refit, data_path=args.data, size=args.size, jobs=args.jobs)
    with tempfile.TemporaryDirectory() as tmp:
        storage.write_bytes(args.out, storage.download(model.source, tmp).read_bytes())  # atomic: never half-written
    print(f"wrote {args.out}: {what}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from rnn_core.metrics import evaluate_model
    from search.results import model_or_run

    lm, title, experiment, found, what = model_or_run(args.target, args.storage, args.single, args.refit, args.data)
    if what:
        log.info(what)  # talk: the table's title names it too
    data = args.data
    if experiment and not data:  # the file the run searched, when it is on this machine
        from search.results import recorded_data_path

        data = recorded_data_path(experiment)
    ev = evaluate_model(lm, data, args.split, levels=args.levels)
    show.scores(ev, title, args.split, args.list)
    if args.plots:
        written = show.test_plots(ev, Path(args.plots), args.split, args.origins, title)
        if experiment:
            written.append(show.history_plot(experiment, found, Path(args.plots)))
        for w in written:
            print(f"wrote {w}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from search.dashboard import serve

    return serve(args.run, args.storage, host=args.host, port=args.port)


def cmd_submit(args: argparse.Namespace) -> int:
    from search.jobs import follow, search_command, submit

    rest, env = search_command(args.command, args.env)
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
    p = _Parser(prog="rnn-search", description="Hyperparameter search for RNN forecasters of any regular series: the built-in data set, or a "
                "CSV, Parquet file or data frame of your own (--data FILE --time COL --target COL).")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_model_commands, _tune_command, _result_commands, _cluster_commands):
        add(sub)
    backtest.add_command(sub, _add_data, _add_storage)
    return p


def _model_commands(sub: Any) -> None:
    """data info, train, predict: no Ray."""
    d = sub.add_parser("data", help="inspect the data set").add_subparsers(dest="data_cmd", required=True, metavar="ACTION")
    di = d.add_parser("info", help="source, rows, steps filled, splits and features")
    _add_data(di, describe=True)
    flags.add_settings(di, DataConfig)
    di.set_defaults(func=cmd_data_info)

    t = sub.add_parser("train", help="train one model without Ray (defaults: the lecture's RNN 128x2)")
    _add_data(t, describe=True)
    t.add_argument("--out", default="runs/train", help="directory for the best checkpoint model.pt (default: %(default)s)")
    t.add_argument("--wandb", choices=("off", "offline", "online"), default="off", help="Weights & Biases logging (default: %(default)s)")
    for cls in CONFIGS:
        flags.add_settings(t, cls)
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="forecast the steps after an origin with a saved model")
    pr.add_argument("file", help="model.pt (from train, export or a trial checkpoint)")
    _add_data(pr)
    pr.add_argument("--at", metavar="TIMESTAMP", help="forecast origin, the last input step (default: the last step with a known target)")
    pr.add_argument("--levels", type=flags.argtype(flags.levels, "levels"), metavar="A,B",
                    help="interval levels, e.g. 0.8,0.95 (default: the model's stored ones, else 0.8,0.95)")
    pr.add_argument("--format", choices=("table", "csv", "json"), default="table", help="stdout as (default: %(default)s)")
    pr.set_defaults(func=cmd_predict)


def _tune_command(sub: Any) -> None:
    from search.options import SearchOptions  # no Ray: Ray loads only when a search is built
    from search.space import PRESETS

    tu = sub.add_parser("tune", help="run (or resume) a Ray Tune search: Optuna TPE + ASHA")
    tu.add_argument("--resume", metavar="RUN", help="continue an interrupted experiment (run name under --storage, or a path)")
    tu.add_argument("--no-ensemble", dest="ensemble", action="store_false",
                    help="skip choosing an ensemble of the trials at the end (default: choose one; see `ensemble`)")
    flags.add_settings(tu, SearchOptions)  # one flag per field, its docstring the help (search/options.py)
    _add_data(tu, describe=True)
    flags.add_settings(tu, DataConfig, note="; for every trial unless the space sets it")
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
    te.add_argument("--levels", type=flags.argtype(flags.levels, "levels"), metavar="A,B",
                    help="interval levels to report, e.g. 0.8,0.95 (default: the model's stored ones, else 0.8,0.95)")
    te.add_argument("--origins", type=flags.argtype(flags.texts, "origins"), metavar="T,T",
                    help="with --plots and horizon > 1: origins (last input steps) of the forecasts drawn, e.g. "
                         "'2024-11-14 23:00,2024-12-24 23:00' (default: four origins spread over the split)")
    te.add_argument("--single", action="store_true", help="for an experiment: its best trial instead of its ensemble")
    te.add_argument("--refit", action="store_true", help="for an experiment: its ensemble refit on training + validation steps")
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


class _StderrHandler(logging.StreamHandler):
    """Talk on stderr: whatever sys.stderr is now (in-process callers, pytest among them, swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rnn-search` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)  # before anything heavy is imported: --help stays fast
    args.argv = argv
    handler = _StderrHandler()  # talk on stderr: stdout holds only the data and tables
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler], force=True)
    for noisy in ("ray", "optuna", "filelock", "urllib3", "matplotlib", "wandb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.verbose:
        # Tune's driver logs end a search with tracebacks and its own ways back (`Tuner.restore(...)`); the
        # search's own lines say what happened and how to resume (--verbose shows them).
        # (and on a busy machine Tune's "... may be a performance bottleneck" timings are about Ray, not the user)
        for tune_driver in ("ray.tune.tune", "ray.tune.execution.tune_controller", "ray.tune.execution.experiment_state",
                            "ray.tune.utils.util"):
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
