"""Command-line flags made from the config dataclasses' fields (name, type, choices, default, docstring): a new
setting in rnn_core/config.py or search/options.py is a new flag here, with its help. Used by search.cli only."""

from __future__ import annotations

import argparse
from typing import Any

from rnn_core.config import SPLIT_FIELDS, parse_lags, split_kwargs
from rnn_core.settings import Setting, settings

#: Option groups by what they set, not by class name.
GROUPS = {"DataConfig": "windows and splits", "ModelConfig": "the network", "TrainConfig": "training",
          "SearchOptions": "the search"}


def argtype(fn: Any, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = what
    return parse


def add_setting(p: argparse.ArgumentParser, s: Setting, note: str = "") -> None:
    text = s.help.rstrip(".") + note
    if s.type is bool:
        if s.default:  # a switch that turns an on-by-default setting off
            p.add_argument("--no-" + s.flags[0][2:], dest=s.name, action="store_false",
                           help=f"turn off (on by default): {text[:1].lower()}{text[1:]}")
        else:
            p.add_argument(*s.flags, dest=s.name, action="store_true", help=text)
        return
    # a None default means "not given": the help says what happens then
    kw: dict[str, Any] = {"dest": s.name, "default": s.default,
                          "help": text + (" (default: %(default)s)" if s.default is not None else "")}
    if s.type is tuple and s.columns:
        kw.update(type=argtype(texts, "columns"), metavar="COL,COL", help=text + " (default: none)")
    elif s.type is tuple:
        kw.update(type=argtype(parse_lags, "steps"), metavar="S,S", help=text + " (default: none)")
    elif s.choices:
        kw.update(choices=s.choices)
    else:  # named after the flag, not the field (--time-budget TIME_BUDGET, not TIME_BUDGET_MIN)
        kw.update(type=s.type, metavar=s.flags[0][2:].upper().replace("-", "_"))
    p.add_argument(*s.flags, **kw)


def add_settings(p: argparse.ArgumentParser, cls: type, note: str = "") -> None:
    """One flag per setting of a config class; the four split fields are the one flag --split."""
    group = p.add_argument_group(f"{GROUPS.get(cls.__name__, cls.__name__)}: {(cls.__doc__ or '').split('.')[0].lower()}")
    for s in settings(cls):
        if s.name == "split":
            group.add_argument("--split", dest="split_fields", type=argtype(split_kwargs, "split"), default="default",
                               metavar="SPLIT", help=split_help())
        elif s.name not in SPLIT_FIELDS:
            add_setting(group, s, note)


def split_help() -> str:
    from rnn_core.config import DataConfig as D
    from rnn_core.settings import settings as fields

    return next(s.help for s in fields(D) if s.name == "split") + " (default: default)"


def levels(text: str) -> tuple[float, ...]:
    from rnn_core.intervals import check_levels

    try:
        return check_levels([float(v) for v in text.split(",")])
    except ValueError:
        raise ValueError(f"expected levels between 0 and 1 such as 0.8,0.95, got {text!r}") from None


def texts(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
