"""The one place where the CLI turns failures into messages.

Every ``owm``, ``owm-node`` and ``owm-coordinator`` command group uses :class:`OwmGroup`, so
a domain error — a broken rule, or a Bitcoin node, calendar or Lightning node that cannot be
reached (their adapters raise domain errors) — becomes a single ``error: …`` line on stderr
with exit code 2, an operating-system error (a missing file) exit code 1, and no stack trace
reaches the user unless ``OWM_DEBUG=1`` is set.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from owm_core.errors import DomainError

EXIT_RULE = 2
EXIT_ENVIRONMENT = 1


class OwmGroup(click.Group):
    """A click group that renders domain and environment errors as one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DomainError as exc:
            _fail(f"error: {exc.message}", EXIT_RULE)
        except OSError as exc:
            _fail(f"error: {exc.strerror or exc}"
                  + (f": {exc.filename}" if exc.filename else ""), EXIT_ENVIRONMENT)


def _fail(message: str, code: int) -> None:
    if os.environ.get("OWM_DEBUG") == "1":
        raise
    click.echo(message, err=True)
    sys.exit(code)
