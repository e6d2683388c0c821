"""Input that is not what it claims, refused or reported in one line (exit status 2) before anything is
written: data a split does not fit, non-finite values, absent hours, hostile space files, model files with
malformed fields. No Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnn_core.checkpoint import load_bundle, save_bundle, write_bundle
from rnn_core.forecaster import load_model
from rnn_core.config import ModelConfig, TrainConfig
from rnn_core.train import fit
from search.cli import main


def _lines(hour_csv: Path) -> list[str]:
    return hour_csv.read_text().splitlines()


def _write(tmp_path: Path, lines: list[str], name: str = "edited.csv") -> Path:
    out = tmp_path / name
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module")
def model_file(bikes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real model (1 epoch, GRU 8) saved as a model file."""
    mcfg = bikes.model_config(cell="gru", hidden_size=8)
    tcfg = TrainConfig(max_epochs=1, batch_size=512)
    res = fit(bikes, mcfg, tcfg)
    return save_bundle(tmp_path_factory.mktemp("model") / "model.pt", res.state, bikes, mcfg, tcfg)


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_a_file_the_default_split_does_not_cover_is_refused(hour_csv: Path, tmp_path: Path, model_file: Path,
                                                            capsys) -> None:
    lines = _lines(hour_csv)
    only_2011 = _write(tmp_path, [lines[0]] + [line for line in lines[1:] if ",2011-" in line], "2011.csv")
    for command in (["data", "info"], ["test", str(model_file)]):
        assert main([*command, "--data", str(only_2011)]) == 2
        err = _one_error(capsys)
        assert "the default split (validation from 2012-09-01 00:00, test from 2012-11-01 00:00) is not covered" in err, err
        assert "the data covers 2011-01-01 00:00 .. 2011-12-31 23:00" in err, err
    # predict needs the model's validation hours for its intervals: refused too, never a forecast from hours the
    # file does not have (the grid used to run on to 2012-12-31 with zeros)
    assert main(["predict", str(model_file), "--data", str(only_2011)]) == 2
    assert "is not covered: the data covers 2011-01-01 00:00 .. 2011-12-31 23:00" in _one_error(capsys)
    assert main(["predict", str(model_file), "--data", str(hour_csv), "--at", "2013-01-01 00:00"]) == 2
    assert "--at 2013-01-01 00:00:00: not an hour of the data (2011-01-01 00:00:00 .. 2012-12-31 23:00:00)" in _one_error(capsys)


@pytest.mark.parametrize("value, what", [("inf", "a finite number"), ("-inf", "a finite number"), ("nan", "a number")])
def test_a_non_finite_value_is_refused_naming_line_and_column(hour_csv: Path, tmp_path: Path, capsys, value: str,
                                                              what: str) -> None:
    lines = _lines(hour_csv)
    cols = lines[0].split(",")
    row = lines[500].split(",")
    row[cols.index("hum")] = value
    lines[500] = ",".join(row)
    assert main(["data", "info", "--data", str(_write(tmp_path, lines))]) == 2
    assert f"line 501, column 'hum': '{value}' is not {what}" in _one_error(capsys)


def test_absent_hours_are_counted_per_split_and_a_long_gap_is_warned(hour_csv: Path, tmp_path: Path, model_file: Path,
                                                                      capsys) -> None:
    lines = _lines(hour_csv)
    kept = [lines[0]] + [line for line in lines[1:] if ",2012-12-0" not in line]  # 2012-12-01 .. 09 deleted
    edited = _write(tmp_path, kept)
    assert main(["data", "info", "--data", str(edited)]) == 0
    captured = capsys.readouterr()
    out, err = captured.out, captured.err  # the table on stdout; the warning, once, on stderr
    assert err.count("216 steps 2012-12-01 00:00:00 .. 2012-12-09 23:00:00") == 1 and "216 steps" not in out, err
    assert "steps filled:  381 " in out  # the file's own 165, and 216 more
    test_line = next(line for line in out.splitlines() if line.strip().startswith("test "))
    filled = int(test_line.rsplit("(", 1)[1].split(" of ")[0].replace(",", ""))
    # the 216 deleted hours are test targets, with the file's own absent ones (4 in November-December)
    assert test_line.endswith(" of 1,464 target steps filled)") and 216 <= filled <= 220, test_line
    assert main(["test", str(model_file), "--data", str(edited)]) == 0
    assert f"({filled} of the 1,464 target steps are absent from the file and count as 0" in capsys.readouterr().out


def test_hostile_or_broken_space_files_are_one_line(tmp_path: Path, capsys) -> None:
    for text in ("!!python/object/apply:os.system ['echo pwned']\n", "cell: {choice: [gru, lstm\n", "a: b: c\n"):
        space = tmp_path / "space.yaml"
        space.write_text(text)
        assert main(["tune", "--space", str(space), "--storage", str(tmp_path / "runs"), "--data", "/nonexistent.csv"]) == 2
        err = _one_error(capsys)
        assert f"{space}: not valid YAML at line" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("field, edit, pattern", [
    ("target_scaler", lambda d: dict(d, offset=3.0), "target_scaler cannot be read: unknown field(s) offset"),
    ("target_scaler", lambda d: {k: v for k, v in d.items() if k != "std"}, "target_scaler cannot be read: missing field(s) std"),
    ("target_scaler", lambda d: dict(d, std=float("nan")), "target_scaler cannot be read: std nan: expected a finite number"),
    ("target_scaler", lambda d: dict(d, transform="cbrt"), "target_scaler cannot be read: transform 'cbrt'"),
    ("target_scaler", lambda d: dict(d, form="delta"), "target_scaler cannot be read: form 'delta': expected one of level"),
    ("target_scaler", lambda d: dict(d, form="both"), "its target scaler (both), model (1 output(s) per hour) and data config"),
    ("target_scaler", lambda d: {**d, "form": "change", "change_std": 1.0, "change_mean": None},
     "target_scaler cannot be read: change_mean None: expected a finite number"),
    ("feature_scaler", lambda d: {k: v for k, v in d.items() if k != "std"}, "feature_scaler cannot be read: expected the fields"),
    ("feature_scaler", lambda d: dict(d, mean=d["mean"][:-1]), "feature_scaler cannot be read: mean: expected"),
    ("feature_scaler", lambda d: dict(d, std=[0.0] * len(d["std"])), "feature_scaler cannot be read: std of"),
])
def test_a_model_file_with_a_malformed_field_is_one_line_naming_it(model_file: Path, tmp_path: Path, hour_csv: Path,
                                                                   capsys, field: str, edit, pattern: str) -> None:
    bundle = load_bundle(model_file)
    bundle[field] = edit(bundle[field])
    bad = write_bundle(tmp_path / "bad.pt", bundle)
    assert main(["predict", str(bad), "--data", str(hour_csv)]) == 2
    err = _one_error(capsys)
    assert str(bad) in err and pattern in err, err
    assert isinstance(load_model(model_file).base.model, torch.nn.Module)  # the original stays good


def test_model_config_is_required_of_every_model_file(model_file: Path, tmp_path: Path, capsys) -> None:
    bundle = load_bundle(model_file)
    bundle["model_config"] = dict(bundle["model_config"], hidden_size="big")
    bad = write_bundle(tmp_path / "bad.pt", bundle)
    assert main(["predict", str(bad)]) == 2
    assert "model config cannot be rebuilt" in _one_error(capsys) and ModelConfig


def test_a_bikes_model_file_from_before_the_data_set_was_described_loads_and_refits(model_file: Path, hour_csv: Path,
                                                                                      tmp_path: Path) -> None:
    """One migration: a file whose data config has no dataset target and a daylight flag, and whose scaler names its
    inputs as they were named then, forecasts as today's file does and rebuilds its windows for a refit."""
    import numpy as np

    from rnn_core.checkpoint import load_bundle, write_bundle
    from rnn_core.data import load_frame
    from rnn_core.forecaster import load_model
    from rnn_core.refit import train_through_val

    old = {"day_": "hour_", "week_": "dow_", "cnt_history": "cnt_log1p", "cnt_lag": "cnt_log1p_lag"}

    def old_name(name: str) -> str:
        for new, was in old.items():
            if name.startswith(new):
                return was + name[len(new):]
        return name

    bundle = load_bundle(model_file)
    dcfg = {k: v for k, v in bundle["data_config"].items() if k != "dataset"}
    bundle["data_config"] = dict(dcfg, daylight=True, dataset={"time": None, "target": None})
    bundle["feature_scaler"] = dict(bundle["feature_scaler"], names=[old_name(n) for n in bundle["feature_scaler"]["names"]])
    assert "hour_sin" in bundle["feature_scaler"]["names"] and "cnt_log1p" in bundle["feature_scaler"]["names"]
    before = write_bundle(tmp_path / "old.pt", bundle)
    frame = load_frame(hour_csv)[0]
    origins = np.arange(len(frame) - 48, len(frame))
    assert np.array_equal(load_model(before).forecast(frame, origins), load_model(model_file).forecast(frame, origins))
    assert len(train_through_val(frame, bundle)["train"]) > 0
