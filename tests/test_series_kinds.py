"""Every series first-class (issue 45): `test`, `predict` and `data info` on a half-hourly, a daily and a weekly
real series (each ships inside a package of the test extra) speak the series' own step and units, keep at least
three significant digits, and keep stdout for the data: warnings go to stderr, once. No Ray."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import pandas as pd
import pytest

from search.cli import build_parser, main

pmdarima = pytest.importorskip("pmdarima", reason="the test extra installs pmdarima (pip install -e '.[test]')")
vega = pytest.importorskip("vega_datasets", reason="the test extra installs vega_datasets (pip install -e '.[test]')")
ROOT = Path(__file__).resolve().parents[1]


def _demand() -> pd.DataFrame:
    """Half-hourly electricity demand in England and Wales from Monday 5 June 2000, 12 weeks (Taylor 2003), in GW."""
    from pmdarima.datasets import load_taylor

    y = load_taylor(as_series=False)
    return pd.DataFrame({"time": pd.date_range("2000-06-05", periods=len(y), freq="30min"), "demand_gw": y / 1000.0})


def _co2() -> pd.DataFrame:
    """Weekly CO2 at Mauna Loa (ppm), 1958-2001, its 59 weeks without a reading left empty."""
    import statsmodels.api as sm

    d = sm.datasets.co2.load_pandas().data
    return pd.DataFrame({"week": d.index, "co2": d["co2"].to_numpy()})


#: kind -> (make the frame, time column, target, the step's words: one step, several, the table's unit)
KINDS = {
    "half-hourly": (_demand, "time", "demand_gw", "a 30-minute step", "30-minute steps"),
    "daily": (lambda: vega.local_data.seattle_weather()[["date", "temp_max", "precipitation", "wind"]], "date",
              "temp_max", "a day", "days"),
    "weekly": (_co2, "week", "co2", "a week", "weeks"),
}


@pytest.fixture(scope="module", params=list(KINDS))
def trained(request, tmp_path_factory) -> tuple[str, Path, Path]:
    """(kind, the series' CSV, a model trained on it for two steps ahead: a tiny budget)."""
    kind = request.param
    make, time, target, *_ = KINDS[kind]
    folder = tmp_path_factory.mktemp(kind)
    csv = folder / f"{kind}.csv"
    make().to_csv(csv, index=False)
    assert main(["train", "--data", str(csv), "--time", time, "--target", target, "--horizon", "2", "--epochs", "2",
                 "--hidden-size", "8", "--num-layers", "1", "--batch-size", "64", "--sequence-size", "8",
                 "--target-transform", "standard", "--out", str(folder / "run")]) == 0
    return kind, csv, folder / "run" / "model.pt"


def _significant(cell: str) -> int:
    """Significant digits shown in a number as printed: '0.0215' -> 3, '22.92' -> 4."""
    digits = cell.replace("-", "").replace(",", "").replace(".", "").lstrip("0")
    return len(digits)


def test_test_speaks_the_series_step_and_units(trained, capsys) -> None:
    kind, csv, model = trained
    _, _, target, one, many = KINDS[kind]
    capsys.readouterr()
    assert main(["test", str(model)]) == 0  # no --data: the file it was trained on
    out, err = capsys.readouterr()
    assert f"horizon 2 (2 {many})" in out, out
    assert f"per step ({many} ahead)" in out and "hours ahead" not in out, out
    assert f"({target}, mean over the steps)" in out, out
    rows = [line for line in out.splitlines() if re.match(r"^(model|persistence|seasonal_\w+)\s", line)]
    season = {"half-hourly": "seasonal_24h", "daily": "seasonal_7d", "weekly": "seasonal_52w"}[kind]
    assert any(r.startswith(season) for r in rows), rows  # a week ending on a Saturday is still a week (W-SAT)
    assert len(rows) >= 2 and len({len(r) for r in rows}) == 1, rows  # one width: a long name never slips a column
    for row in rows:
        assert all(_significant(c) >= 3 for c in row.split()[1:]), row
    intervals = next(line for line in out.splitlines() if line.startswith("intervals ("))
    assert "28 days" not in intervals or kind == "half-hourly", intervals  # the window in the series' own step
    assert "bikes" not in out and "hour.csv" not in out
    assert "warning" not in out.lower()


def test_predict_prints_only_the_table_on_stdout(trained, capsys) -> None:
    kind, csv, model = trained
    _, _, target, one, many = KINDS[kind]
    capsys.readouterr()
    assert main(["predict", str(model)]) == 0  # no --data: the file it was trained on
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("# origin ") and f"2 {many} ahead; {target} with 80%, 95% intervals" in lines[0], lines[0]
    assert lines[1].split() == ["time", "forecast", "80%", "from", "to", "95%", "from", "to"], lines[1]
    assert len(lines) == 4, out  # the header, the column names, the two steps: nothing else on stdout
    for line in lines[2:]:
        cells = line.split()
        pd.Timestamp(" ".join(cells[:2]) if ":" in cells[1] else cells[0])
        numbers = cells[2:] if ":" in cells[1] else cells[1:]
        assert len(numbers) == 5 and all(math.isfinite(float(c)) and _significant(c) >= 3 for c in numbers), line


def test_a_forecast_on_too_little_history_says_so_once_on_stderr(trained, tmp_path: Path, capsys) -> None:
    kind, csv, model = trained
    frame = pd.read_csv(csv)
    short = tmp_path / "short.csv"
    frame.iloc[:40].to_csv(short, index=False)  # 40 steps: less than the chain looks back over
    capsys.readouterr()
    assert main(["predict", str(model), "--data", str(short)]) == 0
    out, err = capsys.readouterr()
    assert err.count("corrects less than it did on validation") == 1, err
    assert "corrects less" not in out


def test_data_info_on_a_series_with_gaps_stays_readable(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "co2.csv"
    _co2().to_csv(csv, index=False)
    assert main(["data", "info", "--data", str(csv), "--time", "week", "--target", "co2", "--sequence-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "more runs (gaps between them)" in out, out
    assert max(len(line) for line in out.splitlines() if not line.startswith("features")) < 400, out


def test_a_file_without_time_and_target_is_told_what_is_missing(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "weather.csv"
    KINDS["daily"][0]().to_csv(csv, index=False)
    assert main(["data", "info", "--data", str(csv)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--time and --target" in err, err
    # a time column that holds no times: one line, without pandas' own warning before it
    assert main(["data", "info", "--data", str(csv), "--time", "temp_max", "--target", "wind"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Warning" not in err, err


def test_help_describes_every_series_not_one(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tune", "--help"])
    text = capsys.readouterr().out
    for flag in ("--split", "--horizon", "--seasonal-lags"):
        block = text.split(f"  {flag}", 1)[1].split("\n  -", 1)[0]
        assert "2012" not in block and "cnt" not in block and "Hours" not in block, block
    assert "SearchOptions:" not in text and "DataConfig:" not in text and "windows and splits:" in text


def test_test_plots_include_a_closer_view(trained, tmp_path: Path, capsys) -> None:
    kind, csv, model = trained
    if kind != "half-hourly":
        pytest.skip("one series is enough for the figures")
    assert main(["test", str(model), "--plots", str(tmp_path)]) == 0
    closer = tmp_path / "test_period_closer.png"
    head = closer.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24])[0] > 800


def test_the_readme_gives_step_1_one_duration() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("## Results", 1)[0]
    durations = set(re.findall(r"about (\d+ (?:s|seconds?|minutes?))", quick))
    assert len(durations) == 1, durations
