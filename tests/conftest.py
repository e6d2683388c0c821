"""Shared fixtures: the real hour.csv from ../shared, a private cache, and one real Ray instance."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOUR_CSV = Path(os.environ.get("RNN_SEARCH_TEST_DATA", ROOT.parent / "shared" / "data" / "bike-sharing" / "hour.csv"))


@pytest.fixture(scope="session")
def hour_csv() -> Path:
    if not HOUR_CSV.is_file():
        pytest.fail(f"tests need the real hour.csv at {HOUR_CSV} (or set RNN_SEARCH_TEST_DATA)")
    return HOUR_CSV


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the user's cache or the network: the cache is private, the download URL local."""
    monkeypatch.setenv("RNN_SEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("RNN_SEARCH_DATA", raising=False)
    monkeypatch.setenv("RNN_SEARCH_DATA_URL", "http://127.0.0.1:9/nothing-here.zip")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def bikes(hour_csv: Path):
    from rnn_core.data import DataConfig, load

    return load(DataConfig(), hour_csv)


@pytest.fixture(scope="session")
def ray_local():
    """One embedded Ray for the session (tests run inside a private network namespace).

    4 logical CPUs and 1 logical GPU: the fractional-GPU test packs four 0.25-GPU trials on it (they
    train on the CPU where CUDA is absent).
    """
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def write_space(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TINY_SPACE = """
cell: {choice: [gru, lstm, rnn]}
hidden_size: {choice: [8, 16]}
num_layers: 1
sequence_size: 24
learning_rate: {loguniform: [1.0e-3, 1.0e-2]}
batch_size: 512
"""


@pytest.fixture(scope="session")
def experiment(ray_local, hour_csv: Path, tmp_path_factory: pytest.TempPathFactory):
    """One small real search shared by the search/results tests: 4 trials x <= 3 epochs, hidden <= 16.

    One trial at a time, so that ASHA's decisions are deterministic (seeded TPE, seeded trials).
    """
    from search.tuner import SearchOptions, run_search

    root = tmp_path_factory.mktemp("exp")
    space = write_space(root / "space.yaml", TINY_SPACE)
    opts = SearchOptions(preset="quick", space_file=str(space), num_samples=4, max_epochs=3, grace_period=1,
                         reduction_factor=2, storage=str(root / "runs"), name="tiny", data_path=str(hour_csv),
                         seed=3, max_concurrent=1, progress_interval_s=60)
    grid, path = run_search(opts)
    return {"grid": grid, "path": path, "storage": str(root / "runs"), "opts": opts}
