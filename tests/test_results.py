"""best / export / test on a real experiment; plots; agreement with plain Ray; clear errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from rnn_core.checkpoint import load_bundle, write_bundle
from rnn_core.data import load, load_frame
from rnn_core.forecaster import load_model
from rnn_core.metrics import mae, rmse
from rnn_core.train import evaluate
from search.cli import main

pytestmark = pytest.mark.ray


def test_best_prints_the_top_trials_and_the_best_checkpoint(experiment, capsys) -> None:
    assert main(["best", experiment["path"], "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "best trial:" in out and "best checkpoint:" in out and "checkpoint_" in out
    for col in ("val_loss", "MAE", "RMSE", "best ep", "epochs", "stopped by", "hidden_size"):
        assert col in out
    assert re.search(r"\b(ASHA|max epochs|early stopping)\b", out)
    assert main(["best", "tiny", "--storage", experiment["storage"], "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["best"]["trial_id"] and Path(doc["best"]["checkpoint"]).is_dir()
    assert len(doc["trials"]) == 4
    assert doc["trials"][0]["trial_id"] == doc["best"]["trial_id"]
    assert {"config", "best_val_mae", "best_val_rmse", "best_epoch", "epochs", "stop_reason"} <= set(doc["best"])


def test_an_epoch_reported_twice_counts_once(experiment, tmp_path: Path) -> None:
    """After an interrupt, Tune may run an epoch again from an older checkpoint: result.json then holds it twice."""
    import shutil

    from search.results import best_trial

    copy = tmp_path / "copy"
    shutil.copytree(experiment["path"], copy)
    _, before, _ = best_trial(str(copy))
    trial = before[0]
    result = next(p for p in copy.glob(f"*_{trial.trial_id}_*/result.json"))
    lines = result.read_text().splitlines()
    result.write_text("\n".join(lines + [lines[-1]]) + "\n")  # the last epoch again, as a resumed trial reports it
    _, after, _ = best_trial(str(copy))
    again = next(s for s in after if s.trial_id == trial.trial_id)
    assert [h["epoch"] for h in again.history] == [h["epoch"] for h in trial.history]
    assert again.epochs == trial.epochs


def test_a_trial_worse_in_mae_and_rmse_never_ranks_first(experiment, tmp_path: Path) -> None:
    """The search metric (val_loss, on the model's scale) may favour a trial whose errors in the target's units are
    both higher: the ranking a user reads follows the MAE of each trial's kept checkpoint."""
    from search.results import best_trial

    copy = tmp_path / "copy"
    shutil.copytree(experiment["path"], copy)
    _, before, _ = best_trial(str(copy))
    by_loss = min(before, key=lambda s: s.best_val_loss)
    other = next(s for s in before if s.trial_id != by_loss.trial_id)
    result = next(p for p in copy.glob(f"*_{by_loss.trial_id}_*/result.json"))
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    for r in rows:  # its loss stays the lowest; its errors in the target's units go above the other trial's
        r["val_mae"], r["val_rmse"] = other.best_val_mae + 5.0, other.best_val_rmse + 5.0
    result.write_text("".join(json.dumps(r) + "\n" for r in rows))
    best, after, _ = best_trial(str(copy))
    assert best.trial_id != by_loss.trial_id and best.best_val_mae <= other.best_val_mae
    assert after[-1].trial_id == by_loss.trial_id or after.index(next(s for s in after if s.trial_id == by_loss.trial_id)) > 0


def test_plain_ray_names_the_same_best_trial(experiment) -> None:
    from ray import tune

    from search.results import best_trial
    from search.trainable import train_forecaster

    grid = tune.Tuner.restore(experiment["path"], trainable=train_forecaster).get_results()
    # each trial's kept checkpoint: its epoch of min val_loss over all epochs (Ray's own per-trial dataframes)
    kept = {r.metrics["trial_id"]: r.metrics_dataframe.loc[r.metrics_dataframe["val_loss"].idxmin()] for r in grid}
    oracle = min(kept, key=lambda t: (kept[t]["val_mae"], kept[t]["val_loss"]))
    ours, summaries, _ = best_trial(experiment["path"])
    assert ours.trial_id == oracle
    assert ours.best_epoch == int(kept[oracle]["epoch"])
    # a trial ranked above another is never higher in both MAE and RMSE (the search metric, val_loss, may say otherwise)
    for a, b in zip(summaries, summaries[1:]):
        assert not (a.best_val_mae > b.best_val_mae and a.best_val_rmse > b.best_val_rmse)


@pytest.fixture(scope="module")
def exported(experiment, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model.pt"
    assert main(["export", experiment["path"], "--out", str(out), "--single"]) == 0
    return out


def test_ensemble_of_the_trials_exported_by_default(experiment, hour_csv: Path, tmp_path: Path, capsys) -> None:
    """`ensemble` chooses among the trials' best checkpoints; `best` shows it beside the best trial; `export`
    writes it as one file that loads with Ray absent and forecasts the weighted mean of those checkpoints."""
    assert main(["ensemble", experiment["path"], "--size", "4", "--data", str(hour_csv)]) == 0
    out = capsys.readouterr().out
    # the naive forecasts compete where they beat the median trial (these 1-epoch trials): then they are named
    assert re.search(r"ensemble: \d+ (trial\(s\) of 4|member\(s\), \d of them naive forecasts, of 4 trials) chosen "
                     r"greedily on validation RMSE \(4 picks\): val MAE [\d.]+", out), out
    rep = json.loads((Path(experiment["path"]) / "ensemble.json").read_text())
    assert sum(m["weight"] for m in rep["members"]) == pytest.approx(1.0)
    # greedy (by squared error) only adds what helps, so it is never worse than one trial alone, the best by the
    # search metric included; the calibration factor (LAD: the search metric is val_mae) is fitted on the same hours
    assert rep["selection"] == "rmse" and rep["loss"] == "mae"
    assert rep["mean_val_rmse"] <= rep["best_val_rmse"] + 1e-9
    from search.results import best_trial

    best, summaries, _ = best_trial(experiment["path"])
    assert rep["members"][0]["trial_id"] == best.trial_id or len(rep["members"]) > 1
    assert rep["best_val_mae"] == pytest.approx(best.best_val_mae, abs=1e-3)  # the same checkpoint, scored again
    assert main(["best", experiment["path"]]) == 0
    assert "ensemble:" in capsys.readouterr().out
    exported = tmp_path / "ensemble.pt"
    assert main(["export", experiment["path"], "--out", str(exported)]) == 0
    assert "ensemble of" in capsys.readouterr().out
    code = ("import sys; sys.modules['ray'] = None\n"
            "import numpy as np\n"
            "from rnn_core import load_model, evaluate_model\n"
            f"lm = load_model({str(exported)!r})\n"
            "fixed = lm.with_steps(lm.steps[:1])\n"  # an ablation: the chain's first step, the calibration, alone
            "fixed = fixed.with_steps((type(fixed.steps[0])(fixed.steps[0].factor),))\n"  # ... with its validation factor
            f"np.save({str(tmp_path / 'p.npy')!r}, evaluate_model(fixed, {str(hour_csv)!r}, 'val', levels=False).prediction)\n"
            "print(*[s.kind for s in lm.steps], lm.steps[0].window, lm.steps[1].lookback, lm.steps[2].window)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from rnn_core.postprocess import CORRECTION_WINDOW, LEVEL_WINDOW, SEASONAL_BIAS_DAYS
    from rnn_core.metrics import evaluate_model

    # where it forecasts, the factor is refit on the weeks before, and the residual correction fitted on them
    assert out == ["calibration", "seasonal_bias", "residual_correction", "non_negative", "conformal_intervals",
                   str(LEVEL_WINDOW), str(24 * SEASONAL_BIAS_DAYS), str(CORRECTION_WINDOW)]
    ckpt = {s.trial_id: Path(s.checkpoint) / "model.pt" for s in summaries}
    from rnn_core.forecaster import load_model, member_from_bundle, naive_bundles, split_targets

    cfg = load_model(next(iter(ckpt.values()))).data_config
    frame = load_frame(hour_csv)[0]
    naive = {n: member_from_bundle(b, n).forecast(frame, split_targets(frame, cfg, "val")[0])
             for n, b in naive_bundles(cfg).items()}  # the naive members' validation forecasts

    def member(name: str) -> np.ndarray:
        return evaluate_model(ckpt[name], hour_csv, "val").prediction if name in ckpt else naive[name]

    expect = rep["steps"][0]["factor"] * sum(m["weight"] * member(m["trial_id"]) for m in rep["members"])
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expect, rtol=1e-6, atol=1e-4)
    assert main(["test", experiment["path"], "--data", str(hour_csv), "--single"]) == 0
    assert f"trial {best.trial_id}" in capsys.readouterr().out


def test_the_score_printed_at_selection_is_the_shipped_files_own(experiment, hour_csv: Path, tmp_path: Path,
                                                                capsys) -> None:
    """What `ensemble` (and ensemble.json) and `export --single` say of the validation hours is what the file they
    wrote forecasts there, its whole chain included."""
    from rnn_core.metrics import evaluate_model

    assert main(["ensemble", experiment["path"], "--size", "3", "--data", str(hour_csv)]) == 0
    said = re.search(r"val MAE ([\d.]+), RMSE ([\d.]+) bikes/hour as the file forecasts", capsys.readouterr().out)
    rep = json.loads((Path(experiment["path"]) / "ensemble.json").read_text())
    ev = evaluate_model(rep["file"], hour_csv, "val", levels=False)
    assert (rep["val_mae"], rep["val_rmse"]) == (pytest.approx(ev.mae, abs=1e-9), pytest.approx(ev.rmse, abs=1e-9))
    assert said and (said.group(1), said.group(2)) == (f"{ev.mae:.2f}", f"{ev.rmse:.2f}")
    single = tmp_path / "single.pt"
    assert main(["export", experiment["path"], "--out", str(single), "--single", "--data", str(hour_csv)]) == 0
    said = re.search(r"val MAE ([\d.]+), RMSE ([\d.]+) bikes/hour as the file forecasts", capsys.readouterr().out)
    ev = evaluate_model(single, hour_csv, "val", levels=False)
    assert said and (said.group(1), said.group(2)) == (f"{ev.mae:.2f}", f"{ev.rmse:.2f}")


def test_the_readmes_python_example_runs_as_written(exported: Path, hour_csv: Path, tmp_path: Path) -> None:
    """The README's Python example, copied out of the README, beside a model.pt, with Ray absent."""
    import os

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    shutil.copy(exported, tmp_path / "model.pt")
    run = subprocess.run([sys.executable, "-c", "import sys; sys.modules['ray'] = None\n" + code], cwd=tmp_path,
                         capture_output=True, text=True, env=dict(os.environ, RNN_SEARCH_DATA=str(hour_csv)))
    assert run.returncode == 0, run.stderr[-2000:]
    forecast, test_mae = run.stdout.strip().splitlines()[-2:]
    from rnn_core.metrics import evaluate_model

    assert float(forecast.strip("[] ")) >= 0 and float(test_mae) == pytest.approx(evaluate_model(exported, hour_csv).mae)


def test_exported_bundle_loads_without_ray(exported: Path, experiment) -> None:
    code = ("import sys; sys.modules['ray'] = None\n"  # any import of ray now fails
            "from rnn_core import load_model\n"
            f"m = load_model({str(exported)!r}); print(m.base.model_config.cell, m.meta['trial_id'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    from search.results import best_trial

    best, _, _ = best_trial(experiment["path"])
    assert out.split()[1] == best.trial_id


def test_test_command_metrics_match_rnn_core(exported: Path, hour_csv: Path, capsys) -> None:
    assert main(["test", str(exported), "--data", str(hour_csv), "--list"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"^model\s+([\d.]+)\s+([\d.]+)", out, re.M)
    assert m, out
    lm = load_model(exported)  # the best trial through the same chain as an ensemble
    assert [s.kind for s in lm.steps] == ["calibration", "seasonal_bias", "residual_correction", "non_negative",
                                          "conformal_intervals"]
    data = load(lm.data_config, hour_csv)
    te = data["test"]
    frame, *_ = load_frame(hour_csv)
    pred = lm.forecast(frame, te.origin)
    assert float(m.group(1)) == pytest.approx(mae(pred, te.y_raw.numpy()), abs=0.006)
    assert float(m.group(2)) == pytest.approx(rmse(pred, te.y_raw.numpy()), abs=0.006)
    # the chain's empty prefix is the network alone, as the trainer scores it
    ref = evaluate(lm.base.model, te.X, te.y, te.y_raw, lm.base.target_scaler)
    assert mae(lm.with_steps(()).forecast(frame, te.origin), te.y_raw.numpy()) == pytest.approx(ref["mae"], abs=1e-3)
    for base in ("persistence", "seasonal_24h", "seasonal_168h"):
        assert re.search(rf"^{base}\s+[\d.]+\s+[\d.]+", out, re.M)
    assert "improvement over the best baseline" in out
    lines = re.findall(r"^\s*\d+:\s+[\d,.]+ <-->\s+[\d,.]+ \(Loss:\s+[\d,.]+\)$", out, re.M)
    assert len(lines) == len(te)


def _check_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 10_000, path
    img = matplotlib.image.imread(path)  # decodes the PNG
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 500
    assert float(np.std(img[..., :3])) > 0.05  # not a blank canvas


def test_plots_from_an_experiment(experiment, hour_csv: Path, tmp_path: Path, capsys) -> None:
    assert main(["test", experiment["path"], "--data", str(hour_csv), "--plots", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["predictions_by_split.png", "search_history.png", "test_period.png", "test_period_closer.png"]
    for n in names:
        _check_png(tmp_path / n)


def test_plots_from_an_exported_bundle_include_its_search(exported: Path, hour_csv: Path, tmp_path: Path) -> None:
    assert main(["test", str(exported), "--data", str(hour_csv), "--plots", str(tmp_path)]) == 0
    assert (tmp_path / "search_history.png").is_file()


def test_unknown_run_name(experiment, capsys) -> None:
    assert main(["best", "no-such-run", "--storage", experiment["storage"]]) == 2
    assert "unknown run 'no-such-run'" in capsys.readouterr().err


def test_path_that_is_not_an_experiment(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["best", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a Tune experiment" in err and "Traceback" not in err


def test_experiment_without_a_finished_trial(experiment, tmp_path: Path, capsys) -> None:
    copy = Path(shutil.copytree(experiment["path"], tmp_path / "empty"))
    for f in list(copy.rglob("result.json")) + list(copy.rglob("progress.csv")):
        f.unlink()
    for d in list(copy.rglob("checkpoint_*")):
        shutil.rmtree(d)
    assert main(["best", str(copy)]) == 2
    assert "no trial has reported a result yet" in capsys.readouterr().err


def test_bundle_whose_data_config_cannot_be_rebuilt(exported: Path, hour_csv: Path, tmp_path: Path, capsys) -> None:
    bundle = load_bundle(exported)
    bundle["data_config"] = dict(bundle["data_config"], sequence_size=-3)
    bad = write_bundle(tmp_path / "bad.pt", bundle)
    assert main(["test", str(bad), "--data", str(hour_csv)]) == 2
    err = capsys.readouterr().err
    assert "data config" in err and "sequence_size" in err
