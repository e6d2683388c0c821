"""What a second stage after the knee would buy: the shipped ensemble's members trained again with new seeds
(the same settings, data, scalers, epochs and early stopping as their trials), then the ensemble chosen again
by the product's own selection and post-processing over the search's trials and the new members together.

The question it answers (issue 21, point 3): can minutes spent after a search has stopped improving buy
quality that more trials of the same search do not (its population has converged: the members are near
copies of one setting)? Seeds are the cheapest diversity there is; if they buy nothing, more of the same
settings will not either.

Usage:
  python benchmarks/second_stage.py LABEL=RUN [LABEL=RUN ...] [--seeds 2] [--members 5] [--epochs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from _common import record  # this folder; rnn_core and search come from the installed package
import numpy as np  # noqa: E402

from rnn_core.checkpoint import model_from_bundle  # noqa: E402
from rnn_core.config import ENSEMBLE_SIZE, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from rnn_core.ensemble import ENSEMBLE_SELECTION
from rnn_core.data import FeatureScaler, TargetScaler, build  # noqa: E402
from rnn_core.ensemble import choose_from_forecasts, validation_forecasts  # noqa: E402
from rnn_core.forecaster import member_bundle, split_targets  # noqa: E402
from rnn_core.metrics import mae, rmse  # noqa: E402
from search.results import best_trial, calibration_loss, candidate_bundles, run_frame  # noqa: E402

log = logging.getLogger("second_stage")


def reseed(args: tuple[dict[str, Any], Any, int, int]) -> dict[str, Any]:
    """One member trained again from scratch with seed ``seed`` (``epochs``: its max epochs, 0 = the trial's);
    its trial's stored scalers, so its inputs are the trial's own."""
    from rnn_core.train import fit

    bundle, frame, seed, epochs = args
    cfg = DataConfig.from_dict(bundle["data_config"])
    data = build(frame, cfg, scalers=(FeatureScaler.from_dict(bundle["feature_scaler"]),
                                      TargetScaler.from_dict(bundle["target_scaler"])))
    tcfg = TrainConfig.from_dict(bundle["train_config"])
    tcfg = dataclasses.replace(tcfg, seed=seed, num_threads=1, max_epochs=epochs or tcfg.max_epochs)
    res = fit(data, ModelConfig.from_dict(bundle["model_config"]), tcfg)
    out = member_bundle(bundle)
    out.update(weights=res.state["best_model"], best_model=res.state["best_model"], epoch=res.best_epoch,
               meta=dict(bundle.get("meta", {}), reseeded=seed))
    return out


def test_score(choice: Any, frame: Any) -> tuple[float, float]:
    origins, y = split_targets(frame, choice.forecaster.data_config, "test")  # [N], [N, H]
    pred = choice.forecaster.forecast(frame, origins)
    return mae(pred[:, :1], y[:, :1]), rmse(pred[:, :1], y[:, :1])


def one_run(label: str, run: str, seeds: int, members: int, epochs: int) -> str:
    """The table row of one finished search: shipped, then with the second stage's members as candidates."""
    best, summaries, path = best_trial(run)
    frame = run_frame(path)
    bundles = candidate_bundles(path, [s for s in summaries if s.checkpoint])
    loss = calibration_loss(best.metric)
    models = {n: model_from_bundle(b, n) for n, b in bundles.items()}
    F = validation_forecasts(models, frame)  # [M, N, H]
    first = choose_from_forecasts(models, F, frame, ENSEMBLE_SIZE, ENSEMBLE_SELECTION, loss)
    chosen = [m["trial_id"] for m in first.members if m["trial_id"] in bundles][:members]
    jobs = [(bundles[n], frame, 1000 + s, epochs) for n in chosen for s in range(seeds)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        extra = {f"{b[0]['meta']['trial_id']}-s{b[2]}": out for b, out in zip(jobs, pool.map(reseed, jobs))}
    minutes = (time.perf_counter() - t0) / 60
    new = {n: model_from_bundle(b, n) for n, b in extra.items()}
    F2 = validation_forecasts(new, frame)
    both = choose_from_forecasts({**models, **new}, np.concatenate([F, F2]), frame, ENSEMBLE_SIZE, ENSEMBLE_SELECTION, loss)
    only = choose_from_forecasts(new, F2, frame, ENSEMBLE_SIZE, ENSEMBLE_SELECTION, loss)
    a, b, c = (test_score(x, frame) for x in (first, both, only))
    picked = sum(m["weight"] for m in both.members if m["trial_id"] in new)
    log.info("%s: shipped %.2f, with the second stage %.2f (%.1f min)", label, a[0], b[0], minutes)
    return (f"| {label} | {len(bundles)} | {first.val_mae:.2f} / {a[0]:.2f} / {a[1]:.2f} | {len(chosen)} x {seeds} in "
            f"{minutes:.1f} min | {both.val_mae:.2f} / **{b[0]:.2f} / {b[1]:.2f}** ({picked:.0%}) | "
            f"{only.val_mae:.2f} / {c[0]:.2f} / {c[1]:.2f} | {100 * (b[0] / a[0] - 1):+.1f} % |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=RUN", help="finished searches (experiment paths)")
    ap.add_argument("--seeds", type=int, default=2, help="new seeds per member (default 2)")
    ap.add_argument("--members", type=int, default=5, help="the heaviest members trained again (default 5)")
    ap.add_argument("--epochs", type=int, default=0, help="their max epochs (default: the trials' own)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = [one_run(*r.split("=", 1), args.seeds, args.members, args.epochs) for r in args.runs]
    body = ("Horizon 1, bikes per hour; validation MAE (the shipped file's own forecast) / test MAE / test RMSE. The second "
            "stage trains the heaviest members of the shipped ensemble again with new seeds (2 at a time on 2 cores); "
            "the ensemble is then chosen again over the trials and the new members (in brackets: the weight the new "
            "members carry).\n\n| period | trials | shipped (val / test MAE / RMSE) | second stage | ensemble with it | "
            "its members alone | test MAE change |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    record("A second stage after the knee: the members trained again with new seeds", body)


if __name__ == "__main__":
    main()
