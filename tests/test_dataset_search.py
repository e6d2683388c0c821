"""A search on a series of the user's own, from the command line and from Python (the README's example), with a
real Ray. Run inside a private network namespace (see README)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import main

pytestmark = pytest.mark.ray
vega = pytest.importorskip("vega_datasets", reason="the test extra installs vega_datasets (pip install -e '.[test]')")
SEATTLE = Path(vega.__file__).parent / "_data" / "seattle-weather.csv"
ROOT = Path(__file__).resolve().parents[1]


def _scores(text: str) -> dict[str, float]:
    """name -> MAE from `test`'s table."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(model|persistence|seasonal_\w+)\s+([\d.]+)\s", text, re.M)}


def test_a_quick_search_on_a_daily_series_ships_a_model_that_beats_the_naive_baselines(ray_local, tmp_path: Path,
                                                                                       capsys) -> None:
    runs = str(tmp_path / "runs")
    assert main(["tune", "--preset", "quick", "--data", str(SEATTLE), "--time", "date", "--target", "temp_max",
                 "--past", "precipitation,temp_min,wind", "--storage", runs, "--name", "weather",
                 "--progress-interval", "60"]) == 0
    out = capsys.readouterr().out
    assert "ensemble file:" in out and "(8 trials)" in out, out
    assert main(["test", "weather", "--storage", runs]) == 0  # the dataset and the file are the run's own
    scores = _scores(capsys.readouterr().out)
    assert set(scores) == {"model", "persistence", "seasonal_7d"}, scores
    assert scores["model"] < min(scores["persistence"], scores["seasonal_7d"]), scores
    assert main(["predict", str(tmp_path / "runs" / "weather" / "ensemble.pt"), "--data", str(SEATTLE)]) == 0
    assert "2016-01-01" in capsys.readouterr().out


def test_the_readmes_example_of_your_own_series_runs_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    code = readme.split("## Your own series", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    env = dict(os.environ, RAY_AIR_NEW_OUTPUT="0", RAY_worker_niceness="0")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    # RNNSearch.fit() says what it does, on stderr, as the command line does (its start and its end at least)
    assert re.search(r"^search \S+: preset quick", run.stderr, re.M), run.stderr[-3000:]
    assert "choosing an ensemble" in run.stderr, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert "2016-01-01" in run.stdout and "lower_80%" in run.stdout, run.stdout
    mae, rest = lines[-1].split(" ", 1)
    baseline = float(re.search(r"'mae': ([\d.]+)", rest).group(1))
    assert float(mae) < baseline, lines[-1]
    assert (tmp_path / "seattle.pt").is_file() and (tmp_path / "runs").is_dir()
    check = subprocess.run([sys.executable, "-c", "import sys; sys.modules['ray'] = None\n"
                            "from rnn_core.api import load; print(load('seattle.pt').predict("
                            f"{str(SEATTLE)!r}).forecast.iloc[0])"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]


@pytest.mark.parametrize("kind, windows", [("weekly co2, 44 years", 1), ("daily seattle, 4 years", 4)])
def test_the_default_presets_validation_windows_fit_the_series(kind: str, windows: int, tmp_path: Path, caplog) -> None:
    """Four validation windows over the year before the test period need a validation period of at most a year:
    44 years of weekly CO2 (a tenth is 4.4 years) get one window and a note, not a refusal; 4 years of days keep 4."""
    import dataclasses
    import logging

    import pandas as pd

    from rnn_core.config import DataConfig, Dataset
    from rnn_core.data import build, read_frame
    from search.options import SearchOptions
    from search.space import PRESETS
    from search.tuner import fit_to_dataset, preset_data

    if kind.startswith("weekly"):
        sm = pytest.importorskip("statsmodels.api", reason="the test extra installs statsmodels (through pmdarima)")
        d = sm.datasets.co2.load_pandas().data.dropna()
        table, ds = pd.DataFrame({"week": d.index, "co2": d["co2"].to_numpy()}), Dataset(time="week", target="co2")
    else:
        vega = pytest.importorskip("vega_datasets", reason="the test extra installs vega_datasets")
        table, ds = vega.local_data.seattle_weather()[["date", "temp_max"]], Dataset(time="date", target="temp_max")
    csv = tmp_path / "series.csv"
    table.to_csv(csv, index=False)
    opts = SearchOptions(preset="default", data_path=str(csv), data=DataConfig(dataset=ds))
    opts = dataclasses.replace(opts, data=preset_data(opts, PRESETS["default"].data))
    with caplog.at_level(logging.INFO, logger="search"):
        fitted, _ = fit_to_dataset(opts, dict(PRESETS["default"].space))
    assert fitted.data.val_windows == windows
    assert ("validation period of at most a year" in caplog.text) == (windows == 1), caplog.text
    frame, *_, resolved = read_frame(csv, ds)
    data = build(frame, fitted.data)  # the split builds: no "do not fit apart" refusal
    assert len(data["val"]) > 0 and len(data["test"]) > 0
