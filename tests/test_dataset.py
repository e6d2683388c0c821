"""A series of the user's own (rnn_core.config.Dataset, rnn_core.series): a real daily data set that ships inside a
package (vega_datasets' Seattle weather, 2012-2015), a data frame made here with two series, and every
validation error of a user's file. No Ray (tests/test_dataset_search.py runs the search)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnn_core.api import Model
from rnn_core.config import DataConfig, Dataset
from rnn_core.data import DataError, build, load
from rnn_core.datasets import YEAR_PART
from rnn_core.features import raw_features
from rnn_core.series import segment_start, series_frame
from search.cli import main

vega = pytest.importorskip("vega_datasets", reason="the test extra installs vega_datasets (pip install -e '.[test]')")
SEATTLE = Path(vega.__file__).parent / "_data" / "seattle-weather.csv"
WEATHER = ["--data", str(SEATTLE), "--time", "date", "--target", "temp_max", "--past", "precipitation,temp_min,wind"]
SEATTLE_DS = Dataset(time="date", target="temp_max", past=("precipitation", "temp_min", "wind"))


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_a_daily_series_of_a_package_becomes_windows_splits_and_features() -> None:
    data = load(DataConfig(dataset=SEATTLE_DS, target_transform="standard", sequence_size=14), SEATTLE)
    assert data.config.dataset.freq == "D"  # inferred
    year = YEAR_PART  # the part of the year every frequency's calendar encodes (chosen by benchmarks/calendar_encoding.py)
    assert data.feature_names[:4] == ["week_sin", "week_cos", f"{year}_sin", f"{year}_cos"]  # no time of day in daily data
    assert "temp_max_history" in data.feature_names and "precipitation" in data.feature_names
    # the default split: the last tenth of the target days is the test period, the tenth before it validation
    first, last = data["train"].target_time[0, 0], data["test"].target_time[-1, -1]
    assert str(last)[:10] == "2015-12-31"
    share = {n: len(data[n]) / sum(len(s) for s in data.splits.values()) for n in ("val", "test")}
    assert 0.09 < share["val"] < 0.11 and 0.09 < share["test"] < 0.11, share
    assert data["train"].target_time.max() < data["val"].target_time.min() < data["test"].target_time.min()
    # scalers from the training days only
    train_max = data["train"].y_raw.numpy()
    assert data.target_scaler.mean == pytest.approx(np.mean(train_max), abs=0.5)
    assert np.isfinite(data["train"].X.numpy()).all()
    assert first >= np.datetime64("2012-01-14")


@pytest.mark.parametrize("transform", ["log1p", "sqrt"])
def test_a_count_transform_is_refused_for_a_target_with_negative_values(transform: str) -> None:
    with pytest.raises(DataError, match=rf"target 'temp_max' is -1.6 at .*{transform} transform needs values >= 0; "
                                        r"use --target-transform standard"):
        load(DataConfig(dataset=SEATTLE_DS, target_transform=transform), SEATTLE)


def test_without_a_transform_flag_train_and_data_info_take_the_one_suited_to_the_target(tmp_path: Path, capsys) -> None:
    """A target that may be negative gets the standardising transform, as a search gives it; asked for, log1p is
    still refused in one line."""
    assert main(["data", "info", *WEATHER]) == 0
    assert "target:        temp_max, standard (" in capsys.readouterr().out
    assert main(["train", *WEATHER, "--epochs", "1", "--hidden-size", "8", "--out", str(tmp_path / "run")]) == 0
    assert Model.load(tmp_path / "run" / "model.pt").forecaster.data_config.target_transform == "standard"
    capsys.readouterr()
    assert main(["data", "info", *WEATHER, "--target-transform", "log1p"]) == 2
    assert "the log1p transform needs values >= 0" in _one_error(capsys)


def test_train_test_predict_on_a_daily_series_beat_the_naive_baselines(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", *WEATHER, "--target-transform", "standard", "--epochs", "3", "--hidden-size", "16",
                 "--cell", "gru", "--num-layers", "1", "--batch-size", "64", "--lr", "0.005", "--out", str(out)]) == 0
    capsys.readouterr()
    model = Model.load(out / "model.pt")
    recorded = Dataset(**{**SEATTLE_DS.to_dict(), "freq": "D", "calendar": ("week", YEAR_PART)})
    assert model.forecaster.data_config.dataset == recorded  # with what the file told
    # a target that may be negative: no multiplicative calibration, no floor at zero
    assert [s.kind for s in model.forecaster.steps] == ["residual_correction", "conformal_intervals"]
    ev = model.test(SEATTLE)
    assert set(ev.baselines) == {"persistence", "seasonal_7d"}  # the naive baselines at the series' season
    assert ev.mae < min(b["mae"] for b in ev.baselines.values()), (ev.mae, ev.baselines)
    assert main(["test", str(out / "model.pt"), "--data", str(SEATTLE)]) == 0
    text = capsys.readouterr().out
    assert "seasonal_7d" in text and "(temp_max)" in text and "lower MAE" in text
    table = model.predict(SEATTLE)
    assert list(table["time"]) == [pd.Timestamp("2016-01-01")] and list(table.columns[:3]) == ["origin", "time", "forecast"]
    assert table["lower_80%"].iloc[0] <= table["forecast"].iloc[0] <= table["upper_80%"].iloc[0]
    assert main(["predict", str(out / "model.pt"), "--data", str(SEATTLE)]) == 0
    assert "2016-01-01" in capsys.readouterr().out
    # the model refuses a file that does not fit its dataset, in one line naming the model
    assert main(["test", str(out / "model.pt"), "--data", str(out.parent / "other.csv")]) == 2
    _one_error(capsys)
    (tmp_path / "bikes-like.csv").write_text("dteday,cnt\n2012-01-01,1\n")
    assert main(["predict", str(out / "model.pt"), "--data", str(tmp_path / "bikes-like.csv")]) == 2
    err = _one_error(capsys)
    assert "no column 'date', 'temp_max'" in err and "trained on time date, target temp_max" in err, err


def test_a_dataset_yaml_block_describes_the_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "weather.yaml").write_text(f"dataset:\n  file: {SEATTLE}\n  time: date\n  target: temp_max\n"
                                           "  past: [wind]\n")
    assert main(["data", "info", "--dataset", str(tmp_path / "weather.yaml"), "--target-transform", "standard"]) == 0
    out = capsys.readouterr().out
    assert "target temp_max, freq D, past wind" in out and "features (11)" in out, out
    (tmp_path / "bad.yaml").write_text("dataset:\n  tiem: date\n")
    assert main(["data", "info", "--dataset", str(tmp_path / "bad.yaml")]) == 2
    assert "unknown key 'tiem'" in _one_error(capsys)


def _two_series(missing_b: int | None = None) -> pd.DataFrame:
    """Two hourly series of 30 days with a known-future promotion flag: b is a's shape at twice the level."""
    t = pd.date_range("2024-01-01", periods=30 * 24, freq="h")
    rows = []
    for name, level in (("a", 10.0), ("b", 20.0)):
        y = level * (1 + np.sin(2 * np.pi * t.hour / 24)) + (t.day_of_week >= 5) * 3
        promo = (t.day % 7 == 0).astype(float)
        rows.append(pd.DataFrame({"store": name, "ts": t.strftime("%Y-%m-%d %H:%M"), "sales": np.round(y + 5 * promo),
                                  "promo": promo}))
    df = pd.concat(rows, ignore_index=True)
    if missing_b is not None:
        df = df.drop(index=30 * 24 + missing_b).reset_index(drop=True)  # one absent hour of store b
    return df


STORES = Dataset(time="ts", target="sales", future=("promo",), series="store")


def test_windows_of_two_series_never_cross_them_and_missing_steps_are_never_targets() -> None:
    frame, ds, filled = series_frame(_two_series(missing_b=300), STORES)
    assert filled == 1 and ds.freq == "h"
    cfg = DataConfig(dataset=ds, sequence_size=24, horizon=3, seasonal_lags=(24,), target_transform="log1p")
    data = build(frame, cfg)
    start = segment_start(frame, ds)
    gap = 30 * 24 + 300  # the absent hour's row in the frame
    assert frame["is_missing"].iloc[gap] == 1 and np.isnan(frame["sales"].iloc[gap])
    for name, s in data.splits.items():
        o = s.origin
        assert (start[o - 23] == start[o + 3]).all(), name  # inputs and targets in one series
        assert not ((o + 1 <= gap) & (gap <= o + 3)).any(), name  # the missing hour is never a target
        assert np.isfinite(s.y_raw.numpy()).all() and np.isfinite(s.X.numpy()).all()
    # both series in every split, one shared model; the lag never reaches into the other series
    assert {frame["store"].iloc[o] for o in data["test"].origin} == {"a", "b"}
    lag, hist = data.feature_names.index("sales_lag24"), data.feature_names.index("sales_history")
    raw, b = raw_features(frame, cfg), 30 * 24  # b: the first row of store b
    assert (raw[b : b + 23, lag] == 0).all()  # store a's hours are never store b's lags
    assert raw[b + 23, lag] == raw[b, hist] and raw[b - 1, lag] == raw[b - 24, hist]


def test_an_irregular_step_is_refused_naming_its_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "stores.csv"
    df = _two_series()
    df.loc[100, "ts"] = "2024-01-05 04:30"
    df.to_csv(bad, index=False)
    assert main(["data", "info", "--data", str(bad), "--time", "ts", "--target", "sales", "--series", "store"]) == 2
    err = _one_error(capsys)
    assert f"{bad}: line 102, column 'ts': 2024-01-05 04:30:00 is off the series' regular step h" in err, err


def test_a_model_of_two_series_forecasts_each_from_its_own_past(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "stores.csv"
    df = _two_series(missing_b=300)  # one hour of store b absent: never a target, and the chain's rolling fits skip it
    df.to_csv(csv, index=False)  # no rows for the forecast hours yet
    out = tmp_path / "run"
    assert main(["train", "--data", str(csv), "--time", "ts", "--target", "sales", "--future", "promo", "--series",
                 "store", "--horizon", "2", "--epochs", "2", "--hidden-size", "8", "--batch-size", "128",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    model = Model.load(out / "model.pt")
    assert [s.kind for s in model.forecaster.steps][:1] == ["calibration"]  # counts: the bikes data's chain
    # predicting needs the promotion flag of the forecast hours: refused in one line without them
    assert main(["predict", str(out / "model.pt"), "--data", str(csv)]) == 2
    assert "known-future covariate 'promo' is absent for the forecast time 2024-01-31 00:00:00" in _one_error(capsys)
    ahead = pd.DataFrame({"store": ["a", "a", "b", "b"], "ts": ["2024-01-31 00:00", "2024-01-31 01:00"] * 2,
                          "sales": ["", "", "", ""], "promo": [0, 1, 0, 1]})
    pd.concat([df.astype(str), ahead.astype(str)]).sort_values(["store", "ts"], kind="stable").to_csv(csv, index=False)
    table = model.predict(csv)
    assert list(table["store"]) == ["a", "a", "b", "b"] and len(set(table["time"])) == 2
    level = table.groupby("store")["forecast"].mean()
    assert level["b"] > level["a"]  # each series from its own past
    ev = model.test(csv)
    assert np.isfinite(ev.prediction).all() and all(np.isfinite(lo).all() for lo, _ in ev.bands.values()) and ev.baselines
    assert ev.data.filled_targets("train") == (0, ev.data.filled_targets("train")[1])  # the absent hour: no target


@pytest.mark.parametrize("edit, expect", [
    (lambda d: d.drop(columns="wind"), "no column 'wind'"),
    (lambda d: d.assign(wind=d["wind"].where(d.index != 5, "calm")), "line 7, column 'wind': 'calm' is not a number"),
    (lambda d: d.assign(wind=d["wind"].where(d.index != 9, "inf")), "line 11, column 'wind': 'inf' is not a finite number"),
    (lambda d: d.assign(temp_max=d["temp_max"].where(d.index != 3, "")), "line 5, column 'temp_max': is empty"),
    (lambda d: pd.concat([d.iloc[:10], d.iloc[9:]]), "line 12, column 'date': duplicated timestamp 2012-01-10"),
    (lambda d: pd.concat([d.iloc[:10], d.iloc[11:12], d.iloc[10:11], d.iloc[12:]]),
     "line 13, column 'date': 2012-01-11 00:00:00 comes after 2012-01-12 00:00:00; rows must be in time order"),
    (lambda d: d.assign(date=d["date"].where(d.index != 2, "yesterday")), "line 4, column 'date': 'yesterday' is not a timestamp"),
    (lambda d: d.iloc[:20], "20 rows: too few for one window of 24 inputs and 1 target(s)"),
])
def test_every_validation_error_is_one_line_naming_file_line_and_column(edit, expect: str, tmp_path: Path,
                                                                        capsys) -> None:
    bad = tmp_path / "weather.csv"
    edit(pd.read_csv(SEATTLE, dtype=str, keep_default_na=False)).to_csv(bad, index=False)
    args = ["data", "info", "--data", str(bad), "--time", "date", "--target", "temp_max", "--past", "wind",
            "--absent", "zero", "--target-transform", "standard"]
    assert main(args) == 2
    err = _one_error(capsys)
    assert str(bad) in err and expect in err, err


def test_a_dataset_description_that_does_not_hold_together_is_refused(capsys) -> None:
    assert main(["data", "info", "--data", str(SEATTLE), "--target", "temp_max"]) == 2
    assert "needs both --time and --target" in _one_error(capsys)
    assert main(["data", "info", "--past", "wind"]) == 2
    assert "give --time and --target too" in _one_error(capsys)
    assert main(["data", "info", *WEATHER[:6], "--past", "temp_max"]) == 2
    assert "column 'temp_max' is named twice" in _one_error(capsys)
    assert main(["data", "info", *WEATHER, "--freq", "fortnightly"]) == 2
    assert "--freq 'fortnightly': not a pandas frequency" in _one_error(capsys)


def test_tune_refuses_a_bad_file_in_one_line_before_ray_starts(tmp_path: Path, capsys) -> None:
    import ray

    bad = tmp_path / "weather.csv"
    raw = pd.read_csv(SEATTLE, dtype=str, keep_default_na=False)
    pd.concat([raw.iloc[:30], raw.iloc[29:]]).to_csv(bad, index=False)  # line 32 repeats 2012-01-30
    assert main(["tune", "--preset", "quick", "--data", str(bad), "--time", "date", "--target", "temp_max",
                 "--storage", str(tmp_path / "runs"), "--name", "x"]) == 2
    assert "line 32, column 'date': duplicated timestamp 2012-01-30" in _one_error(capsys)
    assert not ray.is_initialized() and not (tmp_path / "runs" / "x").exists()


def test_a_naive_member_forecasts_the_value_a_season_before_within_its_series_and_round_trips(tmp_path: Path) -> None:
    from rnn_core.forecaster import (
        PostProcessed, SeasonalNaive, ensemble_of, load_model, member_bundle, naive_bundles, save_forecaster,
    )

    frame, ds, _ = series_frame(_two_series(missing_b=300), STORES)
    cfg = DataConfig(dataset=ds, horizon=3)
    naive = SeasonalNaive(24, cfg)
    y = frame["sales"].to_numpy()
    origins = np.array([100, 30 * 24 + 10, 30 * 24 + 400])  # a; b before its first day is over; b later
    got = naive.forecast(frame, origins)
    assert got[0].tolist() == [y[101 - 24], y[102 - 24], y[103 - 24]]
    assert got[1].tolist() == [y[30 * 24 + 10]] * 3  # never store a's hours: the value at the origin
    assert got[2].tolist() == [y[30 * 24 + 401 - 24], y[30 * 24 + 402 - 24], y[30 * 24 + 403 - 24]]
    assert set(naive_bundles(cfg)) == {"persistence", "seasonal_24h", "seasonal_168h"}
    with pytest.raises(Exception, match="lag must be 0 or at least the horizon"):
        SeasonalNaive(2, cfg)
    # in an ensemble file beside a network, read back as the same weighted mean
    out = tmp_path / "run"
    assert main(["train", "--data", str(_write(tmp_path)), "--time", "ts", "--target", "sales", "--future", "promo",
                 "--series", "store", "--horizon", "3", "--epochs", "1", "--hidden-size", "8", "--out", str(out)]) == 0
    net = load_model(out / "model.pt").base
    base = ensemble_of({"net": member_bundle(net.bundle), **naive_bundles(net.data_config)},
                       {"net": 0.5, "seasonal_24h": 0.5})
    save_forecaster(tmp_path / "ens.pt", PostProcessed(base))
    back = load_model(tmp_path / "ens.pt")
    o = np.array([500, 1000])
    want = 0.5 * net.forecast(frame, o) + 0.5 * SeasonalNaive(24, net.data_config).forecast(frame, o)
    assert np.allclose(back.forecast(frame, o), want) and "the value 24 steps before" in back.base.describe()


def _write(tmp_path: Path) -> Path:
    csv = tmp_path / "stores.csv"
    _two_series(missing_b=300).to_csv(csv, index=False)
    return csv


def test_a_daily_series_default_split_is_the_same_under_pandas_2_and_3() -> None:
    """The default boundaries are the next step after 80% and 90% of the span (pandas 3's Day is no Tick: it was
    floored to the day there and ceiled under pandas 2, one day apart)."""
    from rnn_core.data import default_bounds, valid_origins
    from rnn_core.series import read_frame

    frame, *_, resolved = read_frame(SEATTLE, SEATTLE_DS)
    cfg = DataConfig(dataset=resolved, target_transform="standard")
    hours = frame.index.to_numpy()
    assert default_bounds(hours, valid_origins(frame, cfg), cfg) == ("2015-03-19 00:00:00", "2015-08-10 00:00:00", None)
