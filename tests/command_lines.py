"""Finding ``owm``, ``owm-node``, ``owm-coordinator`` and ``owm-mine`` command lines in shell
text, and checking each against the real click programs' parsers, so that a renamed command or
flag breaks the tests of every file that shows one (deploy/, docs/).

:func:`check` parses like click does at run time (option names, their arity, choices, required
and extra arguments) without invoking anything; values of ``click.Path`` options are not looked
up on disk, as the paths belong to the machine the line is meant for.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath

import click

from owm_cli import coordinator, main, mine, node

PROGRAMS: dict[str, click.Command] = {
    "owm": main.cli,
    "owm-node": node.cli,
    "owm-coordinator": coordinator.cli,
    "owm-mine": mine.cli,
}
_SEPARATORS = set(";&|()")
_PREFIXES = {"exec", "sudo", "nohup", "time", "env", "command", "then", "do", "!", "$"}
_REDIRECTION = re.compile(r"^\d*(>>?|<)(&\d)?")


class CommandLineError(AssertionError):
    """A command line the program would refuse, naming the command and the reason."""


def program_of(argv: Sequence[str]) -> str | None:
    """``owm-node`` for ``/opt/owm/bin/owm-node …``; None when the line runs something else."""
    if not argv:
        return None
    name = PurePosixPath(argv[0]).name
    return name if name in PROGRAMS else None


def shell_commands(script: str) -> Iterator[list[str]]:
    """The argv of every owm program a POSIX shell snippet runs (``a && b; exec c``), with
    leading ``VAR=value`` assignments, ``exec``/``sudo -u USER`` and the like stripped.
    Backslash-newline continues a line; ``#`` starts a comment; redirections are dropped."""
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        segment: list[str] = []
        skip_next = False
        for token in [*lexer, ";"]:
            if skip_next:
                skip_next = False
            elif token and set(token) <= _SEPARATORS:
                argv = _strip_prefixes(segment)
                if program_of(argv):
                    yield argv
                segment = []
            elif match := _REDIRECTION.match(token):
                skip_next = match.end() == len(token)  # `> file`: the target is the next word
            else:
                segment.append(token)


def _strip_prefixes(words: list[str]) -> list[str]:
    rest = list(words)
    while rest:
        head = rest[0]
        if head in _PREFIXES:
            rest = rest[3:] if head == "sudo" and rest[1:2] == ["-u"] else rest[1:]
        elif "=" in head and not head.startswith("-") and head.split("=")[0].isidentifier():
            rest = rest[1:]
        else:
            break
    return rest


def check(argv: Sequence[str]) -> str:
    """The command ``argv`` runs (``owm-node start``); :class:`CommandLineError` unless its
    program accepts it."""
    name = program_of(argv)
    if name is None:
        raise CommandLineError(f"{argv[0] if argv else '(empty)'}: not an OWM program")
    command = PROGRAMS[name]
    path = [name]
    args = list(argv[1:])
    parent: click.Context | None = None
    while True:
        ctx = click.Context(command, info_name=path[-1], parent=parent,
                            **command.context_settings)
        where = " ".join(path)
        try:
            options, rest, _order = command.make_parser(ctx).parse_args(args)
        except click.UsageError as exc:
            raise CommandLineError(f"{where}: {exc.message}") from None
        _check_values(ctx, command, options, where)
        if options.get("help"):
            return where
        if not isinstance(command, click.Group):
            if rest:
                raise CommandLineError(f"{where}: unexpected extra arguments {rest}")
            return where
        if not rest:
            return where
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            raise CommandLineError(f"{where}: no such command {rest[0]!r}")
        command, parent, args = sub, ctx, rest[1:]
        path.append(rest[0])


def _check_values(
    ctx: click.Context, command: click.Command, options: dict[str, object], where: str
) -> None:
    for param in command.get_params(ctx):
        value = options.get(param.name) if param.name else None
        if value is None:
            if isinstance(param, click.Argument) and param.required:
                raise CommandLineError(f"{where}: missing argument {param.human_readable_name}")
            continue
        if isinstance(param.type, click.Path) or getattr(param, "is_flag", False):
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            try:
                param.type.convert(item, param, ctx)
            except click.BadParameter as exc:
                raise CommandLineError(f"{where}: {param.opts[0]}: {exc.message}") from None


def check_mention(span: str) -> str:
    """Check a command as prose mentions it (``owm devnet up [--nodes N]``, ``owm-node
    --log-level``): its subcommands exist and every ``--option`` it names belongs to one of the
    commands on its path; values, metavariables and arity are not checked. Returns the
    command path; raises :class:`CommandLineError`."""
    words = span.replace("[", " ").replace("]", " ").replace("|", " ").split()
    name = program_of(words)
    if name is None:
        raise CommandLineError(f"{span}: not an OWM program")
    command = PROGRAMS[name]
    path, options = [name], _option_names(command)
    subcommands_open = True
    for word in words[1:]:
        if word.startswith("--"):
            option = word.partition("=")[0]
            if option not in options:
                raise CommandLineError(f"{' '.join(path)}: no option {option} (in `{span}`)")
            subcommands_open = False
        elif subcommands_open and isinstance(command, click.Group) and re.fullmatch(
            r"[a-z][a-z0-9-]*", word
        ):
            sub = command.get_command(click.Context(command), word)
            if sub is None:
                raise CommandLineError(f"{' '.join(path)}: no such command {word!r} (in `{span}`)")
            command = sub
            path.append(word)
            options |= _option_names(sub)
        else:
            subcommands_open = False
    return " ".join(path)


def _option_names(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
    return names
