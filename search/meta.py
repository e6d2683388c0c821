"""The experiment's own record, rnn_search.json: how it was made (preset, space, seed, data, epochs, metric, the
run's id), read back by --resume, best, export and test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from search import storage
from search.errors import SearchError

METRIC, MODE = "val_loss", "min"  # the default search metric (search.tuner.search_metric) and its direction


def data_file(data_path: str | None) -> str | None:
    """--data as an absolute path (a run resumed from another folder finds it); None: the usual lookup."""
    return str(Path(data_path).expanduser().resolve()) if data_path else None


META_FILE = "rnn_search.json"


def write_experiment_meta(path: str, meta: dict[str, Any]) -> None:
    """Record how the experiment was made (local or remote), so that --resume can rebuild the same trainable
    and best/export/test rank trials by the metric it was searched on; ``meta["run_id"]`` names this run
    instance (a remote study's local working copy is keyed by it)."""
    storage.write_text(storage.join(path, META_FILE), json.dumps(meta, indent=1))


def experiment_metric(path: str) -> str:
    """The metric an experiment was searched on (from its rnn_search.json; val_loss if unknown)."""
    try:
        return str(experiment_meta(path).get("metric", METRIC))
    except SearchError:
        return METRIC


def experiment_meta(path: str) -> dict[str, Any]:
    """The run's rnn_search.json, checked: one line naming the file and field when it is not what tune wrote."""
    where = storage.join(path, META_FILE)
    text = storage.read_text(where)
    if text is None:
        raise SearchError(f"{path}: no {META_FILE}; it was not made by rnn-search tune")
    try:
        meta = json.loads(text)
        missing = [k for k in ("preset", "seed", "data", "data_path", "max_epochs", "report_every", "checkpoint_every")
                   if k not in meta]
    except (ValueError, TypeError):
        raise SearchError(f"{where}: not readable JSON (torn or edited?)") from None
    if missing:
        raise SearchError(f"{where}: lacks the field(s) {', '.join(missing)}")
    return meta
