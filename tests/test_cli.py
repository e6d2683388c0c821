"""The installed console script, run once as a real subprocess."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from search.cli import _search_options, build_parser


def test_installed_command(hour_csv: Path) -> None:
    import sys

    beside = Path(sys.executable).parent / "rnn-search"  # the venv running the tests
    exe = str(beside) if beside.is_file() else shutil.which("rnn-search")
    assert exe, "rnn-search is not on PATH: install the project (pip install -e '.[test]')"
    helptext = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("data", "train", "predict", "tune", "best", "export", "test", "submit", "jobs"):
        assert cmd in helptext
    out = subprocess.run([exe, "data", "info", "--data", str(hour_csv)], capture_output=True, text=True, check=True).stdout
    assert "grid rows:     17,544" in out and "step h" in out
    bad = subprocess.run([exe, "data", "info", "--data", "/nonexistent/hour.csv"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_rnn_core_imports_without_ray() -> None:
    import sys

    code = ("import sys; sys.modules['ray'] = None; sys.modules['optuna'] = None; sys.modules['wandb'] = None\n"
            "import rnn_core, rnn_core.data, rnn_core.train, rnn_core.checkpoint, rnn_core.plot, rnn_core.metrics\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_is_fast_and_imports_neither_torch_nor_ray() -> None:
    import sys

    code = ("import sys, time; t = time.perf_counter(); from search.cli import build_parser; build_parser()\n"
            "assert not {'torch', 'ray', 'pandas', 'optuna'} & set(sys.modules), sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_flags_are_the_config_fields() -> None:
    """Every user-facing field of the three configs is a `train` flag whose help is the field's docstring."""
    from rnn_core.config import CONFIGS, SPLIT_FIELDS
    from rnn_core.settings import settings
    from search import cli

    sub = next(a for a in cli.build_parser()._actions if a.choices and "train" in a.choices).choices
    train = {a.dest: a for a in sub["train"]._actions}
    for cls in CONFIGS:
        for s in settings(cls):
            if s.name in SPLIT_FIELDS:
                continue
            action = train[s.name]
            assert s.help.rstrip(".").lower() in action.help.lower(), (s.name, action.help)
            if s.type is not bool:
                assert action.default == s.default and tuple(action.choices or ()) == tuple(s.choices or ()), s.name
    assert set(train["split_fields"].option_strings) == {"--split"}
    assert "--lr" in train["learning_rate"].option_strings and "--epochs" in train["max_epochs"].option_strings
    assert train["future_calendar"].option_strings == ["--no-future-calendar"]


def test_a_bad_flag_value_is_one_line(capsys) -> None:
    import pytest

    from search.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["tune", "--preset", "quik"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "invalid choice: 'quik'" in err


def test_tests_find_the_data_the_user_already_has(hour_csv: Path, tmp_path: Path) -> None:
    from tests.conftest import find_test_data

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "hour.csv").symlink_to(hour_csv)
    nowhere = tmp_path / "no-shared" / "hour.csv"
    assert find_test_data({"RNN_SEARCH_CACHE": str(cache)}, nowhere) == (cache / "hour.csv", "")
    assert find_test_data({"RNN_SEARCH_DATA": str(hour_csv), "RNN_SEARCH_CACHE": str(tmp_path)}, nowhere)[0] == hour_csv
    path, message = find_test_data({"RNN_SEARCH_CACHE": str(tmp_path / "empty")}, nowhere)
    assert path is None and "rnn-search data info" in message


def test_no_data_stops_the_tests_once_with_one_message(tmp_path: Path) -> None:
    import os
    import sys

    from tests.conftest import ROOT

    env = dict(os.environ, RNN_SEARCH_TEST_DATA=str(tmp_path / "missing.csv"))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_data.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 2 and out.count("missing.csv: no such file") == 1, out[-2000:]
    assert "error" not in out.lower().replace("exit: ", ""), out[-2000:]


def test_one_layer_trials_show_no_dropout(capsys) -> None:
    from search.show import trials_table
    from search.results import TrialSummary

    def trial(tid: str, layers: int) -> TrialSummary:
        return TrialSummary(trial_id=tid, metric="val_mae", best_score=30.0, config={"num_layers": layers, "dropout": 0.21},
                            best_epoch=2, best_val_loss=0.05, best_val_mae=30.0, best_val_rmse=45.0, epochs=3,
                            stop_reason="ASHA", checkpoint=None)

    trials_table([trial("aaaa", 1), trial("bbbb", 2)], 5)
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "0.21" not in rows["aaaa"] and rows["aaaa"].split()[-2] == "-"
    assert "0.21" in rows["bbbb"]
    assert "had no effect" in rows["(dropout"]


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-4 (no dot) as text; the space takes it as the number it means.
    from search.space import SpaceError, build_space

    space = tmp_path / "s.yaml"
    space.write_text("learning_rate: {loguniform: [1e-4, 1e-2]}\nweight_decay: 1e-5\n")
    built = build_space("quick", space)
    assert (built["learning_rate"].lower, built["learning_rate"].upper) == (1e-4, 1e-2)
    assert built["weight_decay"] == 1e-5
    space.write_text("learning_rate: {loguniform: [tiny, 1e-2]}\n")
    import pytest

    with pytest.raises(SpaceError, match="'learning_rate' takes float values, got 'tiny'"):
        build_space("quick", space)


def test_a_runs_metadata_that_is_not_what_tune_wrote_is_one_line(tmp_path: Path) -> None:
    import json

    import pytest

    from search.errors import SearchError
    from search.meta import META_FILE, experiment_meta

    run = tmp_path / "old"
    run.mkdir()
    (run / META_FILE).write_text(json.dumps({"preset": "quick", "split": "2012-06-01,2012-07-01"}))  # before 0.1.0
    with pytest.raises(SearchError, match=r"rnn_search.json: lacks the field\(s\) seed, data, data_path"):
        experiment_meta(str(run))
    (run / META_FILE).write_text('{"preset": "qu')  # torn
    with pytest.raises(SearchError, match="rnn_search.json: not readable JSON"):
        experiment_meta(str(run))


def test_a_presets_data_settings_apply_where_the_command_line_left_them() -> None:
    from search import space
    from search.cli import build_parser
    from search.options import flags_given
    from search.tuner import SearchOptions, preset_data
    from rnn_core.config import DataConfig, split_kwargs

    def given(*argv: str) -> frozenset[str]:
        args = build_parser().parse_args(["tune", *argv])
        args.argv = ["tune", *argv]
        return flags_given(args.argv)

    settings = space.preset("default").data
    assert settings == {"val_windows": 4}
    assert preset_data(SearchOptions(preset="default"), settings).val_windows == 4
    # --val-windows 1 on the command line is kept, although it is DataConfig's default
    assert given("--preset", "default", "--val-windows", "1") == {"val_windows"} == given("--val-windows=1")
    assert preset_data(SearchOptions(preset="default", data_given=given("--val-windows", "1")), settings).val_windows == 1
    assert preset_data(SearchOptions(preset="default", data=DataConfig(val_windows=2)), settings).val_windows == 2
    # the lecture split has one validation window: the preset's setting does not apply there
    lecture = SearchOptions(preset="default", data=DataConfig(**split_kwargs("lecture")), data_given=given("--split", "lecture"))
    assert preset_data(lecture, settings).val_windows == 1
    assert "horizon" in given("--horizon", "24") and not given()


def test_search_options_are_declared_once_frozen_and_checked() -> None:
    """Each tune flag comes from a SearchOptions field (its docstring the help); a bad value is one line."""
    import dataclasses

    from rnn_core.settings import settings
    from search.errors import SearchError
    from search.options import SearchOptions

    flags = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["tune"]._actions}
    for s in settings(SearchOptions):
        assert s.name in flags and flags[s.name].option_strings[0] in (s.flags[0], "--no-" + s.flags[0][2:]), s.name
        assert s.help.split()[0] in flags[s.name].help, s.name
    with pytest.raises(SearchError, match="--searcher 'tpe': expected one of optuna-asha, optuna, random"):
        SearchOptions(searcher="tpe")  # it used to run Ray's stock OptunaSearch without a word
    with pytest.raises(SearchError, match="--num-samples 0: expected a whole number >= 1"):
        SearchOptions(num_samples=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SearchOptions().seed = 3  # type: ignore[misc]
    args = build_parser().parse_args(["tune", "--time-budget", "5", "--no-reuse-actors", "--space", "s.yaml"])
    opts = _search_options(args)
    assert (opts.time_budget_s, opts.reuse_actors, opts.space_file) == (300.0, False, "s.yaml")
