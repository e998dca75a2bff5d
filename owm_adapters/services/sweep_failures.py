"""What a periodic sweep could not do for one item, logged once while it stays the same.

A sweep that meets an item it cannot handle (a payee whose node has not handed in an invoice
yet, a stake whose check fails on its own, a payment an adapter answers with an error) goes on
to the others and tries that item again next pass: one item must not hold back every item
after it, pass after pass. Each pass would log the same line again; :class:`SweepFailures` logs
an item's failure when it is new or has changed, so a log shows each problem once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from owm_core.errors import StoreUnavailable

KEPT = 10_000
"""Items whose last failure is remembered; past that the memory starts afresh."""


@attrs.define(eq=False)
class SweepFailures:
    """Logs to ``log`` at ``level`` what a sweep could not do, once per item and failure."""

    _log: logging.Logger
    _level: int = logging.WARNING
    _last: dict[str, str] = attrs.field(init=False, factory=dict)

    def failed(
        self, item: str, message: str, *, kind: str | None = None, exc_info: bool = False
    ) -> None:
        """``item`` failed with ``message``: logged unless its last failure logged was of the
        same ``kind`` (default: the same message; a kind for messages that carry changing
        figures); ``exc_info``: with the exception being handled."""
        kind = message if kind is None else kind
        if self._last.get(item) == kind:
            return
        if len(self._last) >= KEPT:
            self._last.clear()
        self._last[item] = kind
        self._log.log(self._level, "%s", message, exc_info=exc_info)

    def succeeded(self, item: str) -> None:
        """``item`` went through: a later failure of it is news again."""
        self._last.pop(item, None)

    def attempt(self, item: str, what: str, step: Callable[[], object]) -> bool:
        """Run ``step``, the sweep's work on ``item`` (``what`` names it in the log): whether
        it went through. A failure is logged with its traceback, once while of the same kind,
        and the sweep goes on to the next item; only the database out of reach
        (``StoreUnavailable``) ends the sweep, as no item can move then."""
        try:
            step()
        except StoreUnavailable:
            raise
        except Exception as error:
            kind = type(error).__name__
            self.failed(item, f"{what}: failed ({kind}), tried again next sweep", kind=kind,
                        exc_info=True)  # fmt: skip
            return False
        self.succeeded(item)
        return True
