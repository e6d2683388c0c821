"""On CUDA (skipped where it is absent): training runs there, a stopped run resumes there exactly, and its file
loads and forecasts on a CPU. rnn_core only: no Ray, no Optuna. Runs under pytest (`-m gpu`) or on its own
(`python tests/test_gpu.py`, what benchmarks/gpu_check.sh does on a machine without pytest)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script, on a machine where nothing is installed

from rnn_core.checkpoint import load_bundle, save_bundle  # noqa: E402
from rnn_core.config import DataConfig, TrainConfig  # noqa: E402
from rnn_core.data import load, load_frame  # noqa: E402
from rnn_core.forecaster import load_model  # noqa: E402
from rnn_core.train import fit  # noqa: E402

#: The accelerator checked ("cuda"; RNN_SEARCH_CHECK_DEVICE=cpu dry-runs the checks on a machine without one).
DEVICE = os.environ.get("RNN_SEARCH_CHECK_DEVICE", "cuda")
CUDA = DEVICE != "cuda" or torch.cuda.is_available()
try:
    import pytest

    pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA device")]
except ImportError:  # the accelerator machine may have no pytest: see the runner at the bottom
    pytest = None


class _Stop(Exception):
    pass


def _data(path: Path | None = None):
    """The bikes windows (the file: RNN_SEARCH_TEST_DATA, else rnn-search's own lookup)."""
    path = path or Path(os.environ.get("RNN_SEARCH_TEST_DATA") or os.environ["RNN_SEARCH_DATA"])
    return load(DataConfig(), path), path


def _configs(data, **kw):
    mcfg = data.model_config(cell="lstm", hidden_size=32, num_layers=2, dropout=0.2)
    return mcfg, TrainConfig(batch_size=256, max_epochs=kw.pop("max_epochs", 3), seed=3, device=DEVICE,
                             lr_schedule="cosine", ema_decay=0.9, **kw)


def check_training_runs_on_cuda(path: Path | None = None) -> None:
    data, _ = _data(path)
    mcfg, tcfg = _configs(data, max_epochs=2)
    res = fit(data, mcfg, tcfg)
    assert next(res.model.parameters()).device.type == DEVICE
    assert all(np.isfinite(h["val_mae"]) for h in res.history) and res.history[-1]["val_mae"] < 150, res.history


def check_a_stopped_run_resumes_exactly_on_cuda(path: Path | None = None) -> None:
    data, _ = _data(path)
    mcfg, tcfg = _configs(data, max_epochs=3)
    full = fit(data, mcfg, tcfg)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "model.pt"

        def stop_after_1(epoch, metrics, snapshot):  # noqa: ANN001, ANN202
            if epoch == 1:
                save_bundle(ckpt, snapshot(), data, mcfg, tcfg)
                raise _Stop

        try:
            fit(data, mcfg, tcfg, on_epoch_end=stop_after_1)
        except _Stop:
            pass
        resumed = fit(data, mcfg, tcfg, resume=load_bundle(ckpt))
    # the RNG, scheduler and EMA states travel exactly (epochs, learning rates, dropout masks, batch order); the
    # losses agree up to the order of cuBLAS/cuDNN's float reductions, which PyTorch leaves nondeterministic unless
    # deterministic algorithms are forced (slower; not the product's default)
    assert [(h["epoch"], h["lr"]) for h in resumed.history] == [(h["epoch"], h["lr"]) for h in full.history]
    for got, want in zip(resumed.history, full.history):
        for k in ("train_loss", "val_loss", "val_mae"):
            assert abs(got[k] - want[k]) <= 1e-3 * abs(want[k]) + 1e-6, (got["epoch"], k, got[k], want[k])


def check_a_cuda_file_loads_and_forecasts_on_cpu(path: Path | None = None) -> None:
    data, csv = _data(path)
    mcfg, tcfg = _configs(data, max_epochs=1)
    res = fit(data, mcfg, tcfg)
    frame, *_ = load_frame(csv)
    origins = data["test"].origin[:500]
    with tempfile.TemporaryDirectory() as tmp:
        file = save_bundle(Path(tmp) / "model.pt", res.state, data, mcfg, tcfg)
        on_cpu = load_model(file, device="cpu")
        on_gpu = load_model(file, device=DEVICE)
        assert next(on_cpu.base.model.parameters()).device.type == "cpu"
        cpu, gpu = on_cpu.forecast(frame, origins), on_gpu.forecast(frame, origins)  # [N, 1] bikes per hour
    assert np.isfinite(cpu).all() and np.allclose(cpu, gpu, rtol=1e-3, atol=1e-2), float(np.abs(cpu - gpu).max())


def test_training_runs_on_cuda(hour_csv: Path) -> None:
    check_training_runs_on_cuda(hour_csv)


def test_a_stopped_run_resumes_exactly_on_cuda(hour_csv: Path) -> None:
    check_a_stopped_run_resumes_exactly_on_cuda(hour_csv)


def test_a_cuda_file_loads_and_forecasts_on_cpu(hour_csv: Path) -> None:
    check_a_cuda_file_loads_and_forecasts_on_cpu(hour_csv)


if __name__ == "__main__":  # without pytest: each check once, one line each, exit 1 if any failed
    if not CUDA:
        print("SKIPPED: no CUDA device")
        sys.exit(0)
    failed = 0
    for name, check in [(n, f) for n, f in list(globals().items()) if n.startswith("check_")]:
        try:
            check()
            print(f"PASSED {name}")
        except Exception as exc:  # noqa: BLE001 - report every check, then the total
            failed += 1
            print(f"FAILED {name}: {type(exc).__name__}: {str(exc)[:500]}")
    sys.exit(1 if failed else 0)
