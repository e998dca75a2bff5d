"""Every ``owm``, ``owm-node`` and ``owm-coordinator`` command the documentation shows exists.

Command lines in fenced code blocks (a line that starts with one of the programs, after a
``$`` prompt, ``VAR=value`` assignments or ``sudo -u USER``) must pass the programs' real click
parsers, values included (tests/command_lines.py); commands named in inline code
(``owm devnet up [--nodes N]``) must name existing subcommands and options. A renamed command
or flag therefore fails here until the docs follow.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.command_lines import (
    CommandLineError,
    check,
    check_mention,
    program_of,
    shell_commands,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md", ROOT / "CONTRIBUTING.md",
               ROOT / "SECURITY.md", ROOT / "deploy" / "README.md"])
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
_SHELL = {"", "sh", "bash", "shell", "console"}
_STARTS_WITH_PROGRAM = re.compile(
    r"^\s*(?:\$\s+)?(?:\w+=\S*\s+)*(?:sudo\s+-u\s+\S+\s+(?:\w+=\S*\s+)*)?(?:\S*/)?"
    r"(?:owm|owm-node|owm-coordinator)(?:\s|$)"
)
_INLINE = re.compile(r"`([^`\n]+)`")
_PLACEHOLDER = re.compile(r"<[^<>\n]+>")


def command_lines(markdown: str) -> list[list[str]]:
    """The argv of every owm command line in ``markdown``'s shell code blocks."""
    found: list[list[str]] = []
    for language, body in _FENCE.findall(markdown):
        if language not in _SHELL:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            # An unlabelled block may be output: only lines that start with a program count.
            if language or _STARTS_WITH_PROGRAM.match(line):
                # `<key>` is a value to fill in, not a redirection.
                found.extend(shell_commands(_PLACEHOLDER.sub("VALUE", line)))
    return found


def mentions(markdown: str) -> list[str]:
    """Inline code spans outside code blocks that start with an owm program."""
    prose = _FENCE.sub("", markdown)
    return [span for span in _INLINE.findall(prose) if program_of(span.split())]


def problems(markdown: str) -> list[str]:
    """Every command of ``markdown`` the programs would refuse, one line each."""
    found = []
    for argv in command_lines(markdown):
        try:
            check(argv)
        except CommandLineError as exc:
            found.append(f"`{' '.join(argv)}`: {exc}")
    for span in mentions(markdown):
        try:
            check_mention(span)
        except CommandLineError as exc:
            found.append(f"`{span}`: {exc}")
    return found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_a_document_shows_is_accepted_by_the_programs(path: Path) -> None:
    wrong = problems(path.read_text(encoding="utf-8"))
    assert not wrong, f"{path.relative_to(ROOT)}:\n" + "\n".join(wrong)


def test_the_documents_show_commands_of_all_three_programs() -> None:
    shown = {program_of(argv) for path in DOCS
             for argv in command_lines(path.read_text(encoding="utf-8"))}
    assert shown == {"owm", "owm-node", "owm-coordinator"}


def test_a_renamed_flag_or_command_in_a_document_is_found() -> None:
    markdown = (
        "Run\n\n```sh\n$ OWM_LOG_LEVEL=debug owm-node start --configuration owm.toml\n"
        "sudo -u owm /opt/owm/bin/owm-coordinator upgrade\n```\n\n"
        "then `owm devnet up --node-count 3`.\n"
    )
    wrong = problems(markdown)
    assert len(wrong) == 3, wrong
    assert "No such option '--configuration'" in wrong[0]
    assert "no such command 'upgrade'" in wrong[1]
    assert "no option --node-count" in wrong[2]


def test_output_and_other_programs_in_code_blocks_are_not_taken_for_commands() -> None:
    markdown = (
        "```\nkrum  flower 3.1 s | owm 0.099 s\n```\n\n```toml\n[node]\ndata_dir = \"x\"\n```\n\n"
        "```sh\nlncli bakemacaroon --save_to owm.macaroon\n```\n"
    )
    assert command_lines(markdown) == []
