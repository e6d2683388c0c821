"""What `rnn-search tune` takes, declared once: each field's docstring is its flag's help, its metadata its
spelling and choices (rnn_core.config.settings reads both, as for `train`'s configs). Frozen and validated:
a bad value is one line naming its flag. No Ray: the parser is built from this without starting anything."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnn_core.config import DataConfig
from rnn_core.errors import UserError
from search.errors import SearchError
from search.space import PRESETS

SEARCHERS = ("optuna-asha", "optuna", "random")
WANDB_MODES = ("off", "offline", "online")
METRICS = ("val_loss", "val_mae", "val_rmse")
_INTERNAL = {"derived": True}  # set by the command or by code, not a flag of its own


@dataclass(frozen=True)
class SearchOptions:
    """The search: its space and budget, its resources, where it is written."""

    preset: str = field(default="quick", metadata={"choices": tuple(PRESETS)})
    """search space and budget"""
    space_file: str | None = field(default=None, metadata={"cli_flags": ("--space",)})
    """YAML that overrides or extends the preset's space"""
    num_samples: int | None = None
    """trials (default: the preset's; give default a --time-budget)"""
    max_epochs: int | None = None
    """epochs per trial, ASHA's max_t (default: the preset's)"""
    grace_period: int | None = None
    """ASHA: epochs before a trial may be stopped (default: the preset's)"""
    reduction_factor: float | None = None
    """ASHA reduction factor: 1/N of the trials go on at each rung (default: the preset's)"""
    max_concurrent: int = 0
    """trials at once, 0 = as resources allow"""
    cpus_per_trial: float = 1.0
    """CPUs each trial holds"""
    gpus_per_trial: float = 0.0
    """fractional: 0.25 packs four trials per GPU"""
    storage: str | None = None
    """where the experiment is written: a local folder, s3://BUCKET/PATH or gs://BUCKET/PATH (default:
    $RNN_SEARCH_STORAGE, else ./runs)"""
    name: str | None = None
    """experiment name (default: PRESET-DATE-TIME)"""
    keep_checkpoints: int = 2
    """checkpoints kept per trial: its best N by the search metric, and its latest"""
    max_failures: int = 2
    """restarts of a failed trial from its checkpoint"""
    address: str | None = None
    """join a Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: an embedded local Ray)"""
    searcher: str = field(default="optuna-asha", metadata={"choices": SEARCHERS})
    """optuna-asha: TPE told ASHA-stopped trials as PRUNED; optuna: Ray's stock OptunaSearch; random: random
    search + FIFO"""
    seed: int = 0
    """the sampler's seed; each trial trains with it plus a hash of its settings, so that neighbouring trials differ"""
    wandb: str = field(default="off", metadata={"choices": WANDB_MODES})
    """one W&B run per trial"""
    progress_interval_s: float = field(default=15.0, metadata={"cli_flags": ("--progress-interval",)})
    """seconds between progress lines"""
    report_every: int = 1
    """report to Tune every N epochs (ASHA and the searcher see only reported epochs)"""
    checkpoint_every: int = 1
    """checkpoint every N epochs, and always at a new best and the last epoch"""
    reuse_actors: bool = True
    """reuse trial actors, which cuts per-trial start-up (benchmarks/tune_overhead.py)"""
    metric: str | None = field(default=None, metadata={"choices": METRICS})
    """what the search minimises (default: val_loss, or val_mae when the space varies the target transform or loss)"""
    time_budget_min: float | None = field(default=None, metadata={"cli_flags": ("--time-budget",)})
    """stop the search after this many minutes (running trials stop; their best checkpoints stay; default: no limit)"""
    stop_patience: int | None = None
    """end the search at its knee: once the validation MAE of its ensemble (chosen again every 10 finished trials,
    scored by its own forecast) has not fallen by --stop-margin below its value at the last such gain (small gains
    add up) for this many finished trials; 0: never (default: the preset's)"""
    stop_margin: float | None = None
    """the gain in percent that counts as improving, for --stop-patience (default: the preset's)"""
    stop_every: int = field(default=10, metadata=_INTERNAL)
    """The knee rule chooses the ensemble again every this many finished trials (tests use fewer)."""
    data_path: str | None = field(default=None, metadata=_INTERNAL)
    """hour.csv (the command's --data; None: found as rnn_core.data finds it)"""
    data: DataConfig = field(default_factory=DataConfig, metadata=_INTERNAL)
    """The windows every trial trains on; the space's data keys (sequence_size, ...) vary it per trial."""
    data_given: frozenset[str] = field(default=frozenset(), metadata=_INTERNAL)
    """DataConfig fields set on the command line: the preset's data settings never replace them."""
    n_startup_trials: int | None = field(default=None, metadata=_INTERNAL)
    """TPE's random start-up trials (default: a third of the trials, 3 to 10)."""
    stop: Any = field(default=None, metadata=_INTERNAL)
    """A Tune stopper for the whole run (benchmarks use one that caps the total epochs)."""
    callbacks: tuple[Any, ...] = field(default=(), metadata=_INTERNAL)
    """Extra Tune callbacks (tests use one to watch logical resources)."""

    def __post_init__(self) -> None:
        for flag, value, choices in (("--preset", self.preset, tuple(PRESETS)), ("--searcher", self.searcher, SEARCHERS),
                                     ("--wandb", self.wandb, WANDB_MODES), ("--metric", self.metric, (None, *METRICS))):
            if value not in choices:
                raise SearchError(f"{flag} {value!r}: expected one of {', '.join(c for c in choices if c)}")
        for flag, value, low in (("--num-samples", self.num_samples, 1), ("--max-epochs", self.max_epochs, 1),
                                 ("--max-concurrent", self.max_concurrent, 0),
                                 ("--max-failures", self.max_failures, 0), ("--report-every", self.report_every, 1),
                                 ("--checkpoint-every", self.checkpoint_every, 1), ("--seed", self.seed, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise SearchError(f"{flag} {value!r}: expected a whole number >= {low}")
        if self.keep_checkpoints < 1:
            raise SearchError(f"--keep-checkpoints {self.keep_checkpoints}: expected 1 or more (the best checkpoint is "
                              "what export, test and the ensemble use)")
        if self.reduction_factor is not None and not self.reduction_factor > 1:
            raise SearchError(f"--reduction-factor {self.reduction_factor:g}: expected a number above 1 (2 keeps half "
                              "the trials at each rung)")
        for flag, value in (("--cpus-per-trial", self.cpus_per_trial), ("--gpus-per-trial", self.gpus_per_trial),
                            ("--progress-interval", self.progress_interval_s)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise SearchError(f"{flag} {value!r}: expected a number >= 0")
        if self.stop_patience is not None and (isinstance(self.stop_patience, bool) or not isinstance(self.stop_patience, int)
                                               or self.stop_patience < 0):
            raise SearchError(f"--stop-patience {self.stop_patience!r}: expected a whole number of trials >= 0 (0: never)")
        if self.stop_margin is not None and not (math.isfinite(self.stop_margin) and 0 <= self.stop_margin < 100):
            raise SearchError(f"--stop-margin {self.stop_margin!r}: expected a percentage from 0 to below 100")
        if self.time_budget_min is not None and not (math.isfinite(self.time_budget_min) and self.time_budget_min > 0):
            raise SearchError(f"--time-budget {self.time_budget_min!r}: expected a number of minutes above 0")

    @property
    def time_budget_s(self) -> float | None:
        return self.time_budget_min * 60 if self.time_budget_min is not None else None


def dataset_block(path: str) -> dict[str, Any]:
    """The ``dataset:`` mapping of a YAML file, its keys checked (one line naming the file otherwise)."""
    import yaml

    from rnn_core.config import Dataset

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot be read as YAML: {str(exc).splitlines()[0]}") from None
    block = doc.get("dataset") if isinstance(doc, dict) else None
    allowed = {"file"} | {f.name for f in dataclasses.fields(Dataset)}
    if not isinstance(block, dict):
        raise UserError(f"{path}: expected a 'dataset:' mapping with keys {', '.join(sorted(allowed))}")
    if unknown := sorted(set(block) - allowed):
        raise UserError(f"{path}: dataset: unknown key {unknown[0]!r}; expected {', '.join(sorted(allowed))}")
    return block


def describe_dataset(yaml_file: str | None, given: dict[str, Any], data: str | None) -> tuple[Any, str | None]:
    """(the dataset a ``dataset:`` block of ``yaml_file`` and the flags over it describe, the data file): the
    block's ``file:`` is the file unless ``data`` is given. No --time/--target: the default built-in data set."""
    from rnn_core.config import Dataset, default_dataset

    fields = dict(dataset_block(yaml_file)) if yaml_file else {}
    file = fields.pop("file", None)
    if file is not None and not data:
        data = str(Path(yaml_file).parent / file) if not Path(file).is_absolute() else file
    defaults = {f.name: f.default for f in dataclasses.fields(Dataset)}
    given = {k: v for k, v in given.items() if v not in (None, ()) and v != defaults.get(k)}
    fields.update(given)
    if fields.get("time") is None and fields.get("target") is None:
        if fields:
            raise UserError(f"--{next(iter(fields)).replace('_', '-')} describes a file of your own: give --time and "
                            "--target too (without them the built-in data set is read)")
        return default_dataset(), data
    return Dataset(**fields), data


def transform_open(argv: list[str]) -> bool:
    """Whether the command line leaves the target transform to the data (no --target-transform)."""
    return "target_transform" not in flags_given(argv)


def flags_given(argv: list[str]) -> frozenset[str]:
    """The DataConfig fields whose flags are on the command line ``argv`` (a preset's data settings leave them
    alone)."""
    from rnn_core.config import SPLIT_FIELDS, DataConfig
    from rnn_core.settings import settings

    tokens = {t.split("=", 1)[0] for t in argv if t.startswith("--")}
    given = {s.name for s in settings(DataConfig) if tokens & {*s.flags, *("--no-" + f[2:] for f in s.flags)}}
    return frozenset(given | (set(SPLIT_FIELDS) if "--split" in tokens else set()))
