"""Where settings come from besides the TOML file: the environment, and the file's own mode.

**Environment scheme.** ``OWM_<SECTION>__<KEY>`` (upper case, *two* underscores between the
section and the key) sets ``[section] key``: ``OWM_FUNDING__MAX_PRICE_MSAT=5000`` is
``[funding] max_price_msat = 5000``. ``DATABASE_URL`` sets ``[coordinator] database_url`` (spec
§10.3); ``OWM_COORDINATOR__DATABASE_URL`` wins over it when both are set.
Precedence: environment > file > defaults. The value is read as the key's declared type:

* integers in decimal (``-1``, ``5000``), floats as Python writes them (``0.1``);
* booleans ``true``/``false``/``1``/``0``/``yes``/``no``/``on``/``off`` (any case);
* strings as they are; an optional string (``socks5_proxy``) is unset by an empty value;
* lists either as a JSON array of strings (``["a","b"]``) or comma-separated (``a,b``;
  spaces around items are dropped, an empty value is the empty list).

A value that does not read as its type is refused naming the variable and the key
(``OWM_FUNDING__MAX_PRICE_MSAT (funding.max_price_msat): must be an integer``). A variable of
the scheme that names no key of either program (a typo such as ``OWM_FUNDNG__FEE_PPM``) is
refused too, so a setting never silently does nothing; one that names a key of the *other*
program (``OWM_FUNDING__FEE_PPM`` in a node's environment) is ignored, so a node and a
coordinator can share one environment. The older single-purpose variables
(``OWM_COORDINATOR_URL``, ``OWM_IDENTITY_KEY_PATH``, ``OWM_MODEL_CACHE_DIR``,
``OWM_LOG_LEVEL``, spec §10.3) have one underscore, are not of this scheme and keep working.

**Secrets in files.** A configuration file that holds a secret inline — a key of
:data:`SECRET_KEYS` with a value, or any URL with a password in it (``postgresql://u:pw@h/db``)
— must be readable by its owner only; otherwise the program refuses to start, naming the file,
the key (never the value) and the fix, ``chmod 600 <file>``. Paths to secret files (macaroons,
runes, API-key files) are not secrets themselves.
"""

from __future__ import annotations

import json
import stat
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin
from urllib.parse import urlsplit

import attrs

PREFIX = "OWM_"
SEPARATOR = "__"
DATABASE_URL_ENV = "DATABASE_URL"
#: Keys whose value is itself a secret (``section.key``); URLs with passwords are found anyway.
SECRET_KEYS = frozenset({"chain.rpc_password", "governance.rpc_password"})
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class SourceError(ValueError):
    """An environment variable or a file's mode the settings cannot be read with."""


def env_variable(section: str, key: str) -> str:
    """The environment variable that sets ``[section] key``."""
    return f"{PREFIX}{section.upper()}{SEPARATOR}{key.upper()}"


def apply_environment(
    raw: dict[str, Any], kind: type, others: tuple[type, ...], environ: Mapping[str, str]
) -> dict[str, Any]:
    """``raw`` (the parsed TOML) with every ``OWM_<SECTION>__<KEY>`` of ``environ`` applied.

    ``kind`` is the settings class being read; ``others`` are the other programs' settings
    classes, whose variables are ignored rather than refused as typos.
    """
    merged = {name: dict(value) if isinstance(value, dict) else value
              for name, value in raw.items()}
    fields = _fields_by_variable(kind)
    foreign = {name for other in others for name in _fields_by_variable(other)}
    chosen = dict(environ)
    database_url = env_variable("coordinator", "database_url")
    if DATABASE_URL_ENV in chosen and database_url in fields:
        chosen.setdefault(database_url, chosen[DATABASE_URL_ENV])
    for name in sorted(chosen):
        if not name.startswith(PREFIX) or SEPARATOR not in name[len(PREFIX):]:
            continue
        if name not in fields:
            if name in foreign:
                continue
            raise SourceError(
                f"{name}: no such setting (the scheme is OWM_<SECTION>__<KEY>, e.g. "
                f"{env_variable('node', 'health_port')})"
            )
        section, key, declared = fields[name]
        try:
            value = _parse(chosen[name], declared)
        except ValueError as exc:
            raise SourceError(f"{name} ({section}.{key}): {exc}") from None
        target = merged.setdefault(section, {})
        if not isinstance(target, dict):
            raise SourceError(f"{section}: must be a table")
        target[key] = value
    return merged


def refuse_readable_secrets(path: Path, raw: Mapping[str, Any]) -> None:
    """Refuse a file that holds a secret inline and that group or others may read."""
    held = secret_keys_in(raw)
    if not held:
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SourceError(
            f"{path} holds a secret ({', '.join(held)}) but is readable by group or others "
            f"(mode {mode:04o}): run chmod 600 {path}"
        )


def secret_keys_in(raw: Mapping[str, Any]) -> list[str]:
    """The dotted keys of ``raw`` whose values are secrets (never the values)."""
    found = []
    for section, table in raw.items():
        if not isinstance(table, dict):
            continue
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if not isinstance(value, str) or not value:
                continue
            if dotted in SECRET_KEYS or _url_with_password(value):
                found.append(dotted)
    return found


def _url_with_password(value: str) -> bool:
    if "://" not in value:
        return False
    try:
        return bool(urlsplit(value).password)
    except ValueError:
        return False


def _sections(kind: type) -> dict[str, type]:
    return {field.name: field.type for field in attrs.fields(attrs.resolve_types(kind))}


def _fields_by_variable(kind: type) -> dict[str, tuple[str, str, Any]]:
    """``OWM_<SECTION>__<KEY>`` → (section, key, declared type) for every key of ``kind``."""
    result = {}
    for section, section_type in _sections(kind).items():
        for field in attrs.fields(attrs.resolve_types(section_type)):
            result[env_variable(section, field.name)] = (section, field.name, field.type)
    return result


def _parse(text: str, declared: Any) -> Any:
    """``text`` read as ``declared`` (see the module docstring for the forms)."""
    origin = get_origin(declared)
    if origin in (Union, types.UnionType):
        inner = [arg for arg in get_args(declared) if arg is not type(None)]
        return None if text == "" else _parse(text, inner[0])
    if origin in (list, tuple):
        return _parse_list(text)
    if declared is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ValueError("must be a boolean (true/false, 1/0, yes/no, on/off)")
    if declared is int:
        try:
            return int(text.strip(), 10)
        except ValueError:
            raise ValueError("must be an integer") from None
    if declared is float:
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError("must be a number") from None
    return text


def _parse_list(text: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError:
            raise ValueError("must be a JSON array of strings or comma-separated") from None
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValueError("must be a JSON array of strings or comma-separated")
        return items
    return [item.strip() for item in stripped.split(",") if item.strip()]
