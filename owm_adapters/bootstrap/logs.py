"""Logging for the three programs (``owm``, ``owm-node``, ``owm-coordinator``), set up once.

:func:`configure` installs one handler on the root logger, writing to whatever ``sys.stderr``
is when a record is emitted: human-readable lines (``time level logger: message key=value``)
by default, or with ``json`` one JSON object per line holding ``time``, ``level``, ``logger``,
``message`` and every ``extra=`` field (``task_id``, ``node_id``, ``amount_msat``, ``round``...).
The level is the ``--log-level`` flag, else ``$OWM_LOG_LEVEL``, else INFO.

Secrets never reach a log line (SRS-SEC-07): a :class:`RedactingFilter` on that handler masks,
before any formatter runs, the message, the exception text and the extra fields. The rule:

* an extra field whose *name* says it holds a secret (``preimage``, ``macaroon``, ``rune``,
  ``api_key``, ``password``, ``secret``, ``token``, ``authorization``) is masked whatever its
  value;
* in free text, values that are unambiguous secrets are masked wherever they appear: LND
  macaroons (hex starting ``0201``/``0x0201``, or base64 starting ``AgE``), OWM API key secrets
  (``owm_`` and hex), CLN runes (base64url that decodes to a 32-byte authcode followed by
  printable restrictions, at least 43 characters, not plain hex);
* in free text, a value that follows a secret's name (``preimage=…``, ``macaroon: …``,
  ``Bearer …``, ``L402 …``) is masked when it is at least 16 characters with a digit in it.

A bare 64-hex string is *not* masked in free text: payment hashes, task ids and digests have
that shape too and are not secret; code logs a preimage only under one of the names above.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

LOG_LEVEL_ENV = "OWM_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
REDACTED = "[REDACTED]"

_SECRET_NAME = re.compile(
    r"preimage|macaroon|rune|api[_-]?key|password|passwd|secret|token|authorization|cookie",
    re.IGNORECASE,
)
_UNAMBIGUOUS = re.compile(
    r"(?<![0-9A-Za-z])(?:0x)?0201[0-9a-fA-F]{100,}"  # LND macaroon, hex (v2 starts 02 01)
    r"|(?<![0-9A-Za-z+/])AgE[A-Za-z0-9+/_-]{40,}={0,2}"  # LND / L402 macaroon, base64
    r"|(?<![0-9A-Za-z_])owm_[0-9a-fA-F]{16,}"          # OWM API key secret
)
_NAMED_VALUE = re.compile(
    r"(?<![A-Za-z])(?P<name>(?:" + _SECRET_NAME.pattern + r")s?|Bearer|L402|LSAT)"
    r"(?P<sep>[\"']?\s*[=:]?\s*[\"']?)"
    r"(?P<value>(?=[^\s\"',;]*\d)[^\s\"',;]{16,})",
    re.IGNORECASE,
)
_BASE64URL_WORD = re.compile(r"(?<![A-Za-z0-9_=-])[A-Za-z0-9_-]{43,}={0,2}")
_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]+")
_RUNE_AUTHCODE_BYTES = 32
#: Libraries that narrate routine work at INFO (each migration step, each HTTP request): shown
#: at DEBUG only, so an ``owm`` command's stderr holds what the operator needs.
CHATTY_LIBRARIES = ("alembic", "httpx", "httpcore")

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}


def _is_rune(word: str) -> bool:
    """Whether ``word`` reads as a CLN rune: base64url of a 32-byte authcode then restrictions."""
    if _HEX.fullmatch(word):
        return False
    try:
        raw = base64.urlsafe_b64decode(word + "=" * (-len(word) % 4))
    except (binascii.Error, ValueError):
        return False
    restrictions = raw[_RUNE_AUTHCODE_BYTES:]
    return len(raw) >= _RUNE_AUTHCODE_BYTES and all(32 <= b < 127 for b in restrictions)


def redact_text(text: str) -> str:
    """``text`` with every secret-looking value replaced by ``[REDACTED]`` (rule above)."""
    text = _UNAMBIGUOUS.sub(REDACTED, text)
    text = _NAMED_VALUE.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)
    return _BASE64URL_WORD.sub(lambda m: REDACTED if _is_rune(m[0]) else m[0], text)


def redact_value(name: str, value: Any) -> Any:
    """An extra field's value as it may be logged: masked if its name says secret, mappings and
    sequences walked, text scrubbed by :func:`redact_text`."""
    if _SECRET_NAME.search(name):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(name, v) for v in value]
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).hex())
    if isinstance(value, str):
        return redact_text(value)
    return value


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record was given through ``extra=``.

    Private attributes (a leading underscore) are left out: libraries that install a record
    factory, such as Ray's ``_ray_timestamp_ns``, would otherwise print them on every line."""
    return {
        k: v for k, v in vars(record).items()
        if k not in _STANDARD_ATTRIBUTES and not k.startswith("_")
    }


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, exception text and extra fields (SRS-SEC-07).

    The message is rendered once (``msg % args``), scrubbed and frozen into ``msg`` so no
    formatter sees the raw arguments again."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        for name, value in extra_fields(record).items():
            setattr(record, name, redact_value(name, value))
        return True


def _iso_time(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``2026-12-06T18:30:04.123Z INFO owm.payouts: message key=value ...`` (UTC)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_iso_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = " ".join(f"{k}={v}" for k, v in extra_fields(record).items())
        if fields:
            line = f"{line} {fields}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, the extra fields,
    and ``exception`` when there is one. Values JSON cannot hold are written with ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in extra_fields(record).items():
            entry.setdefault(name, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record (test runners swap it), or to a fixed
    stream when given one."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self._fixed = stream

    @property
    def stream(self) -> TextIO:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """StreamHandler's constructor assigns a stream; the property decides instead."""


def resolve_level(level: str | None) -> int:
    """The flag's level, else ``$OWM_LOG_LEVEL``, else INFO (an unknown env value is INFO)."""
    name = (level or os.environ.get(LOG_LEVEL_ENV) or "INFO").upper()
    return logging.getLevelName(name) if name in LEVELS else logging.INFO


def configure(level: str | None = None, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above through the redacting filter to stderr
    (or ``stream``), as text or JSON lines. Called again, it replaces its earlier handler."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(resolve_level(level))
    for library in CHATTY_LIBRARIES:
        logging.getLogger(library).setLevel(
            logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING)
