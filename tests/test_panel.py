"""Per-series scaling of a panel (rnn_core.panel, DataConfig.series_scaling) on a real panel that ships inside a
package: vega_datasets' monthly prices of five stocks, 2000-2010, whose levels differ twentyfold (MSFT about 25,
GOOG about 400). No Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rnn_core.config import DataConfig
from rnn_core.data import TargetScaler, build, covered_hours, origin_series
from rnn_core.datasets import Dataset
from rnn_core.features import feature_names, raw_features
from rnn_core.forecaster import load_model
from rnn_core.panel import SeriesScales
from rnn_core.series import series_frame
from search.cli import main

vega = pytest.importorskip("vega_datasets", reason="the test extra installs vega_datasets (pip install -e '.[test]')")
STOCKS = Path(vega.__file__).parent / "_data" / "stocks.csv"
DESCRIBED = ["--time", "date", "--target", "price", "--series", "symbol", "--freq", "MS"]


@pytest.fixture(scope="module")
def stocks() -> tuple[pd.DataFrame, Dataset]:
    df = pd.read_csv(STOCKS)
    df["date"] = pd.to_datetime(df["date"], format="%b %d %Y")
    frame, ds, _ = series_frame(df, Dataset(time="date", target="price", series="symbol", freq="MS"))
    return frame, ds


@pytest.mark.parametrize("form", ["level", "change", "both"])
def test_each_series_learns_on_its_own_scale_and_comes_back_in_its_units(stocks, form: str) -> None:
    frame, ds = stocks
    cfg = DataConfig(dataset=ds, target_transform="standard", target_form=form, sequence_size=12, horizon=3)
    data = build(frame, cfg)
    ts = data.target_scaler
    assert ts.series is not None and sorted(ts.series.names) == ["AAPL", "AMZN", "GOOG", "IBM", "MSFT"]
    for s in data.splits.values():  # model space -> units again, each window with its own series' statistics
        back = ts.inverse(s.y.double(), s.anchor, s.series).numpy()
        assert np.allclose(back, s.y_raw.numpy(), rtol=1e-5, atol=1e-3)
    # each series' training steps: mean 0 and std 1 on its own scale, in the targets and in the history input
    rows = covered_hours(data["train"].origin, len(frame), cfg.sequence_size, cfg.horizon)
    names = origin_series(frame, cfg, np.arange(len(frame)))
    hist = raw_features(frame, cfg, ts.history)[:, feature_names(cfg).index("price_history")]
    mask = np.zeros(len(frame), bool)
    mask[rows] = True
    for name in ts.series.names:
        own = mask & (names == name)
        assert abs(hist[own].mean()) < 1e-9 and hist[own].std() == pytest.approx(1.0)
        y = frame["price"].to_numpy()[own]
        assert ts.series.normalize(y, names[own]).std() == pytest.approx(1.0)


def test_one_scale_for_all_when_asked_and_for_a_single_series(stocks, hour_csv: Path) -> None:
    frame, ds = stocks
    off = build(frame, DataConfig(dataset=ds, target_transform="standard", sequence_size=12, series_scaling=False))
    assert off.target_scaler.series is None and "series" not in off.target_scaler.to_dict()
    from rnn_core.data import load

    bikes = load(DataConfig(), hour_csv).target_scaler  # one series: nothing per series, the stored fields as before
    assert set(bikes.to_dict()) == {"transform", "mean", "std", "form", "change_mean", "change_std"}


def test_the_scales_are_stored_checked_and_a_series_never_seen_gets_the_pooled_ones(stocks) -> None:
    frame, ds = stocks
    ts = build(frame, DataConfig(dataset=ds, target_transform="standard", target_form="both", sequence_size=12)).target_scaler
    assert TargetScaler.from_dict(ts.to_dict()) == ts
    bad = ts.to_dict()
    bad["series"]["std"][1] = -1.0
    with pytest.raises(ValueError, match="std must be above 0"):
        TargetScaler.from_dict(bad)
    bad["series"] = {"names": ["MSFT"], "mean": [1.0], "std": [1.0]}
    with pytest.raises(ValueError, match="pooled"):
        TargetScaler.from_dict(bad)
    s = ts.series
    z = s.normalize(np.array([50.0, 50.0]), np.array(["MSFT", "NEW"]))
    assert z[1] == pytest.approx((50.0 - s.pooled[0]) / s.pooled[1])
    with pytest.raises(ValueError, match="series of each forecast origin"):
        ts.inverse(torch.zeros(2, 6, dtype=torch.float64), np.ones(2))


def test_a_panel_model_file_forecasts_each_series_in_its_units(stocks, tmp_path: Path) -> None:
    frame, ds = stocks
    csv = tmp_path / "stocks.csv"
    frame.rename_axis("date").reset_index().to_csv(csv, index=False)
    assert main(["train", "--data", str(csv), *DESCRIBED, "--horizon", "2", "--sequence-size", "12",
                 "--hidden-size", "8", "--max-epochs", "2", "--out", str(tmp_path / "run")]) == 0
    model = load_model(tmp_path / "run" / "model.pt").base  # the network, its scalers as the file stores them
    assert model.target_scaler.series is not None and model.target_scaler.history is not None
    data = build(frame, model.data_config, scalers=(model.feature_scaler, model.target_scaler))
    test = data["test"]
    pred = model.forecast(frame, test.origin)  # [N, 2] in dollars
    for name, (lo, hi) in {"MSFT": (10, 60), "GOOG": (200, 900)}.items():
        own = test.series == name
        assert lo < np.median(pred[own]) < hi, (name, np.median(pred[own]))
