"""Search spaces: presets, and YAML files that override or extend them -> Tune distributions.

YAML entries (one per key)::

    hidden_size: {choice: [16, 32, 64]}
    learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
    dropout: {uniform: [0.0, 0.3]}
    num_layers: {randint: [1, 4]}          # Tune semantics: low inclusive, high exclusive
    batch_size: {qrandint: [32, 256, 32]}  # low, high (inclusive), step
    cell: gru                              # a fixed value
    seasonal_lags: {choice: [none, "24", "24,168"]}  # lags as text, one parser: rnn_core.config.parse_lags

The keys are the searchable fields of rnn_core.config's DataConfig, ModelConfig and TrainConfig.
Everything is checked before Ray starts; a mistake raises :class:`SpaceError` naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rnn_core.config import DataConfig, lags_text, parse_lags
from rnn_core.settings import Setting, check, pick, search_keys
from rnn_core.errors import UserError

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "qrandint")
#: key -> setting: the searchable fields of DataConfig, ModelConfig and TrainConfig (rnn_core.config).
KEYS: dict[str, Setting] = search_keys()
#: Keys that change the windows: the driver builds one WindowData per combination the space can produce.
DATA_KEYS = tuple(k for k, s in KEYS.items() if s.owner is DataConfig)


class SpaceError(UserError, ValueError):
    """A search space that cannot be used; raised before Ray starts."""


@dataclass(frozen=True)
class Preset:
    """A search space with the budget it was made for."""

    space: dict[str, Any]
    """Plain YAML-like entries (validated and converted by :func:`build_space`)."""
    trials: int
    max_epochs: int
    """Epochs per trial (ASHA's max_t)."""
    grace_period: int
    """ASHA: epochs before a trial may be stopped."""
    reduction_factor: float
    """ASHA: 1/N of the trials go on at each rung."""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    """DataConfig settings of the preset (where the command line leaves the default), e.g. the horizon."""
    stop_patience: int = 0
    """The knee rule (search.knee): finished trials without a gain of ``stop_margin`` percent in the ensemble's
    validation MAE before the search ends; 0: never."""
    stop_margin: float = 1.0


# Focused on what measured best on the built-in data set (benchmarks/RESULTS.md, "What was tried"): GRU or
# LSTM on a sqrt target with a cosine schedule, sizes up to 128, 1-2 days of history. The square root
# weighs busy hours more than the log does; one fixed LSTM setting, 3 seeds each, November-December of its last year:
# validation MAE 21.1 vs 24.2, test MAE of the seeds' mean after post-processing 20.00 vs 21.02. Bidirectional
# layers, 168-hour windows, weight EMA and seasonal-lag inputs cost time there and never helped; they
# stay searchable with --space. Letting trials choose sqrt or log1p was measured too (Nov-Dec, 2 cores): test
# MAE / RMSE 20.16 / 32.31 at its knee after 38.8 min, against 20.20 / 31.76 after 12.8 min with sqrt alone.
# The cosine schedule makes the first epochs a poor guide, so ASHA judges trials from epoch 3 on.
# Each trial learns its target in both forms (two outputs per hour: the level, and the change from the count
# at t; the forecast is their mean): one fixed LSTM setting, 6 seeds on each of four periods of the built-in data set, the
# shipped chain after the seeds' mean: validation MAE -0.4 to -2.6 % and test MAE -1.8 to -4.6 % against the
# level alone (benchmarks/target_forms.py; RESULTS.md, "The target in both forms"). A choice between the forms per
# trial was worse: the change trials look better at ASHA's early rungs, so the search kept almost only them
# (validation 21.35 vs 20.02-20.21 for both).
_DEFAULT_SPACE: dict[str, Any] = {
    "cell": {"choice": ["gru", "lstm"]},
    "hidden_size": {"choice": [32, 64, 128]},
    "num_layers": {"choice": [1, 2]},
    "dropout": {"uniform": [0.0, 0.3]},
    "sequence_size": {"choice": [24, 48]},
    "learning_rate": {"loguniform": [5e-4, 5e-3]},
    "batch_size": {"choice": [64, 128, 256]},
    "weight_decay": {"loguniform": [1e-6, 1e-3]},
    "clip_norm": {"uniform": [0.5, 5.0]},
    "lr_schedule": "cosine",
    "target_transform": "sqrt",
    "target_form": "both",
    "loss": {"choice": ["mse", "huber"]},
}

PRESETS: dict[str, Preset] = {
    # Small and fast: the README's main job (8 trials x <= 6 epochs on a 2-core laptop).
    "quick": Preset({
        "cell": {"choice": ["gru", "lstm", "rnn"]},
        "hidden_size": {"choice": [16, 32, 48]},
        "num_layers": 1,
        "sequence_size": 24,
        "learning_rate": {"loguniform": [1e-3, 2e-2]},
        "batch_size": {"choice": [128, 256]},
        "clip_norm": 1.0,
    }, trials=8, max_epochs=6, grace_period=1, reduction_factor=2.0),
    # Validation on 4 windows spread over the year before the test period (--val-windows 4; a flag, or
    # --val-windows 1, overrides it): its ensembles measured better than one window of the months just before
    # on both periods compared, test MAE 20.59 vs 20.65 on November-December, 27.70 vs 28.83 on July-August
    # (with the residual correction; 20.93 vs 21.11 and 28.57 vs 30.83 without it; benchmarks/RESULTS.md).
    "default": Preset(_DEFAULT_SPACE, trials=200, max_epochs=20, grace_period=3, reduction_factor=3.0,
                      data={"val_windows": 4}, stop_patience=20, stop_margin=1.0),
    # Tomorrow's 24 hours from each hour (issue 12): many-to-one with a 24-output head against the lecture's
    # encoder-decoder, whose decoder steps through the target hours fed with their calendar. The space
    # varies the loss, so trials are ranked by validation MAE over the 24 steps.
    # Its target stays log1p, as measured there (RESULTS.md, "Day-ahead"); sqrt and the target in both forms were
    # measured at horizon 1 only.
    "day-ahead": Preset({"arch": {"choice": ["head", "seq2seq"]}, **_DEFAULT_SPACE, "target_transform": "log1p",
                         "target_form": "level"},
                        trials=200, max_epochs=20, grace_period=3, reduction_factor=3.0, data={"horizon": 24}),
    # The lecture's fixed model, as one trial.
    "lecture": Preset({
        "cell": "rnn", "hidden_size": 128, "num_layers": 2, "sequence_size": 24,
        "learning_rate": 1e-3, "batch_size": 32,
    }, trials=1, max_epochs=50, grace_period=1, reduction_factor=2.0),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise SpaceError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _check_value(key: str, value: Any, where: str) -> Any:
    """One value of a key -> the value a trial's config carries; its config's own validation decides the range."""
    setting = KEYS[key]
    typ = setting.type
    if typ is tuple:  # seasonal lags travel as text ('24,168'): Optuna's categoricals take only plain values
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise SpaceError(f"{where}: '{key}' takes hours as text such as \"24,168\" or none, got {value!r}")
        try:
            value = lags_text(parse_lags(str(value)))
        except ValueError as exc:
            raise SpaceError(f"{where}: '{key}': {exc}") from None
        typ = str
    if typ is float and isinstance(value, str):
        try:  # YAML reads 1e-4 (no dot) as text, unlike 1.0e-4
            value = float(value)
        except ValueError:
            pass
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if typ is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise SpaceError(f"{where}: '{key}' takes {typ.__name__} values, got {value!r} ({type(value).__name__})")
    if setting.choices is not None and value not in setting.choices:
        raise SpaceError(f"{where}: '{key}' must be one of {', '.join(map(str, setting.choices))}, got {value!r}")
    try:
        check(key, value)
    except ValueError as exc:
        raise SpaceError(f"{where}: {exc}") from None
    return value


def _convert(key: str, entry: Any, where: str) -> Any:
    """One YAML entry -> a Tune domain (or a constant)."""
    if not isinstance(entry, dict):
        return _check_value(key, entry, where)
    if len(entry) != 1:
        raise SpaceError(f"{where}: '{key}' must have exactly one distribution ({', '.join(DISTRIBUTIONS)}), got {entry!r}")
    from ray import tune

    (dist, args), = entry.items()
    if dist not in DISTRIBUTIONS:
        raise SpaceError(f"{where}: '{key}': unknown distribution '{dist}'; expected one of {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list):
        raise SpaceError(f"{where}: '{key}': {dist} takes a list, got {args!r}")
    typ = KEYS[key].type
    if dist == "choice":
        if not args:
            raise SpaceError(f"{where}: '{key}': choice needs at least one value")
        return tune.choice([_check_value(key, v, where) for v in args])
    if typ in (str, bool, tuple):
        raise SpaceError(f"{where}: '{key}' takes {'text' if typ is tuple else typ.__name__} values: use choice, not {dist}")
    want = 3 if dist == "qrandint" else 2
    if len(args) != want:
        raise SpaceError(f"{where}: '{key}': {dist} takes {want} numbers, got {args!r}")
    if dist in ("randint", "qrandint"):
        if typ is not int:
            raise SpaceError(f"{where}: '{key}' takes float values: use uniform or loguniform, not {dist}")
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise SpaceError(f"{where}: '{key}': {dist} takes integers, got {args!r}")
    lo, hi = (_check_value(key, a, where) for a in args[:2])
    empty = lo >= hi if dist in ("uniform", "loguniform", "randint") else lo > hi
    if empty:
        raise SpaceError(f"{where}: '{key}': empty range [{lo}, {hi}] for {dist}")
    if dist == "uniform":
        return tune.uniform(lo, hi)
    if dist == "loguniform":
        if lo <= 0:
            raise SpaceError(f"{where}: '{key}': loguniform needs a lower bound > 0, got {lo}")
        return tune.loguniform(lo, hi)
    if dist == "randint":
        return tune.randint(lo, hi)
    step = args[2]
    if step <= 0:
        raise SpaceError(f"{where}: '{key}': qrandint step must be > 0, got {step}")
    return tune.qrandint(lo, hi, step)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML space file (a mapping of key -> entry)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read the space file: {exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # one line: where, and what the parser found there
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise SpaceError(f"{path}: not valid YAML{where}: {what}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise SpaceError(f"{path}: a space file is a mapping of key: entry, got {type(doc).__name__}")
    return doc


def build_space(preset_name: str = "quick", space_file: str | Path | None = None, seed: int = 0,
                recorded: dict[str, Any] | None = None) -> dict[str, Any]:
    """The param_space for Tune: the preset, overridden/extended by the YAML file (or by ``recorded``, the file's
    entries as a run saved them: a resume needs neither the file nor its path to be as they were), plus the seed."""
    entries = dict(preset(preset_name).space)
    sources = {k: f"preset '{preset_name}'" for k in entries}
    given = recorded if recorded is not None else read_yaml(space_file) if space_file is not None else {}
    for k, v in given.items():
        entries[k] = v
        sources[k] = str(space_file)
    out: dict[str, Any] = {}
    for key, entry in entries.items():
        if key not in KEYS:
            raise SpaceError(f"{sources[key]}: unknown key '{key}'; expected one of {', '.join(KEYS)}")
        out[key] = _convert(key, entry, sources[key])
    out.setdefault("seed", seed)  # every trial seeds torch/numpy/random from its own config
    return out


def _values(space: dict[str, Any], key: str) -> list[Any]:
    """The values a data key can take in this space: its choices, its fixed value, or none given."""
    from ray import tune

    v = space.get(key)
    if hasattr(v, "categories"):
        return sorted(set(v.categories), key=str)
    if isinstance(v, tune.search.sample.Domain):
        raise SpaceError(f"{key} must be a fixed value or a choice (each value builds its own windows)")
    return [] if key not in space else [v]


def data_config(config: dict[str, Any], base: DataConfig) -> DataConfig:
    """The windows a trial's config selects: ``base`` (from the command line) with the trial's data keys."""
    return dataclasses.replace(base, **pick(DataConfig, config))


def data_variants(space: dict[str, Any], base: DataConfig) -> list[DataConfig]:
    """Every DataConfig a trial of this space may ask for (built once each, on the driver)."""
    variants = [base]
    for key in DATA_KEYS:
        values = _values(space, key)
        if values:
            variants = [dataclasses.replace(v, **{key: x}) for v in variants for x in values]
    return list(dict.fromkeys(variants))


def is_fixed(space: dict[str, Any]) -> bool:
    """True when nothing is sampled (the 'lecture' preset): one trial is enough."""
    from ray import tune

    return not any(isinstance(v, tune.search.sample.Domain) for v in space.values())
