"""The node registry's values: who a node is, how to pay it, and whether it is alive.

A :class:`Node` is the coordinator's record of one registered node (spec §5.1, SRS-COORD-01).
Liveness is derived, not stored: a node is *offline* once it has missed
:attr:`Liveness.missed_heartbeats` manifests in a row (SRS-NODE-04 publishes one every 60 s),
and *suspended* only by the stake rules or a slashing decision.
"""

from __future__ import annotations

import enum
import re

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.nodes.tiers import Tier

_ONION_V3 = re.compile(r"[a-z2-7]{56}\.onion")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)
_IPV4 = re.compile(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_IPV6 = re.compile(r"\[[0-9a-f:.]{2,45}\]")


@attrs.frozen
class LnNodeUri:
    """Where a node's Lightning node listens: ``pubkey@host:port`` (SRS-LN-02, SRS-NET-06).

    The pubkey is a 33-byte compressed secp256k1 key in lower-case hex; the host is a DNS name,
    an IPv4 address, a bracketed IPv6 address or a Tor v3 ``.onion`` name.
    """

    pubkey: str = attrs.field(validator=fields.text(66, 66, fields.LN_PUBKEY))
    host: str = attrs.field(validator=fields.text(1, 253))
    port: int = attrs.field(validator=fields.integer(1, 65535))

    @host.validator
    def _check_host(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value.endswith(".onion"):
            if not _ONION_V3.fullmatch(value):
                raise InvalidValue(attribute.name, "an .onion host must be a v3 name")
        elif not any(p.fullmatch(value) for p in (_IPV4, _IPV6, _HOSTNAME)):
            raise InvalidValue(attribute.name, f"{value!r} is not a hostname, IP or v3 .onion")

    @classmethod
    def parse(cls, uri: str) -> LnNodeUri:
        """Parse ``pubkey@host:port``; raises InvalidValue naming ``ln_node_uri`` if malformed."""
        if not isinstance(uri, str) or "@" not in uri or ":" not in uri.rpartition("@")[2]:
            raise InvalidValue("ln_node_uri", "must look like pubkey@host:port")
        pubkey, _, address = uri.strip().lower().partition("@")
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            raise InvalidValue("ln_node_uri", "port must be a number")
        return cls(pubkey=pubkey, host=host, port=int(port))

    @property
    def is_onion(self) -> bool:
        """True when the Lightning node is reached over Tor."""
        return self.host.endswith(".onion")

    def __str__(self) -> str:
        return f"{self.pubkey}@{self.host}:{self.port}"


def onion_address(value: str) -> str:
    """Validate an optional Tor v3 control-plane address (SRS-NET-03) and return it normalised."""
    normalised = value.strip().lower()
    if not _ONION_V3.fullmatch(normalised):
        raise InvalidValue("onion_address", "must be a v3 .onion name (56 base32 characters)")
    return normalised


class NodeStatus(enum.Enum):
    """What the public registry shows about a node (spec §5.1)."""

    ONLINE = "online"
    OFFLINE = "offline"
    SUSPENDED = "suspended"


@attrs.frozen
class Liveness:
    """When a silent node counts as offline (SRS-NODE-04, SRS-COORD-01).

    Defaults: manifests every 60 s; offline after 3 missed in a row, i.e. 180 s of silence.
    """

    heartbeat_interval_s: int = attrs.field(default=60, validator=fields.integer(1, 86_400))
    missed_heartbeats: int = attrs.field(default=3, validator=fields.integer(1, 1_000))

    @property
    def offline_after_s(self) -> int:
        """Seconds of silence after which a node is offline."""
        return self.heartbeat_interval_s * self.missed_heartbeats


def liveness_status(suspended: bool, silent: bool) -> NodeStatus:
    """A node's status by its own record: suspended if so marked, otherwise online unless
    ``silent`` (heard from longer ago than :attr:`Liveness.offline_after_s`)."""
    if suspended:
        return NodeStatus.SUSPENDED
    return NodeStatus.OFFLINE if silent else NodeStatus.ONLINE


@attrs.frozen
class Node:
    """The coordinator's record of a registered node (spec §5.1).

    Measurements are integers (MiB, Mbit/s) so that manifests encode canonically; reliability
    is parts-per-million (1_000_000 = 1.0) so that reward arithmetic stays integral.
    """

    node_id: str = attrs.field(validator=fields.text(1, 64))
    public_key: str = attrs.field(validator=fields.hex_digest(32))
    ln_node_uri: LnNodeUri = attrs.field(validator=fields.instance_of(LnNodeUri))
    tier: Tier = attrs.field(validator=fields.instance_of(Tier))
    vram_mb: int = attrs.field(validator=fields.integer(minimum=0))
    ram_mb: int = attrs.field(validator=fields.integer(minimum=0))
    bandwidth_mbps: int = attrs.field(validator=fields.integer(minimum=0))
    registered_at: int = attrs.field(validator=fields.timestamp())
    last_heartbeat: int = attrs.field(validator=fields.timestamp())
    onion_address: str | None = attrs.field(default=None)
    reliability_ppm: int = attrs.field(default=500_000, validator=fields.integer(0, 1_000_000))
    total_tasks_completed: int = attrs.field(default=0, validator=fields.integer(minimum=0))
    total_sats_earned: int = attrs.field(default=0, validator=fields.money())
    suspended: bool = attrs.field(default=False, validator=fields.instance_of(bool))

    @onion_address.validator
    def _check_onion(self, _attribute: attrs.Attribute[str | None], value: str | None) -> None:
        if value is not None:
            onion_address(value)

    @last_heartbeat.validator
    def _check_heartbeat(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < self.registered_at:
            raise InvalidValue(attribute.name, "cannot precede registered_at")

    def status(self, now: int, liveness: Liveness) -> NodeStatus:
        """Suspended if so marked; otherwise online unless silent for too long."""
        return liveness_status(self.suspended, now - self.last_heartbeat > liveness.offline_after_s)

    def heard_from(self, at: int) -> Node:
        """The record after a verified heartbeat at ``at`` (never moves the clock backwards)."""
        return fields.evolve(self, last_heartbeat=max(self.last_heartbeat, at))
