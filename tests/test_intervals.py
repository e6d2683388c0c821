"""Split-conformal intervals (rnn_core.intervals): their definition, their storage, and `test`/`predict`. No Ray."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from rnn_core.checkpoint import CheckpointError, load_bundle, write_bundle
from rnn_core.forecaster import load_model
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


def test_coverage_holds_out_of_sample_on_the_sqrt_scale() -> None:
    rng = np.random.default_rng(1)
    level = rng.gamma(2.0, 100.0, size=(4000, 1))
    target = rng.poisson(level).astype(float)  # count noise: its spread grows with the level
    cal, new = slice(0, 2000), slice(2000, None)
    iv = conformal(level[cal], target[cal], levels=(0.8, 0.95))
    assert iv.scale == "sqrt" and iv.window == 28 * 24
    for a, (lo, hi) in iv.bands(level[new]).items():
        cov, _ = coverage(lo, hi, target[new])
        assert abs(cov - a) < 0.02, (a, cov)
        assert (lo >= 0).all() and (lo <= level[new]).all() and (hi >= level[new]).all()
    with pytest.raises(ValueError, match="between 0 and 1"):
        conformal(level, target, levels=(95,))


def test_rolling_offsets_are_the_conformal_ranks_of_the_residuals_known_at_each_origin() -> None:
    rng = np.random.default_rng(2)
    m, h, w = 300, 3, 50
    pred = rng.uniform(20, 200, size=(m, h))
    target = np.maximum(pred + rng.normal(0, 15, size=(m, h)), 0)
    target[-2:, 1:] = np.nan  # not yet known at the end of the data
    iv = conformal(pred[:100], target[:100], levels=(0.8,), window=w)
    rows = np.array([0, w - 1, w, 120, m - 1])
    lo, hi = iv.rolling_bands(pred, target, rows)[0.8]
    static_lo, static_hi = iv.bands(pred[rows])[0.8]
    assert np.array_equal(lo[:2], static_lo[:2]) and np.array_equal(hi[:2], static_hi[:2])  # too little history
    for j, i in enumerate(rows[2:], start=2):
        for k in range(1, h + 1):  # origins i-w .. i-k: their step-k targets are known at origin i
            r = np.sort(np.sqrt(target[i - w: i - k + 1, k - 1]) - np.sqrt(pred[i - w: i - k + 1, k - 1]))
            n = len(r)
            assert n == w - k + 1
            k_lo, k_hi = math.floor((n + 1) * 0.1 + 1e-9), math.ceil((n + 1) * 0.9 - 1e-9)
            z = np.sqrt(pred[i, k - 1])
            assert lo[j, k - 1] == pytest.approx(max(z + r[k_lo - 1], 0) ** 2)
            assert hi[j, k - 1] == pytest.approx(max(z + r[k_hi - 1], 0) ** 2)


def test_rolling_intervals_follow_a_change_that_validation_offsets_miss() -> None:
    # noise 5% of the level during validation, 20% afterwards (a season the validation months did not see)
    rng = np.random.default_rng(3)
    m, w = 6000, 28 * 24
    pred = rng.uniform(50, 400, size=(m, 1))
    spread = np.where(np.arange(m)[:, None] < 2000, 0.05, 0.20)
    target = pred * rng.lognormal(0.0, spread)
    iv = conformal(pred[:2000], target[:2000], levels=(0.8, 0.95))
    later = np.arange(2000 + w, m)
    rolled = iv.rolling_bands(pred, target, later)
    for a, (lo, hi) in iv.bands(pred[later]).items():
        static_cov, _ = coverage(lo, hi, target[later])
        rolled_cov, _ = coverage(*rolled[a], target[later])
        assert static_cov < a - 0.25, (a, static_cov)
        assert abs(rolled_cov - a) < 0.02, (a, rolled_cov)


def test_a_model_file_with_intervals_round_trips(tmp_path: Path, hour_csv: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(hour_csv), "--epochs", "1", "--hidden-size", "8", "--num-layers", "1",
                 "--batch-size", "512", "--horizon", "24", "--out", str(out)]) == 0
    capsys.readouterr()
    ckpt = out / "model.pt"
    lm = load_model(ckpt)
    iv = lm.intervals
    assert iv is not None and iv.levels == (0.8, 0.95) and len(iv.lower[0]) == 24 and iv.n > 1000
    assert Intervals.from_dict(iv.to_dict()) == iv and iv.window == 28 * 24
    old = {k: v for k, v in iv.to_dict().items() if k != "window"}  # a table from before rolling intervals
    with pytest.raises(ValueError, match="interval table lacks the field\\(s\\) window"):
        Intervals.from_dict(old)  # a version-2 file always has it (version 1 is converted: tests/test_ensemble.py)
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
    bundle["steps"][-1]["lower"] = [[0.0]]
    bad = write_bundle(tmp_path / "bad.pt", bundle)
    with pytest.raises(CheckpointError, match="bad.pt: post-processing step conformal_intervals: interval tables do not "
                                              "match their levels"):
        load_model(bad)
