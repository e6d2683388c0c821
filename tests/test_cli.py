"""The installed console script, run once as a real subprocess."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def test_installed_command(hour_csv: Path) -> None:
    import sys

    beside = Path(sys.executable).parent / "rnn-search"  # the venv running the tests
    exe = str(beside) if beside.is_file() else shutil.which("rnn-search")
    assert exe, "rnn-search is not on PATH: install the project (pip install -e '.[test]')"
    helptext = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("data", "train", "predict", "tune", "best", "export", "test", "submit", "jobs"):
        assert cmd in helptext
    out = subprocess.run([exe, "data", "info", "--data", str(hour_csv)], capture_output=True, text=True, check=True).stdout
    assert "hourly rows:   17,544" in out
    bad = subprocess.run([exe, "data", "info", "--data", "/nonexistent/hour.csv"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_rnn_core_imports_without_ray() -> None:
    import sys

    code = ("import sys; sys.modules['ray'] = None; sys.modules['optuna'] = None; sys.modules['wandb'] = None\n"
            "import rnn_core, rnn_core.data, rnn_core.train, rnn_core.checkpoint, rnn_core.plot, rnn_core.metrics\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_clis_choices_are_the_librarys() -> None:
    # The CLI spells them out so that --help stays free of torch; they must not drift from what the library accepts.
    from rnn_core import data, model, train
    from search import cli, space

    assert cli.CELLS == model.CELLS
    assert cli.TARGET_TRANSFORMS == data.TARGET_TRANSFORMS
    assert cli.LOSSES == tuple(train.LOSSES)
    assert cli.LR_SCHEDULES == train.LR_SCHEDULES
    assert cli.PRESETS == space.PRESETS
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.choices and "tune" in a.choices).choices
    assert sub["train"]._option_string_actions["--loss"].choices == cli.LOSSES
    assert sub["tune"]._option_string_actions["--target-transform"].choices == cli.TARGET_TRANSFORMS
