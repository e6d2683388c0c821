"""One declaration per setting: a field of :class:`rnn_core.config.DataConfig`, :class:`ModelConfig` or
:class:`TrainConfig` with a docstring under it becomes a setting here: the ``train`` command's flag and its help
text, the search-space key with its type and allowed values, and the mapping of a trial's flat config onto the
three configs. Field metadata (all optional): ``choices`` (allowed values), ``flags`` (extra command-line
spellings), ``search=False`` (not a search-space key), ``derived=True`` (set from another config, never by the user).

Imports nothing heavy, so ``rnn-search --help`` stays fast.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from rnn_core.config import CONFIGS


@dataclass(frozen=True)
class Setting:
    """One field of a config, as the CLI and the search space see it."""

    name: str
    owner: type
    type: Any
    """The field's type: int, float, bool, str, str | None, or tuple (seasonal lags)."""
    default: Any
    help: str
    choices: tuple[Any, ...] | None
    flags: tuple[str, ...]
    """Command-line spellings: --field-name first, then any extra ones."""
    searchable: bool
    columns: bool = False
    """A tuple of column names (Dataset's covariates), not of hours."""


@cache
def _docstrings(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it (attribute docstrings, as simple-parsing reads them)."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):  # no source shipped: help texts fall back to the names
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@cache
def settings(cls: type) -> tuple[Setting, ...]:
    """The user-facing settings of one config class (derived fields left out), in declaration order."""
    hints = typing.get_type_hints(cls)
    docs = _docstrings(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("derived"):
            continue
        typ = hints[f.name]
        args = typing.get_args(typ)
        if type(None) in args and len(args) == 2:  # X | None: the flag takes an X; not given, None
            typ = next(a for a in args if a is not type(None))
        if typing.get_origin(typ) is tuple:
            typ = tuple
        out.append(Setting(
            name=f.name, owner=cls, type=typ, default=f.default, help=docs.get(f.name, f.name),
            choices=f.metadata.get("choices"),
            flags=f.metadata.get("cli_flags") or ("--" + f.name.replace("_", "-"), *f.metadata.get("flags", ())),
            searchable=f.metadata.get("search", True), columns=f.metadata.get("names", False),
        ))
    return tuple(out)


def search_keys() -> dict[str, Setting]:
    """Search-space key -> setting: every searchable field of the three configs (names are unique)."""
    return {s.name: s for cls in CONFIGS for s in settings(cls) if s.searchable}


def pick(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of a flat mapping (a trial config, parsed flags) that are fields of ``cls``."""
    names = {s.name for s in settings(cls)}
    return {k: v for k, v in values.items() if k in names}


def check(name: str, value: Any) -> None:
    """Validate one setting's value with its config's own ``__post_init__`` (raises ValueError)."""
    cls = search_keys()[name].owner
    cls(**{name: value})
