"""Every reported epoch stays in a trial's history (result.json, progress.csv), across trial restarts.

When a trial restarts (its node was lost, its worker crashed), Tune's JSON and CSV loggers copy the trial's
result file from the run's storage over the driver's own copy before they append. The storage copy is only as
new as the last sync, so the epochs reported since then vanish from the history that best, plots and summaries
read (seen after node loss: epochs 1, 2, 3, 6, ..., 12). These loggers keep the driver's own file where it has
one: it already holds every line this driver wrote; the storage copy is used only by a driver that has none
(a resume elsewhere), cut back to its last whole line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback


class _KeepLocal:
    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        local = Path(trial.local_path, file_name)
        if local.is_file() and local.stat().st_size > 0:
            return
        super()._restore_from_remote(file_name, trial)  # type: ignore[misc]
        drop_torn_line(local)


def drop_torn_line(path: Path) -> None:
    """Cut a file back to its last whole line: a copy torn by a full disk or a kill would otherwise have the
    next report appended to half a line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class JsonHistory(_KeepLocal, JsonLoggerCallback):
    """Tune's result.json logger, keeping the driver's own lines on a trial restart."""


class CsvHistory(_KeepLocal, CSVLoggerCallback):
    """Tune's progress.csv logger, keeping the driver's own lines on a trial restart."""


__all__ = ["CsvHistory", "JsonHistory"]
