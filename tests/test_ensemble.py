"""Ensembles (rnn_core.ensemble, rnn_core.forecaster): greedy selection, the post-processing chain, the one-file
format and its refusals, refit. No Ray."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rnn_core.checkpoint import ENSEMBLE_FORMAT, CheckpointError, load_bundle, save_bundle, write_bundle
from rnn_core.config import TrainConfig
from rnn_core.data import load_frame
from rnn_core.ensemble import select
from rnn_core.forecaster import PostProcessed, WeightedMean, ensemble_of, load_model, save_forecaster
from rnn_core.postprocess import Calibration, NonNegative, ResidualCorrection
from rnn_core.refit import refit_bundle, train_through_val
from rnn_core.train import fit
from search.cli import main


# ------------------------------------------------------------------ selection


def test_selection_combines_members_whose_errors_cancel() -> None:
    target = np.zeros((100, 1))
    over, under = np.full((100, 1), 2.0), np.full((100, 1), -2.0)
    worse = np.full((100, 1), 3.0)
    weights, trace = select(np.stack([over, under, worse]), target, size=10)
    assert weights.tolist() == [0.5, 0.5, 0.0]  # +2 and -2 cancel; +3 never helps
    assert trace[0] == 2.0 and trace[1] == 0.0 and trace[-1] == 0.0
    assert weights.sum() == pytest.approx(1.0)


def test_selection_first_pick_is_the_best_single_model_and_ties_go_to_the_first() -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(size=(50, 3))
    cands = np.stack([target + rng.normal(scale=s, size=target.shape) for s in (1.0, 0.5, 0.5, 2.0)])
    cands[2] = cands[1]  # an exact duplicate of candidate 1
    weights, trace = select(cands, target, size=1, metric="rmse")
    assert weights.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert trace[0] == pytest.approx(np.sqrt(((cands[1] - target) ** 2).mean()))
    with pytest.raises(ValueError, match="do not match"):
        select(cands[:, :10], target, size=3)
    with pytest.raises(ValueError, match="at least 1"):
        select(cands, target, size=0)


# ------------------------------------------------------------------ two real members


@pytest.fixture(scope="module")
def members(bikes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny models trained for 1-2 epochs (different cells and seeds), saved as model files."""
    out = {}
    root = tmp_path_factory.mktemp("members")
    for name, cell, seed, epochs in (("a", "gru", 1, 2), ("b", "lstm", 2, 1)):
        mcfg = bikes.model_config(cell=cell, hidden_size=8)
        tcfg = TrainConfig(batch_size=512, max_epochs=epochs, seed=seed, num_threads=1, lr_schedule="cosine")
        res = fit(bikes, mcfg, tcfg)
        out[name] = save_bundle(root / f"{name}.pt", res.state, bikes, mcfg, tcfg, meta={"trial_id": name})
    return out


@pytest.fixture(scope="module")
def ensemble_file(members: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory.mktemp("ens") / "ensemble.pt", members, {"a": 1.0, "b": 3.0}, meta={"note": "test"})


def _save(path: Path, members: dict[str, Path], weights: dict[str, float], steps: tuple = (), meta: dict | None = None) -> Path:
    """An ensemble file of these member files, weights and post-processing steps."""
    base = ensemble_of({n: load_bundle(p) for n, p in members.items()}, weights)
    return save_forecaster(path, PostProcessed(base, tuple(steps), dict(meta or {})))


def test_an_ensemble_loads_without_ray_and_predicts_the_weighted_mean(ensemble_file: Path, members, hour_csv: Path,
                                                                      tmp_path: Path) -> None:
    # In a process where any import of ray fails: the file alone, rnn_core alone.
    code = ("import sys; sys.modules['ray'] = None\n"
            "import numpy as np\n"
            "from rnn_core import load_model, evaluate_model\n"
            f"ens = load_model({str(ensemble_file)!r})\n"
            f"ev = evaluate_model(ens, {str(hour_csv)!r}, 'test')\n"
            f"np.save({str(tmp_path / 'pred.npy')!r}, ev.prediction)\n"
            "print(type(ens.base).__name__, ens.base.names, ens.base.weights.tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "WeightedMean" and "[0.25, 0.75]" in out
    pred = np.load(tmp_path / "pred.npy")  # [N, 1]
    # The members, each loaded from its own file and forecasting on its own windows:
    from rnn_core.metrics import evaluate_model

    a, b = (evaluate_model(members[n], hour_csv, "test").prediction for n in ("a", "b"))
    assert pred.shape == a.shape and not np.allclose(a, b)
    np.testing.assert_allclose(pred, 0.25 * a + 0.75 * b, rtol=1e-6, atol=1e-4)


def test_the_cli_tests_and_predicts_with_an_ensemble_file(ensemble_file: Path, members, hour_csv: Path, capsys) -> None:
    assert main(["predict", str(ensemble_file), "--data", str(hour_csv), "--at", "2012-12-01 08:00"]) == 0
    ens_line = capsys.readouterr().out.splitlines()[-1]
    lines = []
    for n in ("a", "b"):
        assert main(["predict", str(members[n]), "--data", str(hour_csv), "--at", "2012-12-01 08:00"]) == 0
        lines.append(capsys.readouterr().out.splitlines()[-1])
    values = [float(x.split()[2]) for x in lines]  # hour (2 tokens), forecast, interval bounds
    assert ens_line.startswith("2012-12-01 09:00")
    assert float(ens_line.split()[2]) == pytest.approx(0.25 * values[0] + 0.75 * values[1], abs=0.011)
    assert main(["test", str(ensemble_file), "--data", str(hour_csv)]) == 0
    assert "model" in capsys.readouterr().out


def _resign(path: Path, out: Path, change) -> Path:
    """Rewrite an ensemble file with a changed payload and a valid checksum (a crafted file, not a damaged one)."""
    outer = torch.load(path, weights_only=True)
    payload = torch.load(io.BytesIO(outer["payload"].numpy().tobytes()), weights_only=True)
    change(payload)
    return write_bundle(out, payload, fmt=ENSEMBLE_FORMAT)


def test_damaged_or_inconsistent_ensemble_files_are_refused(ensemble_file: Path, tmp_path: Path, hour_csv: Path, capsys) -> None:
    raw = ensemble_file.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(raw[: len(raw) // 2])
    tampered = tmp_path / "tampered.pt"
    flipped = bytearray(raw)
    i = raw.index(b"hidden_size") if b"hidden_size" in raw else len(raw) // 2
    flipped[i] ^= 0xFF
    tampered.write_bytes(bytes(flipped))
    missing = _resign(ensemble_file, tmp_path / "missing.pt", lambda p: p["members"].pop("b"))
    renamed = _resign(ensemble_file, tmp_path / "weights.pt", lambda p: p["weights"].update(a=0.5))
    cases = [(truncated, "truncated or corrupted"), (missing, "names member 'b', which the file does not hold"),
             (renamed, "weights sum to 1.250000, not 1")]
    for path, pattern in cases:
        with pytest.raises(CheckpointError, match=pattern):
            load_model(path)
        assert main(["test", str(path), "--data", str(hour_csv)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err, err
    with pytest.raises(CheckpointError, match="checksum mismatch|truncated or corrupted"):
        load_model(tampered)
    with pytest.raises(CheckpointError, match="an ensemble of models, not a single model"):
        load_bundle(ensemble_file)
    assert hashlib.sha256(ensemble_file.read_bytes()).hexdigest() == hashlib.sha256(raw).hexdigest()  # untouched


def test_a_single_model_file_is_not_an_ensemble(members) -> None:
    single = load_model(members["a"])
    assert not isinstance(single.base, WeightedMean) and single.steps == ()  # a trial's raw network


# ------------------------------------------------------------------ refit


def test_refit_trains_through_the_validation_hours_for_the_best_epoch_count(members, hour_csv: Path, bikes) -> None:
    frame, *_ = load_frame(hour_csv)
    bundle = load_bundle(members["a"])
    data = train_through_val(frame, bundle)
    tr = data["train"]
    # Every window whose target lies before the test period, and none after: [N, L, F] as built by the pipeline.
    assert len(tr) == len(bikes["train"]) + len(bikes["val"])
    assert tr.target_time.max() < bikes["test"].target_time.min()
    assert tr.origin[-1] == bikes["val"].origin[-1]
    torch.testing.assert_close(tr.X[-len(bikes["val"]):], bikes["val"].X)
    torch.testing.assert_close(tr.y[: len(bikes["train"])], bikes["train"].y)
    refit = refit_bundle(bundle, frame)
    epochs = bundle["best_metrics"]["epoch"]
    assert refit["meta"]["refit"]["epochs"] == epochs >= 1
    assert refit["meta"]["refit"]["through"] == "2012-10-31T23:00"
    assert len(refit["history"]) == epochs and "optimizer" not in refit
    changed = [k for k in refit["weights"] if not torch.equal(refit["weights"][k], bundle["weights"][k])]
    assert changed  # retrained, not copied
    again = refit_bundle(bundle, frame)  # the member's seed: a refit repeats exactly
    assert all(torch.equal(again["weights"][k], refit["weights"][k]) for k in refit["weights"])


def test_calibration_fits_the_factor_that_minimises_the_error() -> None:
    from rnn_core.metrics import mae, rmse
    from rnn_core.postprocess import calibrate

    rng = np.random.default_rng(1)
    truth = rng.gamma(2.0, 100.0, size=(500, 2))
    pred = truth / 1.1 * rng.lognormal(0.0, 0.2, size=truth.shape)  # 10% too low, noisy
    for metric, err in (("mae", mae), ("rmse", rmse)):
        k = calibrate(pred, truth, metric)
        grid = np.linspace(0.8, 1.25, 451)
        best = grid[np.argmin([err(g * pred, truth) for g in grid])]
        assert abs(k - best) <= 0.002, (metric, k, best)
        assert err(k * pred, truth) < err(pred, truth)
    assert calibrate(pred, truth * 10) == 1.25  # kept within its range
    assert calibrate(np.zeros((3, 1)), np.ones((3, 1))) == 1.0


def test_selection_keeps_the_best_prefix() -> None:
    target = np.zeros((10, 1))
    good, bad = np.full((10, 1), 1.0), np.full((10, 1), 5.0)
    weights, trace = select(np.stack([good, bad]), target, size=5)
    assert weights.tolist() == [1.0, 0.0] and trace == [1.0] * 5  # the bad one never helps
    # a candidate that helps only in pairs: +1 then -3 (the mean -1) is no better than +1 alone
    weights, trace = select(np.stack([good, np.full((10, 1), -3.0), np.full((10, 1), -1.0)]), target, size=4)
    assert trace[0] == 1.0 and min(trace) == 0.0
    mean = (weights[:, None, None] * np.stack([good, np.full((10, 1), -3.0), np.full((10, 1), -1.0)])).sum(0)
    assert np.abs(mean).mean() == pytest.approx(min(trace))


def test_rolling_factors_are_the_calibration_fit_on_the_hours_known_at_each_origin() -> None:
    from rnn_core.postprocess import calibrate, rolling_factors

    rng = np.random.default_rng(0)
    m, h, w = 400, 3, 50
    pred = rng.uniform(0, 300, (m, h))
    pred[5, 0] = 0.0  # a zero forecast carries no weight
    target = pred * rng.uniform(0.7, 1.4, (m, h))
    rows = np.array([10, 50, 200, 399])
    for metric in ("mae", "rmse"):
        f = rolling_factors(pred, target, rows, w, metric)
        assert np.isnan(f[0]).all()  # fewer than w origins before it
        for j, i in enumerate(rows[1:], start=1):
            for k in range(1, h + 1):  # origins i-w .. i-k: their step-k targets are known at origin i
                want = calibrate(pred[i - w: i - k + 1, k - 1, None], target[i - w: i - k + 1, k - 1, None], metric)
                assert f[j, k - 1] == pytest.approx(want, abs=1e-9), (metric, i, k)


def test_an_ensemble_with_a_level_window_refits_its_factor_on_the_weeks_before_each_hour(
        members: dict[str, Path], hour_csv: Path, tmp_path: Path) -> None:
    from rnn_core.postprocess import calibrate

    w = 7 * 24
    fixed = load_model(_save(tmp_path / "fixed.pt", members, {"a": 1.0, "b": 1.0}, (Calibration(1.1),)))
    rolling = load_model(_save(tmp_path / "rolling.pt", members, {"a": 1.0, "b": 1.0}, (Calibration(1.1, w),)))
    assert fixed.steps == (Calibration(1.1, 0),) and rolling.steps == (Calibration(1.1, w),)
    frame, *_ = load_frame(hour_csv)
    cnt = frame["cnt"].to_numpy(np.float64)
    origins = np.array([rolling.first_origin + 5, 12_000, 12_001, len(frame) - 1])  # the first: too little history
    got = rolling.forecast(frame, origins)  # [4, 1]
    mean = fixed.forecast(frame, np.arange(origins[1] - w, len(frame))) / 1.1  # the members' weighted mean
    # the validation factor; float32 networks round differently in batches of other sizes (1 origin here, 4 there)
    assert got[0, 0] == pytest.approx(fixed.forecast(frame, origins[:1])[0, 0], rel=1e-6)
    for j, o in enumerate(origins[1:], start=1):
        rows = np.arange(o - w, o) - (origins[1] - w)  # origins o-w .. o-1, whose next hour is known at o
        k = calibrate(mean[rows], cnt[np.arange(o - w, o) + 1, None])
        assert got[j, 0] == pytest.approx(k * mean[o - (origins[1] - w), 0], rel=1e-6)


def test_residual_corrections_regress_on_the_errors_known_at_each_origin_and_run_forward() -> None:
    from rnn_core.postprocess import CORRECTION_RANGE, residual_corrections

    rng = np.random.default_rng(1)
    m, h, w, lags = 300, 4, 40, (1, 3)
    pred = rng.uniform(0, 400, (m, h))
    target = pred + rng.normal(0, 20, (m, h))
    target[:, 0] += 15 * np.sin(np.arange(m))  # errors with some structure at lag 1 and 3
    target[-1:, :] = np.nan  # the last origin's targets lie after the data
    rows = np.array([w + 2, w + 3, 150, m - 1])
    got = residual_corrections(pred, target, rows, w, lags)
    assert (got[0] == 0).all()  # fewer than w + max(lags) origins before it
    z = (target[:, 0] - pred[:, 0]) / np.sqrt(pred[:, 0] + 1)  # hour-ahead errors (origin j: hour j + 1), sqrt scale
    for j, i in enumerate(rows[1:], start=1):
        fit = np.arange(i - w, i)  # origins i-w .. i-1: their hour-ahead errors are known at origin i
        coef, *_ = np.linalg.lstsq(np.stack([z[fit - lag] for lag in lags], 1), z[fit], rcond=None)
        coef = np.clip(coef, *CORRECTION_RANGE)
        err = {hour: z[hour - 1] for hour in range(i - 10, i + 1)}  # hour -> its error, known up to hour i
        for k in range(1, h + 1):  # then forecast hour by hour, a forecast error standing in for an unknown one
            err[i + k] = sum(c * err[i + k - lag] for c, lag in zip(coef, lags))
            want = err[i + k] * np.sqrt(pred[i, k - 1] + 1)
            assert got[j, k - 1] == pytest.approx(want, rel=1e-7, abs=1e-9), (i, k)
    assert np.isfinite(got).all()
    assert (got[1:] != 0).any()


def test_residual_corrections_remove_persistent_and_daily_errors_and_leave_independent_ones() -> None:
    from rnn_core.postprocess import residual_corrections

    rng = np.random.default_rng(2)
    n, w = 3000, 14 * 24
    truth = rng.uniform(50, 500, n)
    for name, (phi1, phi24) in (("persistent", (0.6, 0.0)), ("daily", (0.0, 0.5)), ("independent", (0.0, 0.0))):
        e = rng.normal(0, 2.0, n)  # errors on the sqrt scale: e[t] = phi1 e[t-1] + phi24 e[t-24] + noise
        for t in range(24, n):
            e[t] += phi1 * e[t - 1] + phi24 * e[t - 24]
        pred = (truth - e * np.sqrt(truth + 1))[:, None]  # [n, 1]
        rows = np.arange(w + 168, n)
        fixed = pred[rows] + residual_corrections(pred, truth[:, None], rows, w)
        before, after = np.abs(pred[rows, 0] - truth[rows]).mean(), np.abs(fixed[:, 0] - truth[rows]).mean()
        if phi1 or phi24:
            assert after < 0.9 * before, (name, before, after)
        else:
            assert after < 1.02 * before, (name, before, after)  # nothing to carry: (almost) no harm


def test_seasonal_biases_average_each_steps_errors_at_the_same_hour_known_at_each_origin() -> None:
    from rnn_core.postprocess import seasonal_biases

    rng = np.random.default_rng(3)
    m, h, period, periods = 400, 30, 24, 3  # steps 25-30 lie a day ahead: their first known season is two back
    pred = rng.uniform(0, 400, (m, h))
    target = pred + rng.normal(0, 20, (m, h))
    target[200, 3] = np.nan  # an error not known: left out of its mean
    rows = np.array([period * periods - 1, period * periods, 224, 248, m - 1])
    got = seasonal_biases(pred, target, rows, period, periods)
    assert (got[0] == 0).all()  # fewer than period * periods origins before it
    e = (target - pred) / np.sqrt(pred + 1)
    for j, i in enumerate(rows[1:], start=1):
        for k in range(1, h + 1):
            back = [period * d for d in range(1, periods + 1) if period * d >= k]  # hour i + k - back <= i: known at i
            seen = [e[i - b, k - 1] for b in back if np.isfinite(e[i - b, k - 1])]
            want = np.mean(seen) * np.sqrt(pred[i, k - 1] + 1) if seen else 0.0
            assert got[j, k - 1] == pytest.approx(want, rel=1e-9, abs=1e-12), (i, k)
    assert len([b for b in range(1, periods + 1) if 24 * b >= 30]) == 2  # step 30 averages two seasons, not three
    assert np.isfinite(got).all() and (got[1:] != 0).all()


def test_a_trimmed_seasonal_bias_leaves_out_each_hours_highest_and_lowest_days() -> None:
    from rnn_core.postprocess import seasonal_biases

    rng = np.random.default_rng(5)
    m, period, periods, trim = 24 * 40, 24, 28, 0.1  # 28 days: round(2.8) = 3 cut at each end
    pred = rng.uniform(0, 400, (m, 1))
    target = pred + rng.normal(0, 20, (m, 1))
    rows = np.array([m - 30, m - 1])
    e = (target - pred) / np.sqrt(pred + 1)  # [m, 1] errors on the sqrt scale
    got = seasonal_biases(pred, target, rows, period, periods, trim)
    for j, i in enumerate(rows):
        days = np.sort(e[i - period * np.arange(1, periods + 1), 0])  # [28]
        assert got[j, 0] == pytest.approx(days[3:-3].mean() * np.sqrt(pred[i, 0] + 1), rel=1e-9)
    i = rows[1]
    plain = seasonal_biases(pred, target, rows, period, periods)[1, 0]
    target[i - period * 5, 0] += 5000.0  # one odd day at that hour (a holiday's eve)
    odd = seasonal_biases(pred, target, rows, period, periods, trim)[1, 0]
    moved = seasonal_biases(pred, target, rows, period, periods)[1, 0] - plain  # the plain mean: by a 28th of it
    assert moved > 100 and abs(odd - got[1, 0]) < 0.02 * moved  # the trimmed one: by one typical day's shift
    target[i - period * np.arange(1, periods - 1), 0] = np.nan  # 2 days known: nothing cut, their mean
    two = e[i - period * np.array([periods - 1, periods]), 0]
    want = two.mean() * np.sqrt(pred[i, 0] + 1)
    assert seasonal_biases(pred, target, rows, period, periods, trim)[1, 0] == pytest.approx(want, rel=1e-9)
    target[i - period * np.arange(1, periods + 1), 0] = np.nan  # no day known at that hour: nothing to add
    for t in (0.0, trim):
        assert seasonal_biases(pred, target, rows, period, periods, t)[1, 0] == 0.0


def test_the_seasonal_bias_removes_an_hour_of_day_bias_and_leaves_independent_errors() -> None:
    from rnn_core.postprocess import SeasonalBias

    rng = np.random.default_rng(4)
    n = 24 * 120
    truth = rng.uniform(50, 500, n)
    step = SeasonalBias(24)
    rows = np.arange(step.lookback, n)
    for name, bias in (("by the hour", 3.0 * np.sin(2 * np.pi * np.arange(n) / 24)), ("none", np.zeros(n))):
        e = bias + rng.normal(0, 1.0, n)  # errors on the sqrt scale of hour t = origin + 1
        pred = (truth - e * np.sqrt(truth + 1))[:, None]  # [n, 1]: origin j forecasts hour j + 1
        fixed = step.apply(pred, truth[:, None])[rows]
        before, after = np.abs(pred[rows, 0] - truth[rows]).mean(), np.abs(fixed[:, 0] - truth[rows]).mean()
        if bias.any():
            assert after < 0.5 * before, (name, before, after)
        else:
            assert after < 1.03 * before, (name, before, after)  # a 28-day mean of noise: (almost) no harm


def test_the_standard_chain_adds_the_seasonal_bias_where_a_step_is_under_a_day() -> None:
    from rnn_core.config import DataConfig, Dataset
    from rnn_core.postprocess import SeasonalBias, standard_steps, step_from_dict

    def kinds(steps: tuple) -> list[str]:
        return [s.kind for s in steps]

    def own(freq: str) -> DataConfig:
        return DataConfig(dataset=Dataset(time="t", target="y", freq=freq))

    bikes = standard_steps(1.1, "mae")
    assert kinds(bikes) == ["calibration", "seasonal_bias", "residual_correction", "non_negative"]
    assert bikes[1] == SeasonalBias(24, 28, 0.75, 0.1) and bikes[1].lookback == 28 * 24
    assert standard_steps(1.0, "mae", own("30min"))[1] == SeasonalBias(48, trim=0.1)  # a day is 48 steps
    assert kinds(standard_steps(1.0, "mae", own("h"), counts=False)) == ["seasonal_bias", "residual_correction"]
    assert "seasonal_bias" not in kinds(standard_steps(1.0, "mae", own("D")))  # daily: the correction's lag 7 serves
    assert step_from_dict(bikes[1].to_dict()) == bikes[1]
    before = {k: v for k, v in bikes[1].to_dict().items() if k != "trim"}  # a file written before the trim
    assert step_from_dict(before).trim == 0.0  # forecasts as it did: the plain mean
    for field, value, says in (("share", 1.5, "seasonal bias share 1.5: expected a number within [0, 1]"),
                               ("trim", 0.5, "seasonal bias trim 0.5: expected a number within [0, 0.5)"),
                               ("periods", 0, "seasonal bias periods 0: expected a whole number >= 1"),
                               ("period", "24", "seasonal bias period '24': expected a whole number >= 1")):
        with pytest.raises(ValueError, match=re.escape(f"post-processing step seasonal_bias: {says}")):
            step_from_dict({**bikes[1].to_dict(), field: value})


def test_an_ensemble_with_a_correction_window_adds_the_correction_to_its_calibrated_forecasts(
        members: dict[str, Path], hour_csv: Path, tmp_path: Path) -> None:
    from rnn_core.postprocess import residual_corrections

    w, cw = 7 * 24, 3 * 24
    steps = (Calibration(1.1, w), ResidualCorrection(cw), NonNegative())
    both = load_model(_save(tmp_path / "both.pt", members, {"a": 1.0, "b": 1.0}, steps))
    assert both.steps == steps and both.steps[1].lags == (1, 24, 168)  # rnn_core.config.CORRECTION_LAGS, stored
    level = both.with_steps(both.steps[:1])  # a prefix of the chain: the rolling level alone
    frame, *_ = load_frame(hour_csv)
    origins = np.array([12_000, 12_001, 13_500, len(frame) - 1])
    start = origins[0] - cw - 168 - 5
    span = np.arange(start, len(frame))
    calibrated = level.forecast(frame, span)  # [S, 1]: the rolling level alone, at every origin of the span
    target = np.append(frame["cnt"].to_numpy(np.float64)[start + 1:], np.nan)[:, None]  # the next hour; NaN after the data
    want = np.maximum(calibrated[origins - start] + residual_corrections(calibrated, target, origins - start, cw, (1, 24, 168)), 0)
    np.testing.assert_allclose(both.forecast(frame, origins), want, rtol=1e-6)
    assert not np.allclose(want, calibrated[origins - start])  # the correction did something
    crafted = _resign(tmp_path / "both.pt", tmp_path / "crafted.pt", lambda p: p["steps"][1].update(window=-1))
    with pytest.raises(CheckpointError, match="residual_correction: correction window -1: expected a whole number >= 1"):
        load_model(crafted)
    crafted = _resign(tmp_path / "both.pt", tmp_path / "lags.pt", lambda p: p["steps"][1].update(lags=[1, 0]))
    with pytest.raises(CheckpointError, match=r"residual_correction: correction lag 0: expected a whole number >= 1"):
        load_model(crafted)
    crafted = _resign(tmp_path / "both.pt", tmp_path / "kind.pt", lambda p: p["steps"].append({"kind": "smooth"}))
    with pytest.raises(CheckpointError, match=r"both.pt|kind.pt: post-processing step 'smooth': expected one of calibration"):
        load_model(crafted)


def test_an_ensemble_with_the_seasonal_bias_adds_it_between_its_calibration_and_its_correction(
        members: dict[str, Path], hour_csv: Path, tmp_path: Path) -> None:
    from rnn_core.postprocess import SeasonalBias, residual_corrections, seasonal_biases

    w, cw = 7 * 24, 3 * 24
    steps = (Calibration(1.1, w), SeasonalBias(24, 3, 0.5), ResidualCorrection(cw), NonNegative())
    both = load_model(_save(tmp_path / "both.pt", members, {"a": 1.0, "b": 1.0}, steps))
    assert both.steps == steps
    level = both.with_steps(both.steps[:1])
    frame, *_ = load_frame(hour_csv)
    origins = np.array([12_000, 12_001, 13_500, len(frame) - 1])
    start = origins[0] - cw - 168 - 3 * 24 - 5  # the chain's own lookback and a little more
    span = np.arange(start, len(frame))
    calibrated = level.forecast(frame, span)  # [S, 1]
    target = np.append(frame["cnt"].to_numpy(np.float64)[start + 1:], np.nan)[:, None]
    biased = calibrated + 0.5 * seasonal_biases(calibrated, target, np.arange(len(span)), 24, 3)  # [S, 1]
    want = np.maximum(biased[origins - start] + residual_corrections(biased, target, origins - start, cw), 0)
    np.testing.assert_allclose(both.forecast(frame, origins), want, rtol=1e-6)
    assert not np.allclose(biased[origins - start], calibrated[origins - start])  # the bias step did something
    crafted = _resign(tmp_path / "both.pt", tmp_path / "crafted.pt", lambda p: p["steps"][1].update(share=2.0))
    with pytest.raises(CheckpointError, match=r"crafted.pt: post-processing step seasonal_bias: seasonal bias share 2.0"):
        load_model(crafted)


def test_a_version_1_file_loads_as_the_chain_its_keys_meant(members: dict[str, Path], hour_csv: Path, tmp_path: Path,
                                                             monkeypatch) -> None:
    """Files written before the chain (version 1: loose keys scale, level_window, correction_window,
    correction_lags, intervals, the loss in meta["metric"]) are converted on reading, in one place."""
    import rnn_core.checkpoint as checkpoint
    from rnn_core.intervals import conformal

    frame, *_ = load_frame(hour_csv)
    iv = conformal(np.full((500, 1), 100.0), np.linspace(50, 150, 500)[:, None], window=0)
    old = {"members": {n: load_bundle(p) for n, p in members.items()}, "weights": {"a": 0.5, "b": 0.5}, "scale": 1.1,
           "level_window": 7 * 24, "correction_window": 3 * 24, "correction_lags": [1, 24],
           "intervals": {k: v for k, v in iv.to_dict().items() if k != "window"},  # from before rolling intervals
           "meta": {"metric": "rmse"}}
    monkeypatch.setattr(checkpoint, "VERSION", 1)
    v1 = write_bundle(tmp_path / "v1.pt", old, fmt=ENSEMBLE_FORMAT)
    monkeypatch.undo()
    lm = load_model(v1)
    assert lm.point_steps == (Calibration(1.1, 7 * 24, "rmse"), ResidualCorrection(3 * 24, (1, 24)), NonNegative())
    assert lm.intervals == iv and iv.window == 0  # conformal() without a window: the validation offsets
    v2 = load_model(_save(tmp_path / "v2.pt", members, {"a": 1.0, "b": 1.0}, lm.steps))
    origins = np.arange(12_000, 12_050)
    np.testing.assert_array_equal(lm.forecast(frame, origins), v2.forecast(frame, origins))
    old["correction_lags"] = [1, 0]
    monkeypatch.setattr(checkpoint, "VERSION", 1)
    bad = write_bundle(tmp_path / "bad.pt", old, fmt=ENSEMBLE_FORMAT)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="bad.pt: post-processing step residual_correction: correction lag 0"):
        load_model(bad)
