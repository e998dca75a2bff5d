"""Click options that more than one command line declares, written once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

Command = TypeVar("Command", bound=Callable[..., Any])


def config_option(help_text: str, default: Path | None = None) -> Callable[[Command], Command]:
    """``--config PATH``, passed as ``config_path``: the TOML file a command reads its settings
    from; ``default`` when not given (None: the embedded defaults), shown in ``--help`` if set."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        help=help_text,
    )
