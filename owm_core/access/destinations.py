"""Where a task may send a node: no server-side request forgery through task URLs.

A task's upload or download URL makes a node (or the coordinator) open a connection. Left
free, a submitter could aim nodes at their own loopback services, at private networks or at a
cloud provider's metadata service. This module owns the two rules that prevent it, over URL
parts that an adapter has already split (SRS-SEC-06: all inputs validated):

* **Own origin only** (:func:`require_own_origin`): an upload or download URL is accepted only
  when its :class:`Origin` (scheme, host, port) equals the coordinator's advertised API origin.
* **No internal targets** (:meth:`DestinationPolicy.check`): a node refuses loopback, private,
  link-local, unspecified, multicast, reserved and cloud-metadata addresses (169.254.169.254,
  fd00:ec2::254, the ``metadata.google.internal`` name), however spelled: IPv4-mapped,
  IPv4-compatible, 6to4, Teredo and NAT64 IPv6 forms are unwrapped, and IPv4 hosts written the
  way ``inet_aton`` reads them (``2130706433``, ``0x7f000001``, ``0177.1``, ``127.1``) are
  parsed as the addresses they are. A host *name* is judged by every address it resolves to
  (the adapter resolves it and must then connect to a checked address). The devnet, which runs
  on one machine, passes an explicit allowance (:meth:`DestinationPolicy.devnet`).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue, PolicyViolation

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
"""Cloud instance-metadata services (AWS/GCP/Azure IPv4, AWS IPv6): never a task target."""
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata"})
DEFAULT_PORTS = {"http": 80, "https": 443}

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
_NUMERIC_LOOKING = re.compile(r"[0-9][0-9a-fA-FxX]*(\.[0-9a-fA-FxX]*)*\.?")


class TargetKind(enum.Enum):
    """What kind of network an address belongs to; only ``PUBLIC`` is open by default."""

    PUBLIC = "public"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link-local"
    UNSPECIFIED = "unspecified"
    MULTICAST = "multicast"
    RESERVED = "reserved"
    METADATA = "cloud-metadata"


def _number(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:], 16)
    return int(part, 8) if part.startswith("0") else int(part)


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """Read ``host`` as ``inet_aton`` would: 1–4 dot-separated decimal, octal or hex numbers."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER.fullmatch(p) for p in parts):
        return None
    numbers = [_number(p) for p in parts]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 1 << (8 * (5 - len(parts))):
        return None
    value = last
    for i, n in enumerate(head):
        value |= n << (24 - 8 * i)
    return ipaddress.IPv4Address(value)


def parse_ip_host(host: str) -> IPAddress | None:
    """The address a URL host denotes if it is an IP literal in any spelling, else ``None``.

    A host that looks numeric but is no valid address (``1.2.3.999``) is refused rather than
    handed to a resolver whose reading might differ.
    """
    if not isinstance(host, str) or not host:
        raise InvalidValue("host", "must be non-empty text")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if ":" in bare:
        raise InvalidValue("host", f"{host!r} is not a valid IPv6 address")
    address = _inet_aton(bare.rstrip("."))
    if address is None and _NUMERIC_LOOKING.fullmatch(bare):
        raise InvalidValue("host", f"{host!r} looks like an IPv4 address but is not one")
    return address


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def classify(address: IPAddress) -> TargetKind:
    """The kind of network ``address`` reaches, judging an embedded IPv4 address too."""
    inner = embedded_ipv4(address)
    if inner is not None:
        kind = classify(inner)
        if kind is not TargetKind.PUBLIC:
            return kind
    checks = (
        (address in METADATA_ADDRESSES, TargetKind.METADATA),
        (address.is_unspecified, TargetKind.UNSPECIFIED),
        (address.is_loopback, TargetKind.LOOPBACK),
        (address.is_link_local, TargetKind.LINK_LOCAL),
        (address.is_multicast, TargetKind.MULTICAST),
        (address.is_private, TargetKind.PRIVATE),
        (address.is_reserved or not address.is_global, TargetKind.RESERVED),
    )
    return next((kind for hit, kind in checks if hit), TargetKind.PUBLIC)


def _name_kind(host: str) -> TargetKind | None:
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return TargetKind.LOOPBACK
    if name in METADATA_NAMES:
        return TargetKind.METADATA
    return None


def _kinds(value: Iterable[TargetKind]) -> frozenset[TargetKind]:
    return frozenset(value)


@attrs.frozen
class DestinationPolicy:
    """Which non-public kinds of target a node may reach: none, unless the devnet says so."""

    allowed: frozenset[TargetKind] = attrs.field(default=frozenset(), converter=_kinds)

    @classmethod
    def devnet(cls) -> DestinationPolicy:
        """The devnet's allowance: everything runs on loopback or a private network."""
        return cls(frozenset({TargetKind.LOOPBACK, TargetKind.PRIVATE}))

    def check(self, host: str, resolved: Iterable[IPAddress] = ()) -> None:
        """Refuse ``host`` (with ``PolicyViolation``) unless every address it means is allowed.

        An IP literal is judged as itself; a name by ``resolved``, the addresses the adapter
        resolved it to (a name that resolved to nothing is refused).
        """
        literal = parse_ip_host(host)
        named = _name_kind(host) if literal is None else None
        if named is not None and named not in self.allowed:
            raise PolicyViolation(f"destination {host!r} is a {named.value} target")
        addresses = [literal] if literal is not None else list(resolved)
        if not addresses:
            raise PolicyViolation(f"destination {host!r} resolved to no address")
        for address in addresses:
            kind = classify(address)
            if kind is not TargetKind.PUBLIC and kind not in self.allowed:
                raise PolicyViolation(f"destination {host!r} is a {kind.value} target")


def _scheme(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    fields.one_of(DEFAULT_PORTS)(_instance, attribute, value)


def normalise_host(host: str) -> str:
    """A host as origins compare it: IP literals in canonical form, names lower-case."""
    address = parse_ip_host(host)
    if address is not None:
        return str(address)
    return host.rstrip(".").lower()


@attrs.frozen
class Origin:
    """A URL's origin: scheme, normalised host and explicit port (RFC 6454)."""

    scheme: str = attrs.field(validator=_scheme)
    host: str = attrs.field(validator=fields.text(max_len=253))
    port: int = attrs.field(validator=fields.integer(1, 65_535))

    @classmethod
    def of(cls, scheme: str, host: str, port: int | None) -> Origin:
        """The origin of already-split URL parts; a missing port is the scheme's default."""
        scheme = scheme.lower() if isinstance(scheme, str) else scheme
        default = DEFAULT_PORTS.get(scheme) if isinstance(scheme, str) else None
        return cls(scheme, normalise_host(host), port if port is not None else default or 0)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def require_own_origin(candidate: Origin, advertised: Origin, field: str = "upload_url") -> None:
    """Refuse (``InvalidValue`` on ``field``) a task URL outside the coordinator's API origin."""
    if candidate != advertised:
        raise InvalidValue(field, f"must be on the coordinator's API origin {advertised}")
