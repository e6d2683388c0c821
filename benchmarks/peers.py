"""The peers side by side (issue 21): NeuralForecast's AutoLSTM, AutoGRU and AutoNHITS on exactly the product's
test targets (horizon 1: every test origin t of the product's split, target hour t+1), with the same information
the product's members see: past counts (cnt, and casual/registered as history), past weather and the
missing-hour flag as historical exogenous inputs, the calendar of the target hour (the product's own calendar
features: hour/day-of-week/month sines and cosines, holiday, workingday) as future exogenous inputs. Each Auto
model searches with Optuna (TPE, seed 0) over NeuralForecast's default space, with the windows set to 24, 48 or
168 hours (its defaults are multiples of the horizon: 1-64 hours for h=1), `--samples` trials and `--minutes` of
search at most (Optuna's timeout: a trial started before it ends runs to its end; the wall time is printed).
Validation: the `--val-hours` hours before the test period. Evaluation: NeuralForecast's cross_validation with
step 1 and refit=False over the test period: rolling one-step forecasts from the fitted model, no refitting.

NeuralForecast is in the `bench` extra (not a dependency of the product):

  pip install -e '.[bench]'
  python benchmarks/peers.py --split default --minutes 12 --samples 10 --ours default=20.32,32.97

Results are cached per period (benchmarks/.peers/<split>.json) and recorded together, one row per model and
period, beside the product's rows given with --ours LABEL=MAE,RMSE (from benchmarks/budget_curve.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import DEFAULT_CSV, record, revision  # this folder; rnn_core comes from the installed package

from rnn_core.config import DataConfig, split_kwargs  # noqa: E402
from rnn_core.config import default_dataset  # noqa: E402
from rnn_core.data import load_frame  # noqa: E402
from rnn_core.features import future_names, known  # noqa: E402
from rnn_core.forecaster import split_targets  # noqa: E402

log = logging.getLogger("peers")
HIST = ["temp", "atemp", "hum", "windspeed", "weathersit", "is_missing", "casual", "registered"]
MODELS = {"lstm": "AutoLSTM", "gru": "AutoGRU", "nhits": "AutoNHITS"}
CACHE = Path(__file__).with_name(".peers")


def long_frame(frame: pd.DataFrame, last: pd.Timestamp) -> pd.DataFrame:
    """The product's hourly grid as NeuralForecast's long frame up to the last test target: unique_id, ds, y
    (cnt), the historical inputs and the calendar of each hour [T, 3 + 8 + 9]."""
    ds = default_dataset()
    cal = known(pd.DatetimeIndex(frame.index), frame, ds)  # [T, 9]: the product's inputs known in advance
    df = pd.DataFrame({"unique_id": "bikes", "ds": frame.index, "y": frame["cnt"].to_numpy(np.float64)})
    frame = frame.assign(weathersit=frame[[f"weather_{i}" for i in range(1, 5)]].to_numpy().argmax(axis=1) + 1.0)
    for c in HIST:
        df[c] = frame[c].to_numpy(np.float64)
    for i, c in enumerate(future_names(ds)):
        df[f"cal_{c}"] = cal[:, i]
    return df[df["ds"] <= last].reset_index(drop=True)


def auto_model(name: str, samples: int, minutes: float, seed: int):
    """An Auto model over NeuralForecast's default space, the windows in hours and the exogenous inputs set."""
    import optuna
    import neuralforecast.auto as auto
    from neuralforecast.common._base_auto import OptunaOptions

    cls = getattr(auto, MODELS[name])
    base = cls.get_default_config(h=1, backend="optuna")
    futr = [f"cal_{c}" for c in future_names(default_dataset())]

    def config(trial):
        c = base(trial)
        window = trial.suggest_categorical("window", [24, 48, 168])
        c.update(input_size=window, hist_exog_list=HIST, futr_exog_list=futr, scaler_type="robust",
                 accelerator="cpu", enable_progress_bar=False, logger=False, enable_model_summary=False)
        if "inference_input_size" in c:
            c["inference_input_size"] = window  # the default (-1) feeds the recurrent peers all of history
        return c

    return cls(h=1, config=config, num_samples=samples, backend="optuna",
               search_alg=optuna.samplers.TPESampler(seed=seed),
               optuna_options=OptunaOptions(study_kwargs={"timeout": 60 * minutes}))


def run_peer(name: str, df: pd.DataFrame, targets: pd.DataFrame, val_hours: int, args) -> dict:
    from neuralforecast import NeuralForecast

    test_hours = int((df["ds"] > targets["ds"].min() - pd.Timedelta(hours=1)).sum())
    nf = NeuralForecast(models=[auto_model(name, args.samples, args.minutes, args.seed)], freq="h")
    t0 = time.perf_counter()
    cv = nf.cross_validation(df=df, val_size=val_hours, test_size=test_hours, n_windows=None, step_size=1,
                             refit=False)
    wall = time.perf_counter() - t0
    got = targets.merge(cv[["ds", MODELS[name]]], on="ds", how="left")
    if got[MODELS[name]].isna().any():
        raise SystemExit(f"{name}: {int(got[MODELS[name]].isna().sum())} test targets without a forecast")
    err = got[MODELS[name]].clip(lower=0).to_numpy() - got["y"].to_numpy()  # counts are never negative
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))), "minutes": wall / 60,
            "targets": len(got), "samples": args.samples, "samples_run": len(getattr(getattr(nf.models[0], "results", None), "trials", [])),
            "budget_min": args.minutes, "measured": time.strftime("%Y-%m-%d", time.gmtime()) + f", commit {revision()}"}


def table(cache: dict[str, dict], ours: dict[str, tuple[float, float]]) -> str:
    rows = ["| period (test) | model | test MAE | test RMSE | wall minutes (search + rolling test) | measured |",
            "|---|---|---|---|---|---|"]
    for split, res in cache.items():
        if split in ours:
            rows.append(f"| {split} | **rnn-search, default preset** | **{ours[split][0]:.2f}** | **{ours[split][1]:.2f}** | see budget curves | |")
        for name in MODELS:
            if name in res:
                r = res[name]
                rows.append(f"| {split} | NeuralForecast {MODELS[name]} ({r.get('samples_run', '?')} of {r['samples']} samples "
                            f"in its {r['budget_min']:g} min) "
                            f"| {r['mae']:.2f} | {r['rmse']:.2f} | {r['minutes']:.1f} | {r.get('measured', '')} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="default", help="default, or VAL_START,TEST_START[,TEST_END] (as rnn-search)")
    ap.add_argument("--models", default="lstm,gru,nhits")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=12.0, help="search minutes per model (Optuna's timeout)")
    ap.add_argument("--val-hours", type=int, default=61 * 24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ours", action="append", default=[], metavar="SPLIT=MAE,RMSE",
                    help="the product's shipped test MAE and RMSE on a period (benchmarks/budget_curve.py)")
    ap.add_argument("--data", default=str(DEFAULT_CSV))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(2)
    frame = load_frame(args.data)[0]
    origins, y = split_targets(frame, DataConfig(**split_kwargs(args.split)), "test")  # [N], [N, 1]
    targets = pd.DataFrame({"ds": frame.index[origins + 1], "y": y[:, 0]})
    df = long_frame(frame, targets["ds"].max())
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{args.split.replace(',', '_')}.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    for name in filter(None, args.models.split(",")):  # --models "": record the cached results only
        log.info("%s on %s: %d test targets %s .. %s", MODELS[name], args.split, len(targets),
                 targets["ds"].min(), targets["ds"].max())
        cache[name] = run_peer(name, df, targets, args.val_hours, args)
        log.info("%s: test MAE %.2f RMSE %.2f in %.1f min", MODELS[name], cache[name]["mae"], cache[name]["rmse"],
                 cache[name]["minutes"])
        path.write_text(json.dumps(cache, indent=1))
    everything = {p.stem.replace("_", ","): json.loads(p.read_text()) for p in sorted(CACHE.glob("*.json"))}
    ours = {s: tuple(float(v) for v in mr.split(",")) for s, mr in (o.split("=", 1) for o in args.ours)}
    record("The peers side by side: NeuralForecast's AutoLSTM, AutoGRU and AutoNHITS on the product's test targets",
           __doc__.split("\n\n")[0].split(":", 1)[1].strip() + "\n\n" + table(everything, ours))


if __name__ == "__main__":
    main()
