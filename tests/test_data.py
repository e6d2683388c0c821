"""The bikes data pipeline: grid, features, leakage-free windows, splits, scaling, bad input, download."""

from __future__ import annotations

import http.server
import io
import pickle
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rnn_core.data import DataConfig, DataError, TargetScaler, build, feature_names, load, load_frame, n_features
from rnn_core.datasets import cache_dir
from rnn_core.datasets.bikes import CNT_TOTAL, find_data, read_raw

GRID_ROWS = 17_544
#: The bikes data's inputs of each hour, in order (without the known-future block).
FEATURES = ("day_sin", "day_cos", "week_sin", "week_cos", "month_sin", "month_cos", "holiday", "workingday", "daylight",
            "weather_1", "weather_2", "weather_3", "weather_4", "temp", "atemp", "hum", "windspeed", "is_missing",
            "cnt_history", "casual_log1p", "registered_log1p")
from search.cli import main


# ------------------------------------------------------------------ grid, features, splits


def test_grid_is_complete_and_filled_hours_are_marked(hour_csv: Path) -> None:
    frame, source, n_filled, raw_rows = load_frame(hour_csv)
    assert raw_rows == 17_379 and len(frame) == GRID_ROWS == 17_544 and n_filled == 165
    assert frame.index[0] == pd.Timestamp("2011-01-01 00:00") and frame.index[-1] == pd.Timestamp("2012-12-31 23:00")
    filled = frame["is_missing"] == 1
    assert filled.sum() == 165
    assert (frame.loc[filled, ["cnt", "casual", "registered"]] == 0).all().all()
    assert frame[["temp", "hum", "weather_1", "holiday", "workingday"]].notna().all().all()
    assert frame["cnt"].sum() == CNT_TOTAL
    # weather of a filled hour is the last observed hour's
    first = np.flatnonzero(filled.to_numpy())[0]
    assert frame["temp"].iloc[first] == frame["temp"].iloc[first - 1]


def test_features_are_listed_once_in_order(bikes) -> None:
    assert bikes.feature_names[: len(FEATURES)] == list(FEATURES)
    assert bikes.feature_names == feature_names(bikes.config)
    assert bikes["train"].X.shape[2] == len(bikes.feature_names) == n_features(bikes.config)
    no_future = DataConfig(future_calendar=False)
    assert feature_names(no_future) == list(FEATURES)
    # a config stored before the daylight input (and before the bikes data was described): its models read the 8
    # calendar features they were trained on
    old = DataConfig.from_dict({"future_calendar": False, "dataset": {"time": None, "target": None}})
    assert old.dataset.features == () and feature_names(old) == [n for n in FEATURES if n != "daylight"]


def test_the_sun_height_follows_the_season_and_the_clocks() -> None:
    from rnn_core.datasets.bikes import SITE
    from rnn_core.features import sun_height

    def up(day: str) -> list[int]:  # the local hours whose middle has the sun more than ~1 degree up
        times = pd.date_range(day, periods=24, freq="h")
        return [int(h) for h in times.hour[sun_height(times, SITE) > 0.02]]

    assert up("2012-06-21") == list(range(6, 20))  # Washington DC: sunrise ~5:43, sunset ~20:37 (EDT)
    assert up("2012-12-21") == list(range(8, 17))  # ~7:23 .. ~16:49 (EST)
    # the clocks go back on 2012-11-04: the 17:00-18:00 hour, light before, is dark after
    before, after = (sun_height(pd.DatetimeIndex([f"{d} 16:00", f"{d} 17:00"]), SITE) for d in ("2012-11-03", "2012-11-05"))
    assert before[1] > -0.02 and after[1] < -0.08 and after[0] > 0


def test_default_split_dates_and_no_shared_target_hours(bikes) -> None:
    tr, va, te = bikes["train"], bikes["val"], bikes["test"]
    assert str(te.target_time[0, 0])[:16] == "2012-11-01T00:00" and str(te.target_time[-1, -1])[:16] == "2012-12-31T23:00"
    assert str(va.target_time[0, 0])[:16] == "2012-09-01T00:00" and str(va.target_time[-1, -1])[:16] == "2012-10-31T23:00"
    assert tr.target_time[-1, -1] < va.target_time[0, 0]
    sets = [set(s.target_time.ravel().tolist()) for s in (tr, va, te)]
    assert not (sets[0] & sets[1]) and not (sets[1] & sets[2]) and not (sets[0] & sets[2])
    assert len(te) == 61 * 24 and len(va) == 61 * 24
    for s in (tr, va, te):
        assert s.X.dtype == torch.float32 and s.y.shape == (len(s), 1)


def test_horizon_windows_never_straddle_splits(hour_csv: Path) -> None:
    data = load(DataConfig(horizon=3), hour_csv)
    sets = [set(data[n].target_time.ravel().tolist()) for n in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[1] & sets[2])
    assert data["test"].y.shape[1] == 3


@pytest.mark.parametrize("split", ["default", "2012-05-01,2012-07-01,2012-08-31"])
def test_validation_windows_spread_over_the_year_leak_nothing(hour_csv: Path, split: str) -> None:
    """K validation windows: the single window's length in K parts over the year before the test period; no
    training window has an input or target hour in a validation window; the scalers never see those hours."""
    from rnn_core.config import split_kwargs
    from rnn_core.data import FeatureScaler, build, load_frame, raw_features

    frame, *_ = load_frame(hour_csv)
    one = build(frame, DataConfig(sequence_size=48, horizon=3, **split_kwargs(split)))
    four = build(frame, DataConfig(sequence_size=48, horizon=3, val_windows=4, **split_kwargs(split)))
    va, tr, te = four["val"], four["train"], four["test"]
    assert np.array_equal(te.origin, one["test"].origin)  # the test period does not move
    runs = np.split(va.origin, np.where(np.diff(va.origin) > 1)[0] + 1)
    assert len(runs) == 4 and abs(len(va) - len(one["val"])) <= 4 * 3
    assert va.target_time[-1, -1] == one["val"].target_time[-1, -1]  # the last window ends where the test starts
    span = va.target_time[-1, -1] - va.target_time[0, 0]
    assert np.timedelta64(250, "D") < span < np.timedelta64(366, "D")  # spread over the year before the test
    val_hours = set(va.target_time.ravel().tolist())
    hours = four.times
    for o in tr.origin:  # every training window, inputs and targets
        assert not val_hours & set(hours[o - 47 : o + 4].tolist())
    assert not val_hours & set(te.target_time.ravel().tolist())
    assert tr.target_time.max() < te.target_time.min()
    # windows on the copied rows equal plain slices of the hourly feature matrix
    feats = FeatureScaler.from_dict(four.feature_scaler.to_dict()).apply(raw_features(frame, four.config))
    for i in (0, 400, len(va) - 1):
        o = va.origin[i]
        np.testing.assert_array_equal(va.X[i].numpy(), feats[o - 47 : o + 1])
    # the target scaler saw only hours of training windows
    rows = np.zeros(len(hours), dtype=bool)
    for o in tr.origin[:: 1]:
        rows[o - 47 : o + 4] = True
    assert four.target_scaler.mean == pytest.approx(np.log1p(four.target[rows].astype(np.float64)).mean())
    with pytest.raises(ValueError, match="val_windows must be an integer from 1 to 12"):
        DataConfig(val_windows=0)
    with pytest.raises(ValueError, match="lecture split has one validation window"):
        DataConfig(split="lecture", val_windows=2)


def test_lecture_and_custom_splits(hour_csv: Path) -> None:
    lec = load(DataConfig(split="lecture"), hour_csv)
    assert len(lec["test"]) == 24 and len(lec["val"]) == 96
    assert lec["val"].origin[-1] + 1 == lec["test"].origin[0]
    custom = load(DataConfig(split="custom", val_start="2012-06-01", test_start="2012-07-01", test_end="2012-07-31"), hour_csv)
    assert str(custom["val"].target_time[0, 0])[:10] == "2012-06-01"
    assert str(custom["test"].target_time[-1, -1])[:16] == "2012-07-31T23:00"
    with pytest.raises(ValueError, match="must increase"):
        DataConfig(split="custom", val_start="2012-07-01", test_start="2012-06-01")


def test_windows_are_the_hourly_feature_rows(bikes) -> None:
    """Vectorised windows equal a plain slice of the hourly matrix ending at each origin."""
    from rnn_core.data import features_for, load_frame

    frame, *_ = load_frame(_csv_of(bikes))
    feats = features_for(frame, bikes.config, bikes.feature_scaler)  # [T, F]
    s = bikes["val"]
    for i in (0, 17, len(s) - 1):
        t = s.origin[i]
        assert torch.equal(s.X[i], torch.from_numpy(feats[t - 23 : t + 1]))
        assert s.y_raw[i, 0] == bikes.target[t + 1]


def _csv_of(data) -> str:
    return data.source.split(" ", 1)[1]


def test_scalers_come_from_the_training_split_only(hour_csv: Path) -> None:
    frame, *_ = load_frame(hour_csv)
    base = build(frame, DataConfig())
    changed = frame.copy()
    test_hours = changed.index >= pd.Timestamp("2012-09-01")
    changed.loc[test_hours, ["cnt", "casual", "registered"]] *= 5
    changed.loc[test_hours, "temp"] = 0.99
    other = build(changed, DataConfig())
    assert other.feature_scaler == base.feature_scaler and other.target_scaler == base.target_scaler
    z = base.target_scaler.forward(np.array([0.0, 10.0, 977.0]))
    assert np.allclose(base.target_scaler.inverse(z), [0.0, 10.0, 977.0])


def test_the_sqrt_transform_is_fitted_on_training_roots_and_inverts_to_counts(hour_csv: Path) -> None:
    frame, *_ = load_frame(hour_csv)
    data = build(frame, DataConfig(target_transform="sqrt"))
    rows = data["train"].y_raw.numpy().ravel()  # the training targets, bikes per hour
    scaler = data.target_scaler
    assert scaler.mean == pytest.approx(np.sqrt(rows).mean(), rel=0.02) and scaler.std > 0
    counts = np.array([0.0, 1.0, 10.0, 977.0])
    assert np.allclose(scaler.inverse(scaler.forward(counts)), counts)
    assert np.allclose(scaler.inverse(torch.as_tensor(scaler.forward(counts))).numpy(), counts)
    below = scaler.forward(np.array([0.0]))[0] - 1.0  # a model output under the root of zero is no bikes, not its square
    assert scaler.inverse(np.array([below]))[0] == 0.0
    assert np.allclose(data["train"].y.numpy().ravel(), scaler.forward(rows), atol=1e-5)


@pytest.mark.parametrize("horizon", [1, 3])
def test_change_and_both_targets_are_changes_from_the_origin_and_invert_to_counts(hour_csv: Path, horizon: int) -> None:
    frame, *_ = load_frame(hour_csv)
    cnt = frame["cnt"].to_numpy(np.float64)
    level = build(frame, DataConfig(target_transform="sqrt", horizon=horizon))
    change = build(frame, DataConfig(target_transform="sqrt", target_form="change", horizon=horizon))
    both = build(frame, DataConfig(target_transform="sqrt", target_form="both", horizon=horizon))
    sc = change.target_scaler
    assert sc.form == "change" and TargetScaler.from_dict(sc.to_dict()) == sc
    # the change's statistics: the training windows' changes only; the level's are the level target's own
    tr = change["train"]
    d = np.sqrt(tr.y_raw.double().numpy()) - np.sqrt(tr.anchor)[:, None]  # [N, H]
    assert sc.change_mean == pytest.approx(d.mean(), abs=1e-4) and sc.change_std == pytest.approx(d.std(), rel=1e-4)
    assert (both.target_scaler.mean, both.target_scaler.std) == (level.target_scaler.mean, level.target_scaler.std)
    assert both.model_config(cell="gru").targets == 2 and change.model_config(cell="gru").targets == 1
    for name in ("train", "val", "test"):
        s, b = change[name], both[name]
        assert np.array_equal(s.anchor, cnt[s.origin]) and level[name].anchor is None  # the count at t, the last input hour
        d = np.sqrt(s.y_raw.double().numpy()) - np.sqrt(s.anchor)[:, None]
        assert np.allclose(s.y.double().numpy(), (d - sc.change_mean) / sc.change_std, atol=1e-5)
        assert torch.equal(b.y, torch.cat([level[name].y, s.y], 1))  # [N, 2H]: the levels, then the changes
        assert np.allclose(sc.inverse(s.y.double(), s.anchor).numpy(), s.y_raw.numpy(), atol=1e-2)
        assert np.allclose(both.target_scaler.inverse(b.y.double(), b.anchor).numpy(), b.y_raw.numpy(), atol=1e-2)
    # 'both' forecasts the mean of its two outputs in bikes
    z = torch.cat([level["val"].y[:5], change["val"].y[:5] + 0.3], 1).double()
    want = 0.5 * (level.target_scaler.inverse(z[:, :horizon]) + sc.inverse(z[:, horizon:], change["val"].anchor[:5]))
    assert torch.allclose(both.target_scaler.inverse(z, change["val"].anchor[:5]), want)
    with pytest.raises(ValueError, match="needs the counts at the forecast origins"):
        sc.inverse(tr.y[:3])
    # a scaler stored before the form existed learnt the level; a level scaler cannot serve a change config
    old = {k: v for k, v in level.target_scaler.to_dict().items() if k in ("transform", "mean", "std")}
    assert TargetScaler.from_dict(old) == level.target_scaler
    with pytest.raises(DataError, match="is for a level target, this data config's target_form is change"):
        build(frame, change.config, scalers=(change.feature_scaler, TargetScaler.from_dict(old)))


def test_a_change_target_of_a_series_starts_from_its_last_known_value() -> None:
    from rnn_core.config import Dataset
    from rnn_core.data import origin_values

    frame = pd.DataFrame({"y": [1.0, np.nan, np.nan, 4.0, np.nan, 6.0], "store": ["a", "a", "a", "b", "b", "b"]},
                         index=pd.RangeIndex(6))
    cfg = DataConfig(target_form="change", dataset=Dataset(time="t", target="y", series="store"))
    # a missing step carries its series' last value; b's first value is never carried from a
    assert origin_values(frame, cfg, np.arange(6)).tolist() == [1.0, 1.0, 1.0, 4.0, 4.0, 6.0]
    first_missing = frame.assign(y=[np.nan, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert origin_values(first_missing, cfg, np.array([0, 1])).tolist() == [0.0, 2.0]
    assert origin_values(frame, DataConfig(dataset=cfg.dataset), np.arange(6)) is None


@pytest.mark.parametrize("horizon", [1, 3, 24])
def test_no_count_after_t_enters_the_window(hour_csv: Path, horizon: int) -> None:
    """Changing cnt/casual/registered at hours >= t+1 leaves every window whose first target is t+1
    unchanged (the encoder-decoder's decoder inputs are part of it); changing them at hour t changes it."""
    cfg = DataConfig(horizon=horizon)
    frame, *_ = load_frame(hour_csv)
    base = build(frame, cfg)
    scalers = (base.feature_scaler, base.target_scaler)
    for split, i in (("train", 500), ("val", 100), ("test", 0), ("test", 700)):
        s = base[split]
        t = int(s.origin[i])
        later = frame.copy()
        later.iloc[t + 1 :, [later.columns.get_loc(c) for c in ("cnt", "casual", "registered")]] += 1000
        after = build(later, cfg, scalers=scalers)
        assert torch.equal(after[split].X[i], s.X[i]), f"{split} window {i}: a count after t leaked into the input"
        if horizon == 24:  # an encoder-decoder sees nothing else: its forecast is unchanged
            from rnn_core.model import RNNForecaster

            torch.manual_seed(0)
            model = RNNForecaster(base.model_config(arch="seq2seq", cell="gru", hidden_size=8, num_layers=1)).eval()
            with torch.no_grad():
                assert torch.equal(model(after[split].X[i : i + 1]), model(s.X[i : i + 1]))
        assert not torch.equal(after[split].y_raw[i], s.y_raw[i])  # ... while its targets did change
        at_t = frame.copy()
        for col in ("cnt", "casual", "registered"):
            at_t.iloc[t, at_t.columns.get_loc(col)] += 1000
        now = build(at_t, cfg, scalers=scalers)
        assert not torch.equal(now[split].X[i], s.X[i]), "hour t's counts must be in the input"


def test_output_is_small_and_picklable(bikes) -> None:
    blob = pickle.dumps(bikes)
    assert len(blob) < 20e6
    back = pickle.loads(blob)
    assert torch.equal(back["test"].X, bikes["test"].X) and back.config == bikes.config


# ------------------------------------------------------------------ bad input


HEADER = "instant,dteday,season,yr,mnth,hr,holiday,weekday,workingday,weathersit,temp,atemp,hum,windspeed,casual,registered,cnt"


def _write_variant(hour_csv: Path, tmp_path: Path, edit) -> Path:
    lines = hour_csv.read_text().splitlines()
    lines = edit(lines)
    out = tmp_path / "bad.csv"
    out.write_text("\n".join(lines) + "\n")
    return out


def _set_cell(lines: list[str], line_no: int, col: str, value: str) -> list[str]:
    cols = lines[0].split(",")
    parts = lines[line_no - 1].split(",")
    parts[cols.index(col)] = value
    lines[line_no - 1] = ",".join(parts)
    return lines


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda ls: [ls[0].replace(",windspeed", "")] + [",".join(l.split(",")[:13] + l.split(",")[14:]) for l in ls[1:]],
         r"missing column\(s\) windspeed"),
        (lambda ls: _set_cell(ls, 101, "temp", "warm"), r"line 101, column 'temp': 'warm' is not a number"),
        (lambda ls: _set_cell(ls, 7, "hr", "24"), r"line 7, column 'hr': '24' is out of range; expected an hour from 0 to 23"),
        (lambda ls: _set_cell(ls, 9, "weathersit", "5"), r"line 9, column 'weathersit': '5' is out of range"),
        (lambda ls: _set_cell(_set_cell(ls, 12, "casual", "-3"), 12, "cnt", "-3"), r"line 12, column 'casual': '-3' is out of range; expected a count >= 0"),
        (lambda ls: ls[:50] + [ls[49]] + ls[50:], r"line 51, columns 'dteday'/'hr': duplicated timestamp 2011-01-03"),
        (lambda ls: ls[:30] + [ls[31], ls[30]] + ls[32:], r"line 32, columns 'dteday'/'hr': timestamp .* comes after"),
        (lambda ls: _set_cell(ls, 40, "cnt", "999"), r"line 40, column 'cnt': casual \+ registered = .* but cnt = 999"),
        (lambda ls: _set_cell(ls, 5, "dteday", "2011-13-45"), r"line 5, column 'dteday': '2011-13-45' is not a date"),
    ],
    ids=["missing-column", "non-numeric", "hour-range", "weather-range", "negative-count", "duplicate", "unordered",
         "sum-mismatch", "bad-date"],
)
def test_bad_input_is_refused_with_file_line_and_column(hour_csv: Path, tmp_path: Path, edit, pattern: str) -> None:
    bad = _write_variant(hour_csv, tmp_path, edit)
    with pytest.raises(DataError, match=pattern) as err:
        read_raw(bad)
    assert str(bad) in str(err.value)


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty.csv: the file is empty"):
        read_raw(empty)
    header = tmp_path / "header.csv"
    header.write_text(HEADER + "\n")
    with pytest.raises(DataError, match=r"header.csv: the file has a header but no data rows"):
        read_raw(header)


def test_cli_prints_the_message_not_a_traceback(hour_csv: Path, tmp_path: Path, capsys) -> None:
    bad = _write_variant(hour_csv, tmp_path, lambda ls: _set_cell(ls, 3, "hum", "n/a"))
    assert main(["data", "info", "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 3, column 'hum'" in err and "Traceback" not in err
    assert main(["data", "info", "--data", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_data_info(hour_csv: Path, capsys) -> None:
    assert main(["data", "info", "--data", str(hour_csv)]) == 0
    out = capsys.readouterr().out
    for text in ("17,544", "steps filled:  165", "test   1,464 windows", "2012-11-01T00:00", "cnt_history", str(hour_csv)):
        assert text in out


# ------------------------------------------------------------------ finding and downloading


def test_lookup_order(hour_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_data(hour_csv)[1].startswith("--data")
    monkeypatch.setenv("RNN_SEARCH_DATA", str(hour_csv))
    assert find_data()[1].startswith("RNN_SEARCH_DATA")
    monkeypatch.delenv("RNN_SEARCH_DATA")
    (cache_dir()).mkdir(parents=True, exist_ok=True)
    (cache_dir() / "hour.csv").write_bytes(hour_csv.read_bytes())
    assert find_data()[1].startswith("cache")


def test_missing_everywhere_names_the_ways_to_provide_it() -> None:
    with pytest.raises(DataError) as err:
        find_data()  # the download URL points at a closed port on 127.0.0.1
    msg = str(err.value)
    for way in ("--data", "RNN_SEARCH_DATA", "RNN_SEARCH_CACHE", "RNN_SEARCH_DATA_URL"):
        assert way in msg
    assert not any(cache_dir().iterdir())


@pytest.fixture
def zip_server(hour_csv: Path, tmp_path: Path):
    """A real HTTP server on 127.0.0.1 serving a good, a truncated and a wrong zip."""
    root = tmp_path / "www"
    root.mkdir()
    good = io.BytesIO()
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(hour_csv, "Bike-Sharing-Dataset/hour.csv")
        zf.writestr("Readme.txt", "UCI Bike Sharing")
    (root / "good.zip").write_bytes(good.getvalue())
    (root / "truncated.zip").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    wrong = io.BytesIO()
    lines = hour_csv.read_text().splitlines()
    with zipfile.ZipFile(wrong, "w") as zf:
        zf.writestr("hour.csv", "\n".join(lines[:-100]) + "\n")  # 100 rows short
    (root / "wrong.zip").write_bytes(wrong.getvalue())

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_then_caches(zip_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNN_SEARCH_DATA_URL", f"{zip_server}/good.zip")
    path, source = find_data()
    assert path == cache_dir() / "hour.csv" and "downloaded" in source
    assert sorted(p.name for p in cache_dir().iterdir()) == ["hour.csv"]
    assert find_data()[1].startswith("cache")  # next time: from the cache, no download


@pytest.mark.parametrize("name, pattern", [("truncated.zip", "not a complete zip"),
                                           ("wrong.zip", "failed verification: .* 17,279 rows, expected 17,379"),
                                           ("missing.zip", "download of .* failed")])
def test_bad_download_leaves_nothing_in_the_cache(zip_server: str, monkeypatch: pytest.MonkeyPatch, name: str, pattern: str) -> None:
    monkeypatch.setenv("RNN_SEARCH_DATA_URL", f"{zip_server}/{name}")
    with pytest.raises(DataError, match=pattern) as err:
        find_data()
    assert "--data" in str(err.value) and "RNN_SEARCH_DATA" in str(err.value)
    assert not cache_dir().exists() or not any(cache_dir().iterdir())
