"""Settings: the TOML configuration of a node or coordinator, read at the edge.

Structuring rules live here (cattrs), never on domain classes. Every key is optional and has a
documented default, so an empty file — or no file — gives a working local setup. Unknown keys
and wrong types are reported with their dotted path (``node.health_port: …``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs

from owm_core.errors import DomainError


class ConfigError(DomainError):
    """The configuration file is missing, not TOML, or has a wrong or unknown key."""

    code = "config"


@attrs.frozen
class NodeSection:
    """Where the node keeps its state and how it presents itself (SRS-NODE-01/02/08)."""

    data_dir: str = "~/.owm"
    identity_key: str = "~/.owm/identity.key"
    health_port: int = 8080
    bandwidth_mbps: int = 100


@attrs.frozen
class CoordinatorLink:
    """How the node reaches the coordinator's gRPC control plane (SRS-NET-02)."""

    url: str = "127.0.0.1:50051"
    socks5_proxy: str | None = None


@attrs.frozen
class NodeLightning:
    """The node's own Lightning node, where rewards are paid (SRS-LN-02)."""

    node_uri: str = ""


@attrs.frozen
class NodeSettings:
    """The whole ``owm.toml`` of a node daemon."""

    node: NodeSection = NodeSection()
    coordinator: CoordinatorLink = CoordinatorLink()
    lightning: NodeLightning = NodeLightning()


_converter = cattrs.Converter(forbid_extra_keys=True)
_T = TypeVar("_T")


def load_node_settings(path: Path | None) -> NodeSettings:
    """Read a node configuration; ``None`` means all defaults."""
    return _load(path, NodeSettings)


def _load(path: Path | None, kind: type[_T]) -> _T:
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"no configuration file at {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return _converter.structure(raw, kind)
    except cattrs.BaseValidationError as exc:
        details = "; ".join(_describe(exc))
        raise ConfigError(f"{path}: {details}") from None


def _describe(exc: cattrs.BaseValidationError) -> list[str]:
    """Turn a cattrs error tree into ``dotted.path: message`` lines."""
    lines = []
    for text in cattrs.transform_error(exc, path=""):
        message, _, where = text.rpartition(" @ ")
        lines.append(f"{where.lstrip('.') or '(top level)'}: {message}")
    return lines


def _strict_scalar(kind: type) -> Any:
    """TOML already types its values; refuse coercions such as '80' → 80 or 1.5 → 1."""

    def structure(value: Any, _type: Any) -> Any:
        if type(value) is not kind:
            raise ValueError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return structure


for _kind in (int, str, bool, float):
    _converter.register_structure_hook(_kind, _strict_scalar(_kind))


NODE_TEMPLATE = """\
# owm.toml: configuration of an OWM node daemon (`owm-node start --config owm.toml`).
# Every key is optional; the values shown are the defaults.

[node]
# Where the task log, model cache and other state live.
data_dir = "{data_dir}"
# The Ed25519 identity (SRS-NODE-02). OWM_IDENTITY_KEY_PATH overrides this path.
# The key never leaves this machine: the coordinator only sees signatures (SRS-SEC-03).
identity_key = "{identity_key}"
# Local health endpoint, bound to 127.0.0.1 only (SRS-NODE-08).
health_port = 8080
# Your uplink estimate in Mbit/s, published in the capability manifest (SRS-NODE-04).
bandwidth_mbps = 100

[coordinator]
# gRPC control plane of the coordinator (host:port).
url = "127.0.0.1:50051"
# Route control-plane traffic through Tor (SRS-NET-02). FL uploads and weight
# downloads never use this proxy (SRS-NET-04).
# socks5_proxy = "127.0.0.1:9050"

[lightning]
# Your Lightning node's URI, where rewards are paid: pubkey@host:port (SRS-LN-02).
node_uri = ""
"""
