"""Search spaces: presets, and YAML files that override or extend them -> Tune distributions.

YAML entries (one per key)::

    hidden_size: {choice: [16, 32, 64]}
    learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
    dropout: {uniform: [0.0, 0.3]}
    num_layers: {randint: [1, 4]}          # Tune semantics: low inclusive, high exclusive
    batch_size: {qrandint: [32, 256, 32]}  # low, high (inclusive), step
    cell: gru                              # a fixed value

Everything is checked before Ray starts; a mistake raises :class:`SpaceError` naming the key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from ray import tune

from rnn_core.data import TARGET_TRANSFORMS
from rnn_core.model import CELLS
from rnn_core.train import LOSSES, LR_SCHEDULES

PRESETS = ("quick", "default", "lecture")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "qrandint")
#: Seasonal count lags a trial may ask for ("24,168": the same hour a day and a week before the target).
LAG_CHOICES = ("none", "24", "168", "24,168")

#: key -> (type, allowed values or None). The searchable fields of ModelConfig, TrainConfig and DataConfig.
KEYS: dict[str, tuple[type, tuple[Any, ...] | None]] = {
    "cell": (str, CELLS),
    "hidden_size": (int, None),
    "num_layers": (int, None),
    "dropout": (float, None),
    "bidirectional": (bool, None),
    "sequence_size": (int, None),
    "learning_rate": (float, None),
    "batch_size": (int, None),
    "weight_decay": (float, None),
    "clip_norm": (float, None),
    "lr_schedule": (str, LR_SCHEDULES),
    "loss": (str, tuple(LOSSES)),
    "ema_decay": (float, None),
    "patience": (int, None),
    "target_transform": (str, TARGET_TRANSFORMS),
    "lags": (str, LAG_CHOICES),
    "seed": (int, None),
}
#: Keys that change the windows: the driver builds one BikeData per combination the space can produce.
DATA_KEYS = ("sequence_size", "target_transform", "lags")
#: Keys whose values must be > 0 (others: >= 0).
POSITIVE = {"hidden_size", "num_layers", "sequence_size", "learning_rate", "batch_size", "patience"}


class SpaceError(ValueError):
    """A search space that cannot be used; raised before Ray starts."""


def preset(name: str) -> dict[str, Any]:
    """The preset's space as plain YAML-like entries (validated and converted by :func:`build_space`)."""
    if name == "quick":
        # Small and fast: the README's main job (8 trials x <= 6 epochs on a 2-core laptop).
        return {
            "cell": {"choice": ["gru", "lstm", "rnn"]},
            "hidden_size": {"choice": [16, 32, 48]},
            "num_layers": 1,
            "sequence_size": 24,
            "learning_rate": {"loguniform": [1e-3, 2e-2]},
            "batch_size": {"choice": [128, 256]},
            "clip_norm": 1.0,
        }
    if name == "default":
        # Focused on what measured best on the bikes data (benchmarks/RESULTS.md, "What was tried"): GRU or
        # LSTM on a log1p target with a cosine schedule, sizes up to 128, 1-2 days of history. Bidirectional
        # layers, 168-hour windows, weight EMA and seasonal-lag inputs cost time there and never helped; they
        # stay searchable with --space.
        return {
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
            "target_transform": "log1p",
            "loss": {"choice": ["mse", "huber"]},
        }
    if name == "lecture":
        # The lecture's fixed model, as one trial.
        return {
            "cell": "rnn", "hidden_size": 128, "num_layers": 2, "sequence_size": 24,
            "learning_rate": 1e-3, "batch_size": 32,
        }
    raise SpaceError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")


def _check_value(key: str, value: Any, where: str) -> Any:
    typ, allowed = KEYS[key]
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if typ is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise SpaceError(f"{where}: '{key}' takes {typ.__name__} values, got {value!r} ({type(value).__name__})")
    if allowed is not None and value not in allowed:
        raise SpaceError(f"{where}: '{key}' must be one of {', '.join(map(str, allowed))}, got {value!r}")
    if typ in (int, float):
        if not math.isfinite(value) or value < 0 or (key in POSITIVE and value <= 0):
            raise SpaceError(f"{where}: '{key}' must be {'> 0' if key in POSITIVE else '>= 0'}, got {value!r}")
    return value


def _convert(key: str, entry: Any, where: str) -> Any:
    """One YAML entry -> a Tune domain (or a constant)."""
    if not isinstance(entry, dict):
        return _check_value(key, entry, where)
    if len(entry) != 1:
        raise SpaceError(f"{where}: '{key}' must have exactly one distribution ({', '.join(DISTRIBUTIONS)}), got {entry!r}")
    (dist, args), = entry.items()
    if dist not in DISTRIBUTIONS:
        raise SpaceError(f"{where}: '{key}': unknown distribution '{dist}'; expected one of {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list):
        raise SpaceError(f"{where}: '{key}': {dist} takes a list, got {args!r}")
    typ = KEYS[key][0]
    if dist == "choice":
        if not args:
            raise SpaceError(f"{where}: '{key}': choice needs at least one value")
        return tune.choice([_check_value(key, v, where) for v in args])
    if typ in (str, bool):
        raise SpaceError(f"{where}: '{key}' takes {typ.__name__} values: use choice, not {dist}")
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
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise SpaceError(f"{path}: a space file is a mapping of key: entry, got {type(doc).__name__}")
    return doc


def build_space(preset_name: str = "quick", space_file: str | Path | None = None, seed: int = 0) -> dict[str, Any]:
    """The param_space for Tune: the preset, overridden/extended by the YAML file, plus the seed."""
    entries = preset(preset_name)
    sources = {k: f"preset '{preset_name}'" for k in entries}
    if space_file is not None:
        for k, v in read_yaml(space_file).items():
            entries[k] = v
            sources[k] = str(space_file)
    out: dict[str, Any] = {}
    for key, entry in entries.items():
        if key not in KEYS:
            raise SpaceError(f"{sources[key]}: unknown key '{key}'; expected one of {', '.join(KEYS)}")
        out[key] = _convert(key, entry, sources[key])
    out.setdefault("seed", seed)  # every trial seeds torch/numpy/random from its own config
    return out


def parse_lags(text: str) -> tuple[int, ...]:
    """'24,168' -> (24, 168); 'none' -> ()."""
    return () if text == "none" else tuple(int(v) for v in text.split(","))


def _values(space: dict[str, Any], key: str, default: Any) -> list[Any]:
    v = space.get(key, default)
    if hasattr(v, "categories"):
        return sorted(set(v.categories), key=str)
    if isinstance(v, tune.search.sample.Domain):
        raise SpaceError(f"{key} must be a fixed value or a choice (each value builds its own windows)")
    return [v]


def lags_text(lags: tuple[int, ...]) -> str:
    """(24, 168) -> '24,168'; () -> 'none' (the inverse of parse_lags)."""
    return ",".join(map(str, lags)) or "none"


def data_variants(space: dict[str, Any], transform: str, lags: tuple[int, ...]) -> list[tuple[int, str, tuple[int, ...]]]:
    """Every (sequence_size, target_transform, lags) a trial may ask for; the defaults come from the CLI."""
    return [(int(seq), str(tr), parse_lags(str(lg)))
            for seq in _values(space, "sequence_size", 24)
            for tr in _values(space, "target_transform", transform)
            for lg in _values(space, "lags", lags_text(lags))]


def data_key(config: dict[str, Any], transform: str, lags: tuple[int, ...]) -> tuple[int, str, tuple[int, ...]]:
    """The data variant a trial's config selects (see data_variants)."""
    return (int(config.get("sequence_size", 24)), str(config.get("target_transform", transform)),
            parse_lags(str(config.get("lags", lags_text(lags)))))


def is_fixed(space: dict[str, Any]) -> bool:
    """True when nothing is sampled (the 'lecture' preset): one trial is enough."""
    return not any(isinstance(v, tune.search.sample.Domain) for v in space.values())
