"""The search's error: one line that says what to do (the CLI prints it and exits 2)."""

from __future__ import annotations

from rnn_core.errors import UserError


class SearchError(UserError):
    """A search that cannot start or resume; the message says what to do."""
