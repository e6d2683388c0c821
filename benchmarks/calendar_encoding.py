"""Which part of the year the calendar encodes, for every frequency: the month (12 steps a year) or the day of the
year (smooth). One fixed small GRU per (data set, encoding, seed), the raw network's validation and test MAE (no
post-processing chain), on the bikes data (hourly) and on daily and weekly real series that ship in vega_datasets.

    python benchmarks/calendar_encoding.py [--seeds 3]

Prints a table and writes it into benchmarks/RESULTS.md ("Calendar: month or day of the year").
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import numpy as np
import pandas as pd

from rnn_core.config import DataConfig, Dataset, TrainConfig, default_dataset
from rnn_core.data import build, load_frame
from rnn_core.series import series_frame
from rnn_core.train import fit, predict

from _common import record  # noqa: E402


def _frames() -> dict[str, tuple[pd.DataFrame, DataConfig, int]]:
    """name -> (frame on its grid, data config, epochs)."""
    from vega_datasets import local_data

    out = {}
    bikes = default_dataset()
    frame, *_ = load_frame(os.environ.get("RNN_SEARCH_DATA"), dataset=bikes)
    out["bikes (hourly, cnt)"] = (frame, DataConfig(dataset=bikes, sequence_size=24), 3)
    weather = local_data.seattle_weather()
    ds = Dataset(time="date", target="temp_max", past=("precipitation", "temp_min", "wind"))
    frame, resolved, _ = series_frame(weather, ds)
    out["Seattle weather (daily, temp_max)"] = (frame, DataConfig(dataset=resolved, sequence_size=28, target_transform="standard"), 20)
    weekly = weather.set_index("date")[["temp_max", "precipitation", "wind"]].resample("W").mean().reset_index()
    ds = Dataset(time="date", target="temp_max", past=("precipitation", "wind"))
    frame, resolved, _ = series_frame(weekly, ds)
    out["Seattle weather (weekly means, temp_max)"] = (frame, DataConfig(dataset=resolved, sequence_size=12, target_transform="standard"), 40)
    return out


def _score(frame: pd.DataFrame, cfg: DataConfig, part: str, seed: int, epochs: int) -> tuple[float, float]:
    from rnn_core.datasets import calendar_parts

    ds = dataclasses.replace(cfg.dataset, calendar=calendar_parts(cfg.dataset.freq, year=part))
    data = build(frame, dataclasses.replace(cfg, dataset=ds))
    mcfg = data.model_config(cell="gru", hidden_size=32, num_layers=1)
    tcfg = TrainConfig(max_epochs=epochs, batch_size=128 if len(data["train"]) > 2000 else 32, learning_rate=3e-3, seed=seed,
                       patience=epochs)
    res = fit(data, mcfg, tcfg)
    model = res.model
    out = []
    for split in ("val", "test"):
        s = data[split]
        pred = data.target_scaler.inverse(predict(model, s.X).double(), s.anchor).numpy()
        out.append(float(np.abs(pred - s.y_raw.numpy()).mean()))
    return out[0], out[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    rows = ["| series | month: val / test MAE | day of year: val / test MAE | test, day of year against month |",
            "|---|---|---|---|"]
    for name, (frame, cfg, epochs) in _frames().items():
        scores = {part: np.mean([_score(frame, cfg, part, s, epochs) for s in range(args.seeds)], axis=0)
                  for part in ("month", "year")}
        (mv, mt), (yv, yt) = scores["month"], scores["year"]
        rows.append(f"| {name} | {mv:.4g} / {mt:.4g} | {yv:.4g} / {yt:.4g} | {100 * (yt / mt - 1):+.1f} % |")
        print(rows[-1], flush=True)
    text = "\n".join(rows) + f"\n\nGRU 32x1, mean of {args.seeds} seeds, the raw network (no chain); `python benchmarks/calendar_encoding.py`.\n"
    print(text)
    record("Calendar: month or day of the year", text)


if __name__ == "__main__":
    main()
