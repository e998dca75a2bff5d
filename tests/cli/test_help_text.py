"""Every command of ``owm``, ``owm-node``, ``owm-coordinator`` and ``owm-mine`` explains every
option and argument, and no help text names an option its command does not have (SRS 4.1)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from owm_cli import coordinator, main, mine, node

_OPTION_TOKEN = re.compile(r"(?<![\w`-])--[a-z][a-z0-9-]*")


def _walk(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield path, command
            yield from _walk(command, path)
        else:
            yield path, command


def _all_commands() -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for group, prog in ((main.cli, "owm"), (node.cli, "owm-node"),
                        (coordinator.cli, "owm-coordinator"), (mine.cli, "owm-mine")):
        found.append((prog, group))
        found.extend(_walk(group, prog))
    return found


_COMMANDS = _all_commands()
_BY_PATH = dict(_COMMANDS)


def _own_options(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
    return names


def _texts(command: click.Command) -> list[str]:
    texts = [command.help or "", command.epilog or ""]
    texts += [p.help or "" for p in command.params if isinstance(p, click.Option)]
    return texts


_INVOCATION = re.compile(r"(?<![\w-])((?:owm-node|owm-coordinator|owm)(?: [a-z][a-z-]*)*)")


def _mentions(text: str) -> Iterator[tuple[str | None, str]]:
    """(the command a mention belongs to, or None for the documented command itself; the
    option) for every ``--option`` in ``text``. An option after ``owm … sub`` on the same line
    (an example command line) belongs to the longest such command that exists."""
    for match in _OPTION_TOKEN.finditer(text):
        line = text[: match.start()].rpartition("\n")[2]
        invocations = _INVOCATION.findall(line)
        owner = None
        if invocations:
            words = invocations[-1].split()
            while words and " ".join(words) not in _BY_PATH:
                words.pop()
            owner = " ".join(words)
        yield owner, match.group(0)


@pytest.mark.parametrize("path,command", _COMMANDS, ids=[p for p, _ in _COMMANDS])
def test_every_option_of_every_command_has_help_text(path, command):
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{path} {param.opts[0]} has no help text"


@pytest.mark.parametrize("path,command", _COMMANDS, ids=[p for p, _ in _COMMANDS])
def test_every_argument_of_every_command_is_explained_in_its_help(path, command):
    for param in command.params:
        if isinstance(param, click.Argument):
            metavar = param.make_metavar(click.Context(command)).rstrip(".").rstrip("…")
            assert metavar.strip("[]") in (command.help or ""), (
                f"{path}: argument {metavar} is not explained in its help"
            )


@pytest.mark.parametrize("path,command", _COMMANDS, ids=[p for p, _ in _COMMANDS])
def test_no_help_text_names_an_option_the_command_does_not_have(path, command):
    for text in _texts(command):
        for owner, option in _mentions(text):
            target = _BY_PATH[owner] if owner else command
            assert option in _own_options(target), (
                f"{path}: help text names {option}, which {owner or path} does not have"
            )


@pytest.mark.parametrize("group,prog", [(main.cli, "owm"), (node.cli, "owm-node"),
                                        (coordinator.cli, "owm-coordinator")])
def test_the_documented_shell_completion_variables_produce_a_bash_script(group, prog):
    variable = "_" + prog.upper().replace("-", "_") + "_COMPLETE"
    result = CliRunner().invoke(group, [], env={variable: "bash_source"}, prog_name=prog)
    assert result.exit_code == 0, result.output
    assert f"complete -o nosort -F _{prog.replace('-', '_')}_completion {prog}" in result.stdout
