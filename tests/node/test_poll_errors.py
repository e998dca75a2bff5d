"""A watcher's failed poll is logged and never ends its thread: a domain error as a warning
with its message, anything else with its traceback (the weights watcher and the payout
invoicer share :func:`~owm_adapters.node.context.poll_errors_logged`)."""

from __future__ import annotations

import logging

import pytest

from owm_adapters.node.context import poll_errors_logged
from owm_core.errors import InvalidValue

LOG = logging.getLogger("tests.node.poll")


def test_a_domain_error_in_a_poll_is_a_warning_with_its_message_and_the_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, LOG.name), poll_errors_logged(LOG, "watcher", "n-1"):
        raise InvalidValue("release", "is not a version")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "watcher: release: is not a version"
    assert (record.__dict__["node_id"], record.__dict__["error"]) == (
        "n-1", "release: is not a version")
    assert record.exc_info is None


def test_any_other_error_in_a_poll_is_logged_with_its_traceback_and_goes_no_further(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, LOG.name), poll_errors_logged(LOG, "watcher", "n-1"):
        raise OSError("disk full")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "watcher poll failed"
    assert record.__dict__["node_id"] == "n-1"
    assert record.exc_info is not None and isinstance(record.exc_info[1], OSError)
