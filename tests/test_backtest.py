"""Forecasts beyond a day, rolling backtests (`rnn-search backtest`, rnn_core.backtest.cross_validation), the field's
metrics (MASE, sMAPE, WAPE) and `predict --format`: on the real bikes data (48 hours ahead) and on a real panel
that ships inside a package (vega_datasets' monthly prices of five stocks, 2000-2010). No Ray."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnn_core.api import Model
from rnn_core.backtest import cross_validation
from rnn_core.forecaster import load_model
from rnn_core.refit import train_through_val
from rnn_core.series import segment_start
from search.cli import main
from tests.conftest import said_last

vega = pytest.importorskip("vega_datasets", reason="the test extra installs vega_datasets (pip install -e '.[test]')")
STOCKS = Path(vega.__file__).parent / "_data" / "stocks.csv"


@pytest.fixture(scope="module")
def day2(hour_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small network forecasting the next 48 hours of the bikes data (one epoch)."""
    out = tmp_path_factory.mktemp("h48")
    assert main(["train", "--data", str(hour_csv), "--horizon", "48", "--hidden-size", "8", "--max-epochs", "1",
                 "--batch-size", "256", "--out", str(out)]) == 0
    return out / "model.pt"


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(csv, model.pt): one network of the five stocks' monthly prices, 3 months ahead."""
    tmp = tmp_path_factory.mktemp("stocks")
    csv = tmp / "stocks.csv"
    df = pd.read_csv(STOCKS)
    df["date"] = pd.to_datetime(df["date"], format="%b %d %Y").dt.strftime("%Y-%m-%d")
    df.to_csv(csv, index=False)
    assert main(["train", "--data", str(csv), "--time", "date", "--target", "price", "--series", "symbol",
                 "--freq", "MS", "--horizon", "3", "--sequence-size", "12", "--hidden-size", "8", "--max-epochs", "2",
                 "--out", str(tmp / "run")]) == 0
    return csv, tmp / "run" / "model.pt"


def test_a_48_hour_model_tests_with_the_field_metrics(day2: Path, hour_csv: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["test", str(day2), "--data", str(hour_csv), "--levels", "0.8"]) == 0
    out = capsys.readouterr().out
    assert "horizon 48 (48 hours)" in out and "MASE" in out and "sMAPE %" in out and "WAPE %" in out, out
    assert "seasonal_24h" not in out  # a day's lag would read targets after the origin at 48 hours ahead
    ev = Model.load(day2).test(hour_csv, levels=(0.8,))
    assert ev.prediction.shape[1] == 48 and len(ev.steps["model"]["mae"]) == 48
    # MASE by hand: MAE over the in-sample seasonal naive's (a day of hours), everything before the first origin
    y = ev.data.target.astype(np.float64)[: ev.data["test"].origin.min() + 1]
    scale = np.nanmean(np.abs(y[24:] - y[:-24]))
    assert ev.scores["mase"] == pytest.approx(ev.mae / scale, rel=1e-9)
    err, truth = np.abs(ev.prediction - ev.target), np.abs(ev.target)
    assert ev.scores["wape"] == pytest.approx(100 * err.sum() / truth.sum(), rel=1e-9)
    both = np.abs(ev.prediction) + truth
    assert ev.scores["smape"] == pytest.approx(np.mean(np.where(both > 0, 200 * err / np.where(both > 0, both, 1), 0)))


def test_backtest_of_the_bikes_data_scores_each_window_as_its_forecasts_say(day2: Path, hour_csv: Path,
                                                                           tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    csv = tmp_path / "f.csv"
    assert main(["backtest", str(day2), "--data", str(hour_csv), "--windows", "3", "--step", "24",
                 "--forecasts", str(csv)]) == 0
    out, err = capsys.readouterr()
    assert "backtest over the last 3 window(s) of 48 hours" in out and "MASE" in out, out
    f = pd.read_csv(csv, parse_dates=["cutoff", "time"])
    assert len(f) == 3 * 48 and sorted(f["window"].unique()) == [1, 2, 3]
    cut = f.groupby("window")["cutoff"].first()
    assert list(cut.diff().dropna()) == [pd.Timedelta(hours=24)] * 2 and cut.iloc[-1] == pd.Timestamp("2012-12-29 23:00")
    hours = pd.read_csv(hour_csv, parse_dates=["dteday"])
    hours.index = hours["dteday"] + pd.to_timedelta(hours["hr"], unit="h")
    known = f["time"].isin(hours.index)
    assert (f.loc[known, "target"].to_numpy() == hours.loc[f.loc[known, "time"], "cnt"].to_numpy()).all()
    week_before = f["time"] - pd.Timedelta(hours=168)  # the weekly naive is the value a week before each target
    has = week_before.isin(hours.index)
    assert (f.loc[has, "seasonal_168h"].to_numpy() == hours.loc[week_before[has], "cnt"].to_numpy()).all()
    bt = cross_validation(str(day2), hour_csv, windows=3, step=24)
    assert bt.overall["model"]["mae"] == pytest.approx(np.abs(f["model"] - f["target"]).mean(), rel=1e-6)
    assert bt.in_sample == [] and list(bt.windows["window"]) == [1, 2, 3]
    assert main(["backtest", str(day2), "--data", str(hour_csv), "--windows", "2", "--step", "1500"]) == 0
    assert "window(s) 1 end before the model's test period" in capsys.readouterr().err


def test_backtest_refuses_bad_windows_in_one_line(day2: Path, hour_csv: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["backtest", str(day2), "--windows", "0"])
    assert exc.value.code == 2 and "--windows: expected a whole number of at least 1, got '0'" in capsys.readouterr().err
    assert main(["backtest", str(day2), "--data", str(hour_csv), "--windows", "100", "--step", "1000"]) == 2
    assert "100 windows 1000 hours apart reach back before the first complete window" in said_last(
        capsys.readouterr().err, "error: ")


def test_cross_validation_of_a_panel_scores_every_series(panel: tuple[Path, Path], capsys) -> None:
    csv, model = panel
    bt = Model.load(model).cross_validation(csv, windows=2)
    assert set(bt.windows["symbol"]) == {"AAPL", "AMZN", "GOOG", "IBM", "MSFT"} and len(bt.windows) == 10
    assert len(bt.forecasts) == 5 * 2 * 3 and set(bt.overall) >= {"model", "persistence", "seasonal_12m"}
    last = bt.forecasts.groupby("symbol")["time"].max()
    assert (last == pd.Timestamp("2010-03-01")).all(), last  # each series' own last 2 windows of 3 months
    assert np.isfinite(bt.overall["model"]["mase"]) and bt.overall["model"]["mase"] > 0
    capsys.readouterr()
    assert main(["backtest", str(model), "--data", str(csv), "--windows", "2"]) == 0
    out = capsys.readouterr().out
    assert "per window, MAE (mean over the series)" in out and "window(s) of 3 months per series" in out, out
    ev = Model.load(model).test(csv, levels=False)
    assert ev.by_series is not None and set(ev.by_series["series"]) == {"AAPL", "AMZN", "GOOG", "IBM", "MSFT"}
    assert ev.scores["mase"] == pytest.approx(ev.by_series["mase"].mean())  # M4's MASE: the mean of the series'
    assert main(["test", str(model), "--data", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "5 series: MASE median" in out and "per series:" in out, out
    assert len([line for line in out.splitlines() if line.split()[:1] and line.split()[0] in ev.by_series["series"].values]) == 5


def test_a_refit_backtest_trains_only_on_steps_before_each_series_cutoff(panel: tuple[Path, Path]) -> None:
    csv, model = panel
    lm = load_model(model)
    from rnn_core.api import frame_of

    frame = frame_of(lm, csv)
    cfg = lm.data_config
    starts = segment_start(frame, cfg.dataset)
    cuts = np.array([b - 7 for b in np.unique(np.r_[np.flatnonzero(np.diff(starts)) + 1, len(frame)])])  # [S]
    data = train_through_val(frame, lm.base.bundle, until=cuts)
    origins = data["train"].origin
    limit = dict(zip(starts[cuts], cuts))
    assert len(origins) and all(o + cfg.horizon <= limit[starts[o]] for o in origins)
    assert {starts[o] for o in origins} == set(starts[cuts])  # every series still trains
    bt = cross_validation(lm, csv, windows=1, refit=True, jobs=1)
    assert bt.refit and bt.in_sample == [] and np.isfinite(bt.forecasts["model"]).all()


def test_predict_writes_csv_and_json_on_stdout(panel: tuple[Path, Path], capsys) -> None:
    csv, model = panel
    capsys.readouterr()
    assert main(["predict", str(model), "--data", str(csv), "--format", "csv"]) == 0
    table = pd.read_csv(StringIO(capsys.readouterr().out))
    assert list(table.columns[:4]) == ["symbol", "origin", "time", "forecast"] and len(table) == 5 * 3
    assert main(["predict", str(model), "--data", str(csv), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 15 and records[0]["forecast"] == pytest.approx(table["forecast"][0])


def test_a_backtest_over_gaps_moves_each_cutoff_back_to_a_complete_window(tmp_path: Path) -> None:
    sm = pytest.importorskip("statsmodels.api", reason="the test extra installs statsmodels (through pmdarima)")
    d = sm.datasets.co2.load_pandas().data.dropna()  # weekly CO2 at Mauna Loa: 59 weeks absent
    csv = tmp_path / "co2.csv"
    pd.DataFrame({"week": d.index, "co2": d["co2"].to_numpy()}).to_csv(csv, index=False)
    assert main(["train", "--data", str(csv), "--time", "week", "--target", "co2", "--horizon", "2", "--epochs", "1",
                 "--hidden-size", "8", "--sequence-size", "8", "--target-transform", "standard",
                 "--out", str(tmp_path / "run")]) == 0
    bt = cross_validation(str(tmp_path / "run" / "model.pt"), csv, windows=250, step=4)  # back to 1982: gaps in 1984-85
    f = bt.forecasts
    cut = f.groupby("window")["cutoff"].first()
    assert len(cut) == 250 and cut.is_monotonic_increasing and (cut.diff().dropna() >= pd.Timedelta(weeks=4)).all()
    assert f["target"].notna().all() and f["time"].isin(d.index).all()  # every target a real reading
    assert (cut.diff().dropna() > pd.Timedelta(weeks=4)).any()  # at least one cutoff moved back past a gap


def test_an_ensemble_of_a_panel_whose_trials_differ_in_window_scores_all_on_the_same_targets(
        panel: tuple[Path, Path], tmp_path: Path) -> None:
    """A panel with a short series (GOOG: 68 months): a trial of 36-month windows has fewer validation windows than
    one of 6-month windows; choosing their ensemble failed ('operands could not be broadcast ... (1,2810) (1,3108)'
    on 148 monthly series)."""
    from rnn_core.checkpoint import load_bundle, save_bundle
    from rnn_core.config import DataConfig, TrainConfig
    from rnn_core.data import build
    from rnn_core.ensemble import choose_ensemble, validation_targets
    from rnn_core.forecaster import member_from_bundle
    from rnn_core.series import read_frame
    from rnn_core.train import fit

    csv, model = panel
    ds = load_model(model).data_config.dataset
    frame = read_frame(csv, ds)[0]
    bundles = {}
    for name, window in (("short", 6), ("long", 36)):
        data = build(frame, DataConfig(dataset=ds, sequence_size=window, target_transform="standard"))
        mcfg, tcfg = data.model_config(cell="gru", hidden_size=8), TrainConfig(max_epochs=1, batch_size=64, seed=1)
        path = save_bundle(tmp_path / f"{name}.pt", fit(data, mcfg, tcfg).state, data, mcfg, tcfg, meta={"trial_id": name})
        bundles[name] = load_bundle(path)
    models = {n: member_from_bundle(b, n) for n, b in bundles.items()}
    origins, target = validation_targets(models, frame)
    long = build(frame, DataConfig(dataset=ds, sequence_size=36, target_transform="standard"))["val"].origin
    short = build(frame, DataConfig(dataset=ds, sequence_size=6, target_transform="standard"))["val"].origin
    assert np.array_equal(origins, long) and len(long) < len(short)  # the long window's fewer windows, for all
    choice = choose_ensemble(bundles, frame, size=4)
    assert np.isfinite(choice.val_mae) and choice.members
