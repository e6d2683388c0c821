"""Split-conformal intervals (rnn_core.intervals): their definition, their storage, and `test`/`predict`. No Ray."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from rnn_core.checkpoint import CheckpointError, load_bundle, load_model, write_bundle
from rnn_core.intervals import Intervals, conformal, coverage
from search.cli import main


def test_conformal_offsets_are_the_finite_sample_ranks_of_the_residuals() -> None:
    rng = np.random.default_rng(0)
    n, h = 199, 3
    pred = np.full((n, h), 100.0)
    target = pred + rng.normal(0, [5.0, 10.0, 20.0], size=(n, h))  # wider residuals at later steps
    iv = conformal(pred, target, levels=(0.8,), scale="count")
    r = np.sort(target - pred, axis=0)
    k_lo, k_hi = math.floor(200 * 0.1), math.ceil(200 * 0.9)  # (n+1)(1-a)/2 and (n+1)(1+a)/2: ranks 20 and 180
    assert iv.lower[0] == pytest.approx(tuple(r[k_lo - 1]))
    assert iv.upper[0] == pytest.approx(tuple(r[k_hi - 1]))
    lo, hi = iv.bands(pred)[0.8]
    cov, width = coverage(lo, hi, target)
    # by construction: exactly (k_hi - k_lo + 1) of n residuals per step lie inside [q_lo, q_hi]
    assert cov == pytest.approx((k_hi - k_lo + 1) / n)
    assert width == pytest.approx(np.mean(r[k_hi - 1] - r[k_lo - 1]))
    widths = np.asarray(iv.upper[0]) - np.asarray(iv.lower[0])
    assert widths[0] < widths[1] < widths[2]  # per step


def test_coverage_holds_out_of_sample_and_log_scale_is_chosen_for_multiplicative_noise() -> None:
    rng = np.random.default_rng(1)
    level = rng.gamma(2.0, 100.0, size=(4000, 1))
    target = level * rng.lognormal(0.0, 0.25, size=level.shape)  # noise proportional to the level
    cal, new = slice(0, 2000), slice(2000, None)
    iv = conformal(level[cal], target[cal], levels=(0.8, 0.95))
    assert iv.scale == "log1p"
    for a, (lo, hi) in iv.bands(level[new]).items():
        cov, _ = coverage(lo, hi, target[new])
        assert abs(cov - a) < 0.02, (a, cov)
        assert (lo >= 0).all() and (lo <= level[new]).all() and (hi >= level[new]).all()
    with pytest.raises(ValueError, match="between 0 and 1"):
        conformal(level, target, levels=(95,))


def test_a_model_file_with_intervals_round_trips(tmp_path: Path, hour_csv: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(hour_csv), "--epochs", "1", "--hidden-size", "8", "--num-layers", "1",
                 "--batch-size", "512", "--horizon", "24", "--out", str(out)]) == 0
    capsys.readouterr()
    ckpt = out / "model.pt"
    lm = load_model(ckpt)
    iv = lm.intervals
    assert iv is not None and iv.levels == (0.8, 0.95) and len(iv.lower[0]) == 24 and iv.n > 1000
    assert Intervals.from_dict(iv.to_dict()) == iv
    # `test` reports coverage and width per level, and per-step errors with the baselines beside them
    assert main(["test", str(ckpt), "--data", str(hour_csv), "--plots", str(tmp_path / "plots"),
                 "--origins", "2012-11-14 23:00,2012-12-24 23:00"]) == 0
    text = capsys.readouterr().out
    cover = dict(re.findall(r"^\s+(\d+)%: ([\d.]+)% of the test targets inside, mean width [\d.]+", text, re.M))
    assert set(cover) == {"80", "95"}
    steps = re.findall(r"^\s*(\d+)\s+[\d.]+ /\s+[\d.]+\s+[\d.]+ /", text, re.M)
    assert [int(k) for k in steps] == list(range(1, 25))
    for name in ("error_by_step.png", "forecasts_from_origins.png", "test_period.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 10_000
    assert main(["test", str(ckpt), "--data", str(hour_csv), "--origins", "2012-11-14 23:30", "--plots", str(tmp_path)]) == 2
    assert "not an origin" in capsys.readouterr().err
    # other levels on request: computed again from the validation hours
    assert main(["predict", str(ckpt), "--data", str(hour_csv), "--levels", "0.5"]) == 0
    assert "50% from" in capsys.readouterr().out
    # damaged interval tables are refused with the file's name
    bundle = load_bundle(ckpt)
    bundle["intervals"]["lower"] = [[0.0]]
    bad = write_bundle(tmp_path / "bad.pt", bundle)
    with pytest.raises(CheckpointError, match="bad.pt: its stored intervals cannot be read"):
        _ = load_model(bad).intervals
