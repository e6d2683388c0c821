"""The suite (issue 46): the product's default preset and its peers on real series of every kind
(benchmarks/suite_data.py), on exactly the product's test targets, at one step and at a day or week of steps.

Targets: the product's own test split of each series (its last tenth; the built-in data set's own months), every
origin at one step ahead; at the longer horizon the origins H steps apart, the last one ending at the last test
step (windows that tile the test period, as NeuralForecast's cross_validation with step_size = h). Every
forecaster is scored on those targets with MAE, RMSE, MASE (over the in-sample seasonal naive), sMAPE and WAPE
(rnn_core.backtest.score, the product's own scoring) beside the naive baselines.

  ours    the product: `rnn-search tune --preset default --time-budget M` (then its ensemble), each run in
          this machine's 2 cores; Ray must run in a private network namespace:
          unshare -rn sh -c 'ip link set lo up && exec python benchmarks/suite.py ours --sets elec --horizons 1'
  gbdt    mlforecast + LightGBM on lags at the series' seasons, rolling means, the calendar of the target step
          and the covariates (past ones lagged by the horizon), with or without a first difference as validation
          prefers; trained on everything before the test period (bench extra)
  nf_lstm, nf_nhits
          NeuralForecast's AutoLSTM and AutoNHITS (Optuna TPE over their default spaces, the input window a
          season or two, `--samples` trials within `--minutes`), the past covariates as historical inputs and
          the product's known-future inputs as future ones; cross_validation with refit=False (bench extra)
  autogluon
          AutoGluon-TimeSeries, preset best_quality within `--minutes`, then backtest_predictions over the
          test windows (no refit); in a venv of its own, as it pins mlforecast < 0.15
  table   records the tables in RESULTS.md ("The suite")

Each result is cached in benchmarks/.suite/<set>-h<H>/<forecaster>.npz with its forecasts, so that a run is
resumable and a table is rebuilt without training anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import DEFAULT_CSV, record, revision  # this folder; rnn_core comes from the installed package
import suite_data
from suite_data import SUITE, Member, write

from rnn_core.backtest import score  # noqa: E402
from rnn_core.config import DataConfig, Dataset, default_dataset  # noqa: E402
from rnn_core.data import build  # noqa: E402
from rnn_core.series import read_frame  # noqa: E402

log = logging.getLogger("suite")
CACHE = Path(__file__).with_name(".suite")
LIST_FIELDS = {"past", "future", "counts", "features"}


def dataset_of(member: Member) -> Dataset:
    """The Dataset the member's flags describe (the built-in one without flags)."""
    if not member.describe:
        return default_dataset()
    pairs = dict(zip(member.describe[::2], member.describe[1::2]))
    fields = {k[2:].replace("-", "_"): (tuple(v.split(",")) if k[2:] in LIST_FIELDS else v) for k, v in pairs.items()}
    return Dataset(**fields)


def problem(member: Member, horizon: int) -> tuple[Path, pd.DataFrame, DataConfig, np.ndarray]:
    """(csv, frame on its grid, data config, [N] evaluation origins) of one member at one horizon."""
    csv, _ = write(member, CACHE / "data", Path(os.environ.get("RNN_SEARCH_DATA", DEFAULT_CSV)))
    frame, *_, resolved = read_frame(csv, dataset_of(member))  # the description with its inferred step
    cfg = DataConfig(dataset=resolved, horizon=horizon, target_transform="standard")  # any: only the split is read
    origins = build(frame, cfg)["test"].origin  # [N] every test origin of the product's split
    if horizon > 1:  # windows H steps apart, the last one ending at the last test step (per series: all end together)
        keep = np.zeros(len(origins), bool)
        for t in np.unique(frame.index.to_numpy()[origins])[::-1][::horizon]:
            keep |= frame.index.to_numpy()[origins] == t
        origins = origins[keep]
    return csv, frame, cfg, origins


def folder(member: Member, horizon: int) -> Path:
    return CACHE / f"{member.name}-h{horizon}"


def save(member: Member, horizon: int, name: str, pred: np.ndarray, **info: object) -> None:
    out = folder(member, horizon)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"{name}.tmp.npz"
    np.savez(tmp, pred=pred, info=json.dumps({**info, "measured": time.strftime("%Y-%m-%d"), "commit": revision()}))
    tmp.replace(out / f"{name}.npz")


def reforecast(member: Member, horizon: int, seed: int) -> None:
    """The cached run's shipped ensemble forecasting the origins again (its search's record kept)."""
    from rnn_core.forecaster import load_model

    _, frame, _, origins = problem(member, horizon)
    with np.load(folder(member, horizon) / "ours.npz") as z:
        info = json.loads(str(z["info"]))
    model = load_model(CACHE / "runs" / f"{member.name}-h{horizon}-s{seed}" / "ensemble.pt")
    save(member, horizon, "ours", model.forecast(frame, origins), **{k: v for k, v in info.items()
                                                                        if k not in ("measured", "commit")})


def run_ours(member: Member, horizon: int, minutes: float, seed: int) -> None:
    """The product's default preset within ``minutes`` of search, then its ensemble, forecasting the origins."""
    from rnn_core.forecaster import load_model

    csv, frame, cfg, origins = problem(member, horizon)
    name = f"{member.name}-h{horizon}-s{seed}"
    runs = CACHE / "runs"
    cmd = ["rnn-search", "tune", "--preset", "default", "--data", str(csv), *member.describe, "--horizon", str(horizon),
           "--time-budget", str(minutes), "--seed", str(seed), "--storage", str(runs), "--name", name]
    if (runs / name).exists():  # a run that did not finish its forecasts: started again from nothing
        import shutil

        shutil.rmtree(runs / name)
    log.info("%s", " ".join(cmd))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    model = load_model(runs / name / "ensemble.pt")
    pred = model.forecast(frame, origins)
    save(member, horizon, "ours", pred, minutes=wall / 60, budget=minutes, seed=seed, command=" ".join(cmd[1:]))



# --------------------------------------------------------------------------------------- the GBDT on lags


def target_frame(frame: pd.DataFrame, cfg: DataConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """(the peers' long frame: unique_id, ds, y with a gap's value the one before it; [T] the series of each row)."""
    ds = cfg.dataset
    uid = frame[ds.series].astype(str).to_numpy() if ds.series else np.full(len(frame), "series")
    df = pd.DataFrame({"unique_id": uid, "ds": frame.index, "y": frame[ds.target].to_numpy(np.float64)})
    df["y"] = df.groupby("unique_id")["y"].ffill().bfill()
    return df, uid


def gbdt_frame(frame: pd.DataFrame, cfg: DataConfig, horizon: int) -> tuple[pd.DataFrame, list[str]]:
    """mlforecast's long frame from the product's grid: unique_id, ds, y (a gap: the value before), the
    known-future covariates as they are and the past ones (and counts) lagged by the horizon, so that no input of
    a target step comes after its origin. Returns (frame, its exogenous columns)."""
    ds, (df, uid) = cfg.dataset, target_frame(frame, cfg)
    exog = []
    for c in ds.future:
        df[c] = frame[c].to_numpy(np.float64)
        exog.append(c)
    for c in (*ds.past, *ds.counts):
        df[f"{c}_lag{horizon}"] = pd.Series(frame[c].to_numpy(np.float64)).groupby(uid).shift(horizon).to_numpy()
        exog.append(f"{c}_lag{horizon}")
    return df, exog


def gbdt_features(freq: str) -> dict:
    """Lags at the series' seasons, rolling means over a season, the calendar of the target step."""
    from mlforecast.lag_transforms import RollingMean
    from rnn_core.series import seasons

    found = seasons(freq) or (4,)
    lags = sorted({1, 2, 3, *found, *(2 * m for m in found)})
    step = pd.tseries.frequencies.to_offset(freq)
    try:
        sub_daily = pd.Timedelta(step) < pd.Timedelta(days=1)
    except ValueError:
        sub_daily = False
    dates = ["month", "dayofyear"] if not sub_daily else ["month", "dayofweek", "dayofyear", _step_of_day]
    if freq.upper().startswith("D"):
        dates = ["month", "dayofweek", "dayofyear"]
    if freq.upper().startswith(("M", "W")):
        dates = ["month"] if freq.upper().startswith("M") else ["month", _week]
    return {"lags": lags, "lag_transforms": {1: [RollingMean(window_size=m) for m in found]}, "date_features": dates}


def _step_of_day(times: pd.DatetimeIndex) -> np.ndarray:
    return times.hour * 60 + times.minute


def _week(times: pd.DatetimeIndex) -> np.ndarray:
    return pd.DatetimeIndex(times).isocalendar().week.to_numpy().astype(int)


def gbdt_cv(df: pd.DataFrame, freq: str, horizon: int, windows: int, transforms: list, seed: int) -> pd.DataFrame:
    """mlforecast's rolling cross-validation, trained once on everything before the first window (refit=False)."""
    import lightgbm as lgb
    from mlforecast import MLForecast

    model = lgb.LGBMRegressor(n_estimators=500, learning_rate=0.05, num_leaves=63, subsample=0.8, subsample_freq=1,
                              colsample_bytree=0.8, random_state=seed, verbosity=-1, n_jobs=int(os.environ.get("SUITE_GBDT_JOBS", os.cpu_count())))
    fc = MLForecast(models={"gbdt": model}, freq=freq, target_transforms=transforms, **gbdt_features(freq))
    return fc.cross_validation(df, n_windows=windows, h=horizon, step_size=1 if horizon == 1 else horizon,
                               static_features=[], refit=False)



def _windows(frame: pd.DataFrame, cfg: DataConfig, origins: np.ndarray, horizon: int) -> tuple[int, pd.Timestamp, pd.Timestamp]:
    """(windows, first cutoff, last cutoff) of mlforecast's cross-validation that covers the origins."""
    times = pd.DatetimeIndex(frame.index[origins])
    step = pd.tseries.frequencies.to_offset(cfg.dataset.freq)
    grid = pd.date_range(times.min(), times.max(), freq=step)
    return (len(grid) - 1) // (1 if horizon == 1 else horizon) + 1, times.min(), times.max()


def gbdt_predictions(cv: pd.DataFrame, frame: pd.DataFrame, cfg: DataConfig, origins: np.ndarray, horizon: int) -> np.ndarray:
    """[N, H] the cross-validation's forecasts of the product's targets (by series, cutoff and step)."""
    ds = cfg.dataset
    uid = frame[ds.series].astype(str).to_numpy()[origins] if ds.series else np.full(len(origins), "series")
    step = pd.tseries.frequencies.to_offset(ds.freq)
    cut = pd.DatetimeIndex(frame.index[origins])
    keys = pd.DataFrame({"unique_id": np.repeat(uid, horizon), "cutoff": np.repeat(cut, horizon),
                         "ds": [c + (k + 1) * step for c in cut for k in range(horizon)]})
    got = keys.merge(cv[["unique_id", "cutoff", "ds", "gbdt"]], on=["unique_id", "cutoff", "ds"], how="left")
    if got["gbdt"].isna().any():
        raise SystemExit(f"gbdt: {int(got['gbdt'].isna().sum())} of the product's targets without a forecast")
    return got["gbdt"].to_numpy().reshape(len(origins), horizon)


def run_gbdt(member: Member, horizon: int, seed: int) -> None:
    """The GBDT on lags: its target form (level or first difference; per-series standardised for a panel) chosen
    on the same number of windows just before the test period, then trained on everything before the test."""
    from mlforecast.target_transforms import Differences, LocalStandardScaler

    _, frame, cfg, origins = problem(member, horizon)
    df, _ = gbdt_frame(frame, cfg, horizon)
    windows, first, last = _windows(frame, cfg, origins, horizon)
    step = pd.tseries.frequencies.to_offset(cfg.dataset.freq)
    panel = bool(cfg.dataset.series)
    forms = {"level": lambda: [LocalStandardScaler()] if panel else [],
             "difference": lambda: [Differences([1])] + ([LocalStandardScaler()] if panel else [])}
    t0 = time.perf_counter()
    val = df[df["ds"] <= first]
    scores = {}
    for name, make in forms.items():
        cv = gbdt_cv(val, cfg.dataset.freq, horizon, windows, make(), seed)
        scores[name] = float(np.mean(np.abs(cv["gbdt"] - cv["y"])))
    form = min(scores, key=scores.get)
    cv = gbdt_cv(df[df["ds"] <= last + horizon * step], cfg.dataset.freq, horizon, windows, forms[form](), seed)
    pred = gbdt_predictions(cv, frame, cfg, origins, horizon)
    save(member, horizon, "gbdt", pred, minutes=(time.perf_counter() - t0) / 60, form=form, val_mae=scores)




# --------------------------------------------------------------------------------------- NeuralForecast


NF_MODELS = {"nf_lstm": "AutoLSTM", "nf_nhits": "AutoNHITS"}
PEERS = ("ours", "gbdt", *NF_MODELS, "autogluon")  # the seasonal naive forecasts are always scored


def nf_frame(frame: pd.DataFrame, cfg: DataConfig) -> tuple[pd.DataFrame, list[str], list[str]]:
    """NeuralForecast's long frame: unique_id, ds, y (a gap: the value before), the past covariates (and counts)
    as historical inputs and the product's own known-future inputs (calendar, future covariates) as future ones."""
    from rnn_core.features import future_names, known

    ds, (df, _) = cfg.dataset, target_frame(frame, cfg)
    hist = [*ds.past, *ds.counts]
    for c in hist:
        df[c] = frame[c].to_numpy(np.float64)
    cal = known(pd.DatetimeIndex(frame.index), frame, ds)  # [T, K] the product's inputs known in advance
    futr = [f"k_{n}" for n in future_names(ds)]
    for i, c in enumerate(futr):
        df[c] = cal[:, i]
    return df, hist, futr


def nf_auto(name: str, cfg: DataConfig, horizon: int, hist: list[str], futr: list[str], samples: int, minutes: float,
            seed: int):
    """An Auto model over NeuralForecast's default space, its input window a season or two of the series, TPE."""
    import optuna
    import neuralforecast.auto as auto
    from neuralforecast.common._base_auto import OptunaOptions
    from rnn_core.series import seasons

    cls = getattr(auto, NF_MODELS[name])
    base = cls.get_default_config(h=horizon, backend="optuna")
    m = (seasons(cfg.dataset.freq) or (8,))[0]
    windows = sorted({m, 2 * m, max(m, 2 * horizon)})

    def config(trial):
        c = base(trial)
        window = trial.suggest_categorical("window", windows)
        c.update(input_size=window, hist_exog_list=hist, futr_exog_list=futr, scaler_type="robust", accelerator="cpu",
                 enable_progress_bar=False, logger=False, enable_model_summary=False, random_seed=seed)
        if "inference_input_size" in c:
            c["inference_input_size"] = window
        return c

    return cls(h=horizon, config=config, num_samples=samples, backend="optuna",
               search_alg=optuna.samplers.TPESampler(seed=seed),
               optuna_options=OptunaOptions(study_kwargs={"timeout": 60 * minutes}))


def run_nf(member: Member, horizon: int, name: str, samples: int, minutes: float, seed: int) -> None:
    """NeuralForecast's cross-validation (refit=False) over the test windows, validated on as many steps before."""
    from neuralforecast import NeuralForecast

    _, frame, cfg, origins = problem(member, horizon)
    df, hist, futr = nf_frame(frame, cfg)
    windows, first, last = _windows(frame, cfg, origins, horizon)
    step = pd.tseries.frequencies.to_offset(cfg.dataset.freq)
    df = df[df["ds"] <= last + horizon * step]
    val = len(pd.date_range(first, last + horizon * step, freq=step))  # as many steps as the test windows span
    nf = NeuralForecast(models=[nf_auto(name, cfg, horizon, hist, futr, samples, minutes, seed)], freq=cfg.dataset.freq)
    t0 = time.perf_counter()
    cv = nf.cross_validation(df=df, n_windows=windows, step_size=1 if horizon == 1 else horizon, val_size=val,
                             refit=False)
    cv = cv.rename(columns={NF_MODELS[name]: "gbdt"})  # the column gbdt_predictions reads
    pred = gbdt_predictions(cv, frame, cfg, origins, horizon)
    save(member, horizon, name, pred, minutes=(time.perf_counter() - t0) / 60, budget=minutes, samples=samples)



# --------------------------------------------------------------------------------------- AutoGluon


#: AutoGluon's preset for the most accurate forecasts (its FAQ: best_quality; it adds AutoETS, the optimized Theta, TFT
#: and DeepAR to medium_quality's light set, several validation windows and refits). medium_quality, AutoGluon's own
#: default, finished a weekly series in 10 s of a 12-minute budget: no match for a search that spends the budget.
AG_PRESET = "best_quality"


def run_ag(member: Member, horizon: int, minutes: float, seed: int, preset: str = AG_PRESET) -> None:
    """AutoGluon-TimeSeries with ``preset`` and ``minutes`` of time limit, trained on everything before the test
    period (its own validation windows at the end of that), then its backtest_predictions over the test windows
    (expanding window, no refit). Its own venv: it pins mlforecast < 0.15 (benchmarks/README: agvenv)."""
    from autogluon.timeseries import TimeSeriesDataFrame, TimeSeriesPredictor

    _, frame, cfg, origins = problem(member, horizon)
    df, hist, futr = nf_frame(frame, cfg)
    windows, first, last = _windows(frame, cfg, origins, horizon)
    step = pd.tseries.frequencies.to_offset(cfg.dataset.freq)
    df = df[df["ds"] <= last + horizon * step].rename(columns={"unique_id": "item_id", "ds": "timestamp", "y": "target"})
    for c in hist:  # past covariates: AutoGluon reads them as past_covariates (every column not known)
        df[c] = df[c].astype(float)
    data = TimeSeriesDataFrame.from_data_frame(df, id_column="item_id", timestamp_column="timestamp")
    train = data[data.index.get_level_values("timestamp") <= first]
    t0 = time.perf_counter()
    pr = TimeSeriesPredictor(prediction_length=horizon, freq=cfg.dataset.freq, target="target", eval_metric="MAE",
                             known_covariates_names=futr, path=str(folder(member, horizon) / "ag"), verbosity=1)
    pr.fit(train, presets=preset, time_limit=int(60 * minutes), random_seed=seed)
    fitted = time.perf_counter() - t0
    parts = pr.backtest_predictions(data, num_val_windows=windows, val_step_size=1 if horizon == 1 else horizon)
    cv = pd.concat([p.reset_index() for p in parts], keys=range(len(parts)), names=["w", "row"]).reset_index()
    cv["cutoff"] = cv.groupby(["w", "item_id"])["timestamp"].transform("min") - step
    cv = cv.rename(columns={"item_id": "unique_id", "timestamp": "ds", "mean": "gbdt"})
    pred = gbdt_predictions(cv, frame, cfg, origins, horizon)
    save(member, horizon, "autogluon", pred, minutes=(time.perf_counter() - t0) / 60, fit_minutes=fitted / 60,
         budget=minutes, preset=preset, best=pr.model_best)


# --------------------------------------------------------------------------------------- the tables


def results(member: Member, horizon: int) -> tuple[dict[str, dict[str, float]], dict[str, dict], int]:
    """(forecaster -> scores, forecaster -> its recorded info, targets) of every cached forecaster and the naive
    baselines on the member's targets at one horizon."""
    _, frame, cfg, origins = problem(member, horizon)
    preds, info = {}, {}
    for f in sorted(folder(member, horizon).glob("*.npz")):
        if f.name.endswith(".tmp.npz"):
            continue
        with np.load(f) as z:
            preds[f.stem], info[f.stem] = z["pred"], json.loads(str(z["info"]))
    return score(frame, cfg, origins, preds), info, len(origins) * horizon


def tables(names: list[str]) -> str:
    """The summary (ours against the best peer at each horizon), then every forecaster of every member at both
    horizons in MAE, RMSE and MASE (one row each; sMAPE and WAPE are in `table`'s cache, as every score)."""
    summary = ["| data set | h | targets | ours MAE | best peer | its MAE | ours vs best peer | MASE ours / peer |",
               "|---|---|---|---|---|---|---|---|"]
    detail = ["| data set | forecaster | h = 1: MAE / RMSE / MASE | day or week ahead: h, MAE / RMSE / MASE | minutes | notes |",
              "|---|---|---|---|---|---|"]
    for name in names:
        member, rows = SUITE[name], {}
        for h in member.horizons:
            scores, info, n = results(member, h)
            if not info:
                continue
            _summary_row(summary, name, h, n, scores)
            d, dm = _places(scores)
            for k, v in scores.items():
                i = info.get(k, {})
                rows.setdefault(k, {"h1": "-", "hl": "-", "min": [], "note": _note(k, i)})
                rows[k]["h1" if h == 1 else "hl"] = (f"{'' if h == 1 else f'{h}: '}{v['mae']:.{d}f} / {v['rmse']:.{d}f} / "
                                                   f"{v['mase']:.{dm}f}")
                rows[k]["min"].append(f"{i.get('minutes', 0):.1f}")
        for k, r in sorted(rows.items(), key=lambda kv: (kv[0] != "ours", kv[0])):
            detail.append(f"| {name} | {k} | {r['h1']} | {r['hl']} | {' / '.join(r['min'])} | {r['note']} |")
    missing = [f"{name} h={h}: {', '.join(k for k in PEERS if not (folder(SUITE[name], h) / f'{k}.npz').exists())}"
               for name in names for h in SUITE[name].horizons]
    missing = [m for m in missing if not m.endswith(": ")]
    provenance = suite_data.__doc__.split("\n\n")[1]
    return (f"The data sets (each ships inside a package; nothing is downloaded or committed):\n\n{provenance}\n\n"
            "Ours against the best peer measured (a negative share: ours lower), on the product's own test targets; "
            "MASE over each series' in-sample seasonal naive:\n\n" + "\n".join(summary)
            + ("\n\nNot measured yet: " + "; ".join(missing) + "." if missing else "")
            + "\n\nEvery forecaster (naive: the seasonal naive forecasts and persistence):\n\n" + "\n".join(detail))


def _places(scores: dict[str, dict[str, float]]) -> tuple[int, int]:
    from search.show import decimals

    return decimals([v["mae"] for v in scores.values()]), decimals([v["mase"] for v in scores.values()])


def _summary_row(summary: list[str], name: str, h: int, n: int, scores: dict[str, dict[str, float]]) -> None:
    peers = {k: v for k, v in scores.items() if k != "ours"}
    if "ours" not in scores or not peers:
        return
    best = min(peers, key=lambda k: peers[k]["mae"])
    (d, dm), o, b = _places(scores), scores["ours"], peers[best]
    summary.append(f"| {name} | {h} | {n:,} | {o['mae']:.{d}f} | {best} | {b['mae']:.{d}f} | "
                   f"{100 * (o['mae'] / b['mae'] - 1):+.1f} % | {o['mase']:.{dm}f} / {b['mase']:.{dm}f} |")


def _note(name: str, info: dict) -> str:
    if name == "ours":
        return f"default preset, seed {info.get('seed')}, budget {info.get('budget')} min"
    if name == "gbdt":
        return f"mlforecast + LightGBM, form {info.get('form')} (by validation)"
    if name == "autogluon":
        return (f"{info.get('preset')}, budget {info.get('budget')} min, best {info.get('best')}; models that need "
                "hub weights (Chronos-2, Toto-2) skipped offline")
    if name in NF_MODELS:
        return f"budget {info.get('budget')} min" + (f", {info['samples']} trials at most" if "samples" in info else "")
    return "naive"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("ours", "reforecast", "gbdt", *NF_MODELS, "autogluon", "table"))
    p.add_argument("--sets", default=",".join(SUITE), help="members of the suite (default: all)")
    p.add_argument("--horizons", default="1,long", help="1, long (the member's day or week of steps), or both")
    p.add_argument("--minutes", type=float, default=12.0, help="ours: the search's time budget (default: 12)")
    p.add_argument("--samples", type=int, default=20, help="nf_*: Optuna trials at most (default: 20)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for name in args.sets.split(","):
        member = SUITE[name]
        for h in [member.horizons[0] if w == "1" else member.horizons[1] for w in args.horizons.split(",")]:
            if args.action == "table":
                continue
            if args.action == "reforecast":
                reforecast(member, h, args.seed)
                continue
            if (folder(member, h) / f"{args.action}.npz").exists():
                log.info("%s h=%d %s: cached", name, h, args.action)
                continue
            t0 = time.perf_counter()
            if args.action == "ours":
                run_ours(member, h, args.minutes, args.seed)
            elif args.action == "gbdt":
                run_gbdt(member, h, args.seed)
            elif args.action == "autogluon":
                run_ag(member, h, args.minutes, args.seed)
            else:
                run_nf(member, h, args.action, args.samples, args.minutes, args.seed)
            log.info("%s h=%d %s: done in %.1f min", name, h, args.action, (time.perf_counter() - t0) / 60)
    if args.action == "table":
        record("The suite: the default preset and its peers on real series", tables(args.sets.split(",")))


if __name__ == "__main__":
    main()
