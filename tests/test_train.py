"""Model, trainer, checkpoints, and the train/predict commands (no Ray)."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import pytest
import torch

from rnn_core.checkpoint import CheckpointError, load_bundle, save_bundle, write_bundle
from rnn_core.forecaster import load_model
from rnn_core.config import ModelConfig, TrainConfig
from rnn_core.model import RNNForecaster
from rnn_core.train import evaluate, fit
from search.cli import main


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_forecaster_shapes(cell: str, bidirectional: bool) -> None:
    m = RNNForecaster(ModelConfig(n_features=5, horizon=3, cell=cell, hidden_size=8, num_layers=2, dropout=0.1,
                                  bidirectional=bidirectional))
    assert m(torch.randn(4, 24, 5)).shape == (4, 3)  # [B, L, F] -> [B, H]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_encoder_decoder_shapes_and_decoder_inputs(cell: str) -> None:
    """H = 24: [B, L, F] -> [B, 24]; the decoder reads only the origin step's calendar of t+1..t+24."""
    f, h = 8, 24
    n_features = 20 + f * h
    m = RNNForecaster(ModelConfig(n_features=n_features, horizon=h, future_features=f, arch="seq2seq", cell=cell,
                                  hidden_size=8, num_layers=2)).eval()
    x = torch.randn(4, 48, n_features)
    seen = []
    m.decoder.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    with torch.no_grad():
        assert m(x).shape == (4, h)
    # decoder step k's input: the calendar of hour t+k, as the origin step carries it ([B, H, f])
    torch.testing.assert_close(seen[0], x[:, -1, 20:].reshape(4, h, f))
    with pytest.raises(ValueError, match="needs future_features"):
        RNNForecaster(ModelConfig(n_features=20, horizon=24, arch="seq2seq"))


def test_encoder_decoder_needs_the_future_calendar(hour_csv: Path) -> None:
    from rnn_core.data import DataConfig, load

    data = load(DataConfig(horizon=24, future_calendar=False), hour_csv)
    with pytest.raises(ValueError, match="needs the future calendar features"):
        data.model_config(arch="seq2seq")


def test_configs_are_validated() -> None:
    with pytest.raises(ValueError, match="cell must be one of"):
        ModelConfig(n_features=3, cell="transformer")
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        TrainConfig(learning_rate=-1)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


def _tiny(data, **kw):
    mcfg = data.model_config(cell=kw.pop("cell", "gru"), hidden_size=8, num_layers=kw.pop("num_layers", 1),
                             dropout=kw.pop("dropout", 0.0), arch=kw.pop("arch", "head"))
    tcfg = TrainConfig(batch_size=512, max_epochs=kw.pop("max_epochs", 2), seed=kw.pop("seed", 7), num_threads=1, **kw)
    return mcfg, tcfg


def test_same_seed_same_config_gives_identical_validation_losses(bikes) -> None:
    mcfg, tcfg = _tiny(bikes)
    a = fit(bikes, mcfg, tcfg)
    b = fit(bikes, mcfg, tcfg)
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]
    c = fit(bikes, *_tiny(bikes, seed=8))
    assert [h["val_loss"] for h in c.history] != [h["val_loss"] for h in a.history]


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def day_ahead(hour_csv: Path):
    from rnn_core.data import DataConfig, load

    return load(DataConfig(horizon=24), hour_csv)


@pytest.mark.parametrize("arch", ["head", "seq2seq"])
def test_resume_gives_the_same_per_epoch_metrics(arch: str, bikes, day_ahead, tmp_path: Path) -> None:
    """Stopped after epoch 2 and resumed from its checkpoint == uninterrupted (dropout + cosine: RNG and
    scheduler state must both travel); the encoder-decoder on 24-hour windows too."""
    data = bikes if arch == "head" else day_ahead
    mcfg, tcfg = _tiny(data, cell="lstm", num_layers=2, dropout=0.2, max_epochs=4, lr_schedule="cosine", ema_decay=0.9,
                       arch=arch)
    full = fit(data, mcfg, tcfg)
    ckpt = tmp_path / "model.pt"

    def stop_after_2(epoch, metrics, snapshot):
        if epoch == 2:
            save_bundle(ckpt, snapshot(), data, mcfg, tcfg)
            raise _Stop

    with pytest.raises(_Stop):
        fit(data, mcfg, tcfg, on_epoch_end=stop_after_2)
    resumed = fit(data, mcfg, tcfg, resume=load_bundle(ckpt))
    keys = ("epoch", "train_loss", "val_loss", "val_mae", "val_rmse", "lr")
    assert [{k: h[k] for k in keys} for h in resumed.history] == [{k: h[k] for k in keys} for h in full.history]
    assert resumed.best_epoch == full.best_epoch


def test_early_stopping_keeps_the_best_weights(bikes) -> None:
    mcfg, tcfg = _tiny(bikes, max_epochs=30, patience=1, learning_rate=0.05)
    res = fit(bikes, mcfg, tcfg)
    assert res.status == "early_stopped" and len(res.history) < 30
    val = bikes["val"]
    again = evaluate(res.model, val.X, val.y, val.y_raw, bikes.target_scaler)
    assert math.isclose(again["loss"], res.best_metrics["val_loss"], rel_tol=1e-6)
    assert res.best_metrics["val_loss"] == min(h["val_loss"] for h in res.history)


def test_non_finite_loss_ends_the_run_with_a_status(bikes) -> None:
    mcfg, tcfg = _tiny(bikes, learning_rate=1e30, clip_norm=0.0, max_epochs=5)
    res = fit(bikes, mcfg, tcfg)  # no exception
    assert res.status == "non_finite"
    assert not math.isfinite(res.history[-1]["val_loss"]) or not math.isfinite(res.history[-1]["train_loss"])


# ------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def saved(bikes, tmp_path_factory) -> Path:
    mcfg, tcfg = _tiny(bikes, max_epochs=1)
    res = fit(bikes, mcfg, tcfg)
    return save_bundle(tmp_path_factory.mktemp("ck") / "model.pt", res.state, bikes, mcfg, tcfg)


def test_load_model_rebuilds_from_the_file_alone(saved: Path, bikes) -> None:
    lm = load_model(saved)
    val = bikes["val"]
    net = lm.base  # a trial's checkpoint: the network alone, no post-processing steps
    assert lm.steps == ()
    m = evaluate(net.model, val.X, val.y, val.y_raw, net.target_scaler)
    assert math.isclose(m["mae"], net.bundle["best_metrics"]["val_mae"], rel_tol=1e-6)
    assert lm.data_config == bikes.config and net.feature_scaler == bikes.feature_scaler


def test_truncated_checkpoint(saved: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_model(bad)


def test_foreign_checkpoint(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, foreign)
    with pytest.raises(CheckpointError, match="not an rnn-search checkpoint"):
        load_model(foreign)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"not a model file \(a text file\)"):
        load_model(text)


def test_a_text_file_given_as_a_model_is_one_line_that_never_suggests_an_unsafe_load(tmp_path: Path, capsys) -> None:
    text = tmp_path / "model.pt"
    text.write_text("hello world, not a model\n")
    assert main(["test", str(text)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a model file" in err
    assert "weights_only" not in err and "Traceback" not in err


def test_tampered_checkpoint(saved: Path, tmp_path: Path) -> None:
    outer = torch.load(saved, weights_only=True)
    payload = outer["payload"].clone()
    payload[len(payload) // 2] ^= 0xFF  # flip one byte of the weights, keep the old checksum
    outer["payload"] = payload
    bad = tmp_path / "tampered.pt"
    torch.save(outer, bad)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_model(bad)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("via", ["torch.save", "pickle"])
def test_code_executing_pickle_is_refused_and_does_not_run(tmp_path: Path, via: str) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    if via == "torch.save":
        torch.save({"format": "rnn-search-bundle", "x": _Evil(str(marker))}, evil)
    else:
        evil.write_bytes(pickle.dumps({"format": "rnn-search-bundle", "x": _Evil(str(marker))}))
    with pytest.raises(CheckpointError, match="refused to load") as exc:
        load_bundle(evil)
    assert "weights_only" not in str(exc.value)
    assert not marker.exists()


def test_save_is_atomic(saved: Path, bikes, tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(saved.read_bytes())
    bundle = load_bundle(target)
    bundle["unpicklable"] = lambda: None  # torch.save fails mid-write
    with pytest.raises(Exception):
        write_bundle(target, bundle)
    assert target.read_bytes() == saved.read_bytes()  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


# ------------------------------------------------------------------ CLI


def test_train_then_predict(hour_csv: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(hour_csv), "--epochs", "2", "--hidden-size", "8", "--batch-size", "256",
                 "--out", str(out)]) == 0
    log = capsys.readouterr().err  # talk on stderr
    assert "[Epoch   1] T_loss:" in log and "V_MAE:" in log and "T_speed:" in log and "samples/s" in log
    assert "best V_loss so far (early stopping follows V_loss, not V_MAE)" in log and "improved" not in log
    ckpt = out / "model.pt"
    lm = load_model(ckpt)
    net = lm.base.model_config
    assert net.cell == "rnn" and net.hidden_size == 8 and net.num_layers == 2
    # shipped as an ensemble is: the same chain, conformal intervals from the validation hours last
    assert [s.kind for s in lm.steps] == ["calibration", "seasonal_bias", "residual_correction", "non_negative",
                                          "conformal_intervals"]
    assert lm.intervals is not None and lm.intervals.levels == (0.8, 0.95)
    args = ["predict", str(ckpt), "--data", str(hour_csv), "--at", "2012-12-01 07:00"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first  # deterministic
    assert "2012-12-01 08:00:00" in first and "80% from" in first and "95% from" in first
    row = [float(v) for v in first.splitlines()[-1].split()[2:]]  # forecast, lo80, hi80, lo95, hi95
    assert row[3] <= row[1] <= row[0] <= row[2] <= row[4]
    assert main(["predict", str(ckpt), "--data", str(hour_csv)]) == 0
    assert "2013-01-01 00:00:00" in capsys.readouterr().out  # default origin: the data's last hour
    assert main(["predict", str(ckpt), "--data", str(hour_csv), "--at", "2011-01-01 03:00"]) == 2
    assert "needs 24 hours of history" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    assert main(["predict", str(junk), "--data", str(hour_csv)]) == 2
    assert "junk.pt" in capsys.readouterr().err


def test_train_wandb_offline_writes_run_files(hour_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "wb"
    assert main(["train", "--data", str(hour_csv), "--epochs", "1", "--hidden-size", "8", "--num-layers", "1",
                 "--batch-size", "512", "--out", str(out), "--wandb", "offline"]) == 0
    runs = list((out / "wandb").glob("offline-run-*"))
    assert runs and any(f.suffix == ".wandb" for f in runs[0].rglob("*"))


@pytest.mark.parametrize("form", ["change", "both"])
@pytest.mark.parametrize("arch", ["head", "seq2seq"])
def test_a_change_target_model_file_forecasts_what_its_training_scored(hour_csv: Path, tmp_path: Path, form: str,
                                                                       arch: str) -> None:
    """The file alone (no data object) rebuilds the counts at the origins it needs: its validation forecast is
    the one early stopping scored, and its test forecast the trainer's own on the test windows."""
    import numpy as np

    from rnn_core.data import DataConfig, load, load_frame

    data = load(DataConfig(target_transform="sqrt", target_form=form, horizon=1 if arch == "head" else 3), hour_csv)
    mcfg, tcfg = _tiny(data, max_epochs=2, arch=arch)
    res = fit(data, mcfg, tcfg)
    lm = load_model(save_bundle(tmp_path / "model.pt", res.state, data, mcfg, tcfg)).base
    frame, *_ = load_frame(hour_csv)
    for name in ("val", "test"):
        s = data[name]
        pred = lm.forecast(frame, s.origin)  # [N, H]: one forecast per hour, whatever the outputs
        assert pred.shape == tuple(s.y_raw.shape)
        m = evaluate(res.model, s.X, s.y, s.y_raw, data.target_scaler, anchor=s.anchor)
        assert math.isclose(float(np.abs(pred - s.y_raw.numpy()).mean()), m["mae"], rel_tol=1e-5), name
        if name == "val":
            assert math.isclose(m["mae"], res.best_metrics["val_mae"], rel_tol=1e-6)


def test_a_model_of_both_forms_has_two_outputs_per_hour_in_either_arch() -> None:
    for arch, extra in (("head", {}), ("seq2seq", {"future_features": 2})):
        m = RNNForecaster(ModelConfig(n_features=10, horizon=3, targets=2, hidden_size=8, arch=arch, **extra)).eval()
        x = torch.randn(4, 12, 10)
        assert m(x).shape == (4, 6)  # [B, T*H]: the three levels, then the three changes
    with pytest.raises(ValueError, match="targets must be a positive integer"):
        ModelConfig(n_features=3, targets=0)
