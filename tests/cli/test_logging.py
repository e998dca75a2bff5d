"""``owm``, ``owm-node`` and ``owm-coordinator`` configure logging at start: human-readable
lines by default, ``--log-format json`` for one JSON object per line with the ``extra=`` fields,
``--log-level`` (which wins over ``$OWM_LOG_LEVEL``), and secrets masked (SRS-SEC-07)."""

from __future__ import annotations

import json
import logging
import re

import pytest
from click.testing import CliRunner

from owm_cli.coordinator import cli as coordinator_cli
from owm_cli.main import cli as owm_cli
from owm_cli.node import cli as node_cli

PROGRAMS = {"owm": (owm_cli, "ots"), "owm-node": (node_cli, "init"),
            "owm-coordinator": (coordinator_cli, "init")}


def _start(program: str, *options: str) -> None:
    """Runs the program's group callback (a subcommand's ``--help`` stops right after it)."""
    group, subcommand = PROGRAMS[program]
    result = CliRunner().invoke(group, [*options, subcommand, "--help"])
    assert result.exit_code == 0, result.output


def _emit() -> None:
    log = logging.getLogger("owm.test")
    log.debug("debug detail")
    log.info("payment %s settled", "ab" * 32,
             extra={"task_id": "t-1", "node_id": "n-1", "amount_msat": 5000, "round": 3})
    log.warning("something odd")


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_json_format_writes_one_object_per_line_with_the_extra_fields(
    program: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _start(program, "--log-format", "json", "--log-level", "debug")
    capsys.readouterr()
    _emit()
    lines = capsys.readouterr().err.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["level"] for e in entries] == ["DEBUG", "INFO", "WARNING"]
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    info = entries[1]
    assert info["logger"] == "owm.test" and info["message"] == f"payment {'ab' * 32} settled"
    assert (info["task_id"], info["node_id"], info["amount_msat"], info["round"]) == (
        "t-1", "n-1", 5000, 3)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info["time"])


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_the_default_format_is_text_with_time_level_and_logger(
    program: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _start(program)
    capsys.readouterr()
    _emit()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines  # INFO by default: the debug line is filtered
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT[\d:.]+Z INFO owm\.test: payment [0-9a-f]{64} settled "
        r"task_id=t-1 node_id=n-1 amount_msat=5000 round=3", lines[0])
    assert " WARNING owm.test: something odd" in lines[1]


def test_log_level_filters_and_wins_over_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWM_LOG_LEVEL", "DEBUG")
    _start("owm-node")
    capsys.readouterr()
    _emit()
    assert len(capsys.readouterr().err.splitlines()) == 3
    _start("owm-node", "--log-level", "WARNING")
    capsys.readouterr()
    _emit()
    assert [line.split()[1] for line in capsys.readouterr().err.splitlines()] == ["WARNING"]


def test_an_unknown_log_format_is_a_one_line_error() -> None:
    result = CliRunner().invoke(owm_cli, ["--log-format", "xml", "ots", "--help"])
    assert result.exit_code != 0 and "xml" in result.output


def test_private_attributes_a_library_adds_to_every_record_are_not_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray installs a record factory that adds ``_ray_timestamp_ns`` to every record."""
    plain = logging.getLogRecordFactory()

    def stamped(*args: object, **kwargs: object) -> logging.LogRecord:
        record = plain(*args, **kwargs)
        record._library_timestamp_ns = 1  # type: ignore[attr-defined]
        return record

    monkeypatch.setattr(logging, "_logRecordFactory", stamped)
    _start("owm")
    capsys.readouterr()
    _emit()
    assert "_library_timestamp_ns" not in capsys.readouterr().err
