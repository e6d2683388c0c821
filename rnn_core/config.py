"""The configs, declared once: :class:`DataConfig`, :class:`ModelConfig`, :class:`TrainConfig` (frozen, typed, one
docstring per field, validated in ``__post_init__`` and nowhere else), their choices and the parsers of their text
forms. What follows from the fields (flags, search keys) is rnn_core.settings; how a series is described,
rnn_core.datasets; the post-processing chain's constants, rnn_core.postprocess; errors, rnn_core.errors.

This module imports nothing heavy, so ``rnn-search --help`` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from rnn_core.datasets import ABSENT_CHOICES, CALENDAR_PARTS, Dataset, _one_of, _require, default_dataset  # noqa: F401 - re-exported

CELLS = ("rnn", "lstm", "gru")
ARCHS = ("head", "seq2seq")
MAX_HORIZON = 1000  # steps; a bound on memory ([N, H] targets per split), not on method
TARGET_TRANSFORMS = ("log1p", "sqrt", "standard", "scale100")
#: The transforms that need a target >= 0 (counts).
COUNT_TRANSFORMS = ("log1p", "sqrt")
#: What a model learns of each target (DataConfig.target_form).
TARGET_FORMS = ("level", "change", "both")


def target_outputs(form: str) -> int:
    """Model outputs per target step of a target form: a level and a change for 'both', else one."""
    return 2 if form == "both" else 1


def form_note(form: str) -> str:
    """A member's target form in its one-line description: nothing for a level."""
    return {"level": "", "change": ", change from t", "both": ", level + change"}[form]
LOSSES = ("mse", "l1", "huber")
LR_SCHEDULES = ("constant", "cosine")
SPLIT_PRESETS = ("default", "lecture", "custom")
#: What a timestamp absent from a user's file means (rnn_core.series).
ABSENT = ABSENT_CHOICES
#: Ensemble selection steps (greedy, with replacement: weights are multiples of 1/K); rnn_core.ensemble.
ENSEMBLE_SIZE = 20
#: The fields that ``--split`` sets together (one flag, one parser: :func:`split_kwargs`).
SPLIT_FIELDS = ("split", "val_start", "test_start", "test_end")


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def parse_lags(text: str) -> tuple[int, ...]:
    """Seasonal lags as text (a flag, a YAML value, a trial's config) -> steps: '24,168' -> (24, 168); 'none' -> ().

    The one parser of lags. Text is their form outside rnn_core because Optuna's categorical
    distributions (and its storages) take only plain values, not tuples.
    """
    text = str(text).strip().lower()
    if text in ("", "none"):
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"seasonal lags: expected steps such as 24,168 or none, got {text!r}") from None


def lags_text(lags: tuple[int, ...]) -> str:
    """(24, 168) -> '24,168'; () -> 'none' (the inverse of :func:`parse_lags`)."""
    return ",".join(map(str, lags)) or "none"


def split_kwargs(text: str) -> dict[str, Any]:
    """'default', 'lecture' or 'VAL_START,TEST_START[,TEST_END]' -> the DataConfig fields of ``--split``."""
    if text in ("default", "lecture"):
        return {"split": text, "val_start": None, "test_start": None, "test_end": None}
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"split {text!r}: expected default, lecture or VAL_START,TEST_START[,TEST_END]")
    return {"split": "custom", "val_start": parts[0], "test_start": parts[1], "test_end": parts[2] if len(parts) == 3 else None}


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(str(text))


class _Config:
    """Shared tails of the three configs: plain-dict round trips (what checkpoints store)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        return cls(**d)


@dataclass(frozen=True)
class DataConfig(_Config):
    """How the steps of a series become windows and splits. Stored in every checkpoint so that a split can be
    rebuilt."""

    sequence_size: int = 24
    """Input steps per window (L), ending with the forecast origin t."""
    horizon: int = field(default=1, metadata={"search": False})
    """Steps forecast per window: the target at t+1 ... t+horizon (1 to 1000: a week of 15-minute steps is 672)."""
    split: str = field(default="default", metadata={"choices": SPLIT_PRESETS, "search": False})
    """'default' (the data set's own: for the built-in data set the last four months of its last year;
    for a file of your own the last tenth of its time is the test period and the tenth before it validation),
    'lecture' (the last 24 windows test, the 96 before them validation) or 'custom' (--split VAL,TEST[,END])."""
    val_start: str | None = field(default=None, metadata={"search": False})
    """Custom split: the first validation target time (a date such as '2024-07-01')."""
    test_start: str | None = field(default=None, metadata={"search": False})
    """Custom split: the first test target time."""
    test_end: str | None = field(default=None, metadata={"search": False})
    """Custom split: the last test target time (default: the end of the data)."""
    val_windows: int = field(default=1, metadata={"search": False})
    """Validation windows: 1 = every step from the validation start to the test period; K > 1 = K windows of
    the same total length spread evenly over the year before the test period, the last one ending where it
    starts. Training windows whose inputs or targets touch a validation step are left out."""
    future_calendar: bool = True
    """Append what is known in advance of the target steps t+1..t+horizon (their calendar, known-future
    covariates and feature functions) to every input step."""
    seasonal_lags: tuple[int, ...] = ()
    """Seasonal lags of the target in steps, e.g. 24,168 for hourly data: step s also sees the target's history
    at step s+1-lag (the same step a season before the step after s); only steps <= t are used, so nothing
    after t leaks."""
    target_transform: str = field(default="log1p", metadata={"choices": TARGET_TRANSFORMS})
    """Target scaling: 'log1p' (log1p then standardise), 'sqrt' (square root then standardise: counts' variance
    stabiliser), 'standard' (standardise) or 'scale100' (/100). Default: log1p for the built-in data set; for a file of
    your own log1p when its target is counts, else standard."""
    target_form: str = field(default="level", metadata={"choices": TARGET_FORMS})
    """What the model learns of each target, on the transform's scale f: 'level' (f(y[t+h]), standardised),
    'change' (its change from the origin, f(y[t+h]) - f(y[t]): it reads the level it starts from rather than
    learning it from the training years) or 'both' (two outputs per target step, one of each, trained together;
    the forecast is the mean of the two in the target's units: their errors differ, and the mean gains on each)."""
    series_scaling: bool = field(default=True, metadata={"search": False})
    """For a panel (--series): each series' target and history standardised by its own training steps (on the
    transform's scale) before one network learns them all, so that a series of 20 and one of 130,000 weigh alike
    in the loss and the inputs; off: one scale for every series."""
    dataset: Dataset = field(default_factory=default_dataset, metadata={"derived": True, "search": False})
    """The series (set from the Dataset flags: --time, --target, ...)."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        """A stored config, those of older files migrated (rnn_core.datasets.migrate)."""
        from rnn_core.datasets import migrate

        return cls(**migrate(d))

    def __post_init__(self) -> None:
        if isinstance(self.dataset, dict):  # from a stored dict
            object.__setattr__(self, "dataset", Dataset.from_dict(self.dataset))
        _require(isinstance(self.dataset, Dataset), f"dataset must be a Dataset, got {self.dataset!r}")
        _require(_integer(self.sequence_size) and self.sequence_size >= 1,
                 f"sequence_size must be a positive integer, got {self.sequence_size!r}")
        _require(_integer(self.horizon) and 1 <= self.horizon <= MAX_HORIZON,
                 f"horizon must be an integer from 1 to {MAX_HORIZON}, got {self.horizon!r}")
        _one_of("split", self.split, SPLIT_PRESETS)
        _one_of("target_transform", self.target_transform, TARGET_TRANSFORMS)
        _one_of("target_form", self.target_form, TARGET_FORMS)
        if isinstance(self.seasonal_lags, str):
            object.__setattr__(self, "seasonal_lags", parse_lags(self.seasonal_lags))
        elif isinstance(self.seasonal_lags, list):
            object.__setattr__(self, "seasonal_lags", tuple(self.seasonal_lags))  # from a stored dict
        _require(all(_integer(k) and 2 <= k <= 24 * 28 for k in self.seasonal_lags),
                 f"seasonal_lags must be integers from 2 to 672 steps, got {self.seasonal_lags!r}")
        _require(_integer(self.val_windows) and 1 <= self.val_windows <= 12,
                 f"val_windows must be an integer from 1 to 12, got {self.val_windows!r}")
        _require(self.val_windows == 1 or self.split != "lecture",
                 "the lecture split has one validation window (its 96 hours before the test day)")
        if self.split == "custom":
            _require(bool(self.val_start and self.test_start),
                     "a custom split needs val_start and test_start (dates such as 2024-07-01)")
            bounds = [self.val_start, self.test_start] + ([self.test_end] if self.test_end else [])
            try:
                stamps = [_timestamp(b) for b in bounds]
            except (ValueError, TypeError) as exc:
                raise ValueError(f"custom split boundaries must be dates, got {bounds}: {exc}") from None
            _require(all(a < b for a, b in zip(stamps, stamps[1:])), f"custom split boundaries must increase: {bounds}")


@dataclass(frozen=True)
class ModelConfig(_Config):
    """Architecture of the forecaster. Defaults are the lecture's model (RNN 128 x 2)."""

    n_features: int = field(default=1, metadata={"derived": True})
    """F: input features per step (set from the DataConfig)."""
    horizon: int = field(default=1, metadata={"derived": True})
    """H: steps forecast per window, outputs of the linear head (set from the DataConfig)."""
    cell: str = field(default="rnn", metadata={"choices": CELLS})
    """Recurrent cell: 'rnn' (tanh, the lecture's), 'lstm' or 'gru'."""
    hidden_size: int = 128
    """Units per recurrent layer."""
    num_layers: int = 2
    """Stacked recurrent layers."""
    dropout: float = 0.0
    """Dropout between recurrent layers (has no effect with one layer)."""
    bidirectional: bool = False
    """Run each layer forwards and backwards over the window."""
    arch: str = field(default="head", metadata={"choices": ARCHS})
    """'head': many-to-one, the encoder's last state through a linear head to the H outputs; 'seq2seq': an
    encoder-decoder whose decoder steps through the H target steps fed with their calendar (known in
    advance), one output per step. seq2seq needs the future calendar features."""
    future_features: int = field(default=0, metadata={"derived": True})
    """Known-in-advance features per target step at the end of each input step (set from the DataConfig)."""
    targets: int = field(default=1, metadata={"derived": True})
    """Outputs per target step: 2 for a target learnt in both forms (DataConfig.target_form), else 1."""

    def __post_init__(self) -> None:
        _one_of("cell", self.cell, CELLS)
        _one_of("arch", self.arch, ARCHS)
        _require(_integer(self.future_features) and 0 <= self.future_features * self.horizon < self.n_features
                 or self.future_features == 0, f"future_features {self.future_features!r} do not fit {self.n_features} inputs")
        _require(self.arch != "seq2seq" or not self.bidirectional,
                 "arch seq2seq hands the encoder's state to a forward decoder: use it without bidirectional")
        for name in ("n_features", "horizon", "hidden_size", "num_layers", "targets"):
            v = getattr(self, name)
            _require(_integer(v) and v >= 1, f"{name} must be a positive integer, got {v!r}")
        _require(_number(self.dropout) and 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout!r}")


@dataclass(frozen=True)
class TrainConfig(_Config):
    """How one model is trained."""

    learning_rate: float = field(default=1e-3, metadata={"flags": ("--lr",)})
    """Adam(W) step size."""
    batch_size: int = 32
    """Mini-batch size (the lecture's 32)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay (0 = plain Adam)."""
    max_epochs: int = field(default=50, metadata={"flags": ("--epochs",), "search": False})
    """Upper bound on epochs (in a search: --max-epochs, ASHA's max_t)."""
    patience: int = 10
    """Early stopping: epochs without a validation-loss improvement before stopping."""
    min_delta: float = 1e-5
    """Early stopping: an improvement must lower the validation loss by more than this."""
    clip_norm: float = 1.0
    """Gradient-norm clip (RNN gradients explode); 0 disables."""
    loss: str = field(default="mse", metadata={"choices": LOSSES})
    """Training loss in target space: 'mse', 'l1' (optimises MAE directly) or 'huber' (delta 1.0)."""
    lr_schedule: str = field(default="constant", metadata={"choices": LR_SCHEDULES})
    """Learning-rate schedule: 'constant' or 'cosine' (cosine annealing over max_epochs)."""
    ema_decay: float = 0.0
    """Per-step exponential moving average of the weights (e.g. 0.999), validated, early-stopped on and saved;
    it smooths the epoch-to-epoch noise of RNN training. 0 = off."""
    seed: int = 0
    """Seeds torch, numpy, random and the batch shuffle."""
    device: str = field(default="auto", metadata={"search": False})
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    num_threads: int = field(default=0, metadata={"flags": ("--threads",), "search": False})
    """CPU threads for torch (0 = torch's default; Ray trials pass their CPU allotment)."""

    def __post_init__(self) -> None:
        _require(_number(self.learning_rate) and self.learning_rate > 0,
                 f"learning_rate must be a positive number, got {self.learning_rate!r}")
        for name in ("batch_size", "max_epochs", "patience"):
            v = getattr(self, name)
            _require(_integer(v) and v > 0, f"{name} must be a positive integer, got {v!r}")
        for name in ("weight_decay", "min_delta", "clip_norm"):
            v = getattr(self, name)
            _require(_number(v) and v >= 0, f"{name} must be a number >= 0, got {v!r}")
        _require(_number(self.ema_decay) and 0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        _require(_integer(self.seed) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        _one_of("loss", self.loss, LOSSES)
        _one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _require(isinstance(self.device, str) and (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")),
                 f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        _require(_integer(self.num_threads) and self.num_threads >= 0,
                 f"num_threads must be an integer >= 0, got {self.num_threads!r}")


CONFIGS = (DataConfig, ModelConfig, TrainConfig)  # Dataset is not a search-space config: it is the data itself


