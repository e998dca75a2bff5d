"""L402 paid-access tokens: macaroons, their binary format, and the HTTP headers (SRS-LN-07).

The commercial API answers an unpaid request with ``402 Payment Required`` and a challenge
(``WWW-Authenticate: L402 macaroon="<base64>", invoice="<bolt11>"``); a client that pays the
invoice learns the preimage and comes back with ``Authorization: L402 <base64 macaroon>:<hex
preimage>``. The credential is valid when ``sha256(preimage)`` equals the payment hash bound into
the macaroon's identifier and the macaroon's HMAC chain verifies with the server's root key and
every caveat holds — e.g. ``owm-api_valid_until=<unix>`` for 24 hours of access (SRS-API-03).

Compatibility (bLIP-0026, Lightning Labs' Aperture): the identifier is ``version u16 BE ‖
payment_hash[32] ‖ token_id[32]``; macaroons use the libmacaroons/go-macaroon v2 binary
serialisation and HMAC-SHA256 chain (root key derived with the ``macaroons-key-generator``
key), so existing L402 clients and macaroon libraries read our tokens byte for byte. Clients
that still say ``LSAT`` instead of ``L402`` are accepted.

Pure: hashlib, hmac, base64 only. The caller passes the clock (``now``) and the randomness
(``token_id``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct

import attrs

from owm_core.errors import L402Invalid

IDENTIFIER_VERSION = 0
"""The only L402 identifier version defined (bLIP-0026)."""

SERVICES_CONDITION = "services"
"""Caveat naming the services (``name:tier``, comma separated) a token opens."""

VALID_UNTIL_SUFFIX = "_valid_until"
"""Caveat ``<service>_valid_until=<unix seconds>``: the token expires then (SRS-API-03)."""

CAPABILITIES_SUFFIX = "_capabilities"
"""Caveat ``<service>_capabilities=a,b``: the token opens only these capabilities."""

_KEY_GENERATOR = b"macaroons-key-generator"
_FIELD_EOS, _FIELD_LOCATION, _FIELD_IDENTIFIER, _FIELD_VID, _FIELD_SIGNATURE = 0, 1, 2, 4, 6
_MAX_MACAROON_BYTES = 64 * 1024


@attrs.frozen
class Caveat:
    """One caveat: first-party (a condition the server checks) or third-party (has a vid)."""

    identifier: bytes
    verification_id: bytes | None = None
    location: str | None = None

    @property
    def first_party(self) -> bool:
        """Whether the target service checks this caveat itself."""
        return self.verification_id is None


@attrs.frozen
class Macaroon:
    """A macaroon: identifier, caveats, and the HMAC-SHA256 chain's final signature."""

    identifier: bytes
    signature: bytes
    location: str = ""
    caveats: tuple[Caveat, ...] = ()

    def add_first_party_caveat(self, condition: str) -> Macaroon:
        """Attenuate: a new macaroon that also requires ``condition`` (anyone may do this)."""
        data = condition.encode()
        return attrs.evolve(
            self,
            caveats=(*self.caveats, Caveat(identifier=data)),
            signature=_hmac(self.signature, data),
        )

    def conditions(self) -> list[str]:
        """The first-party caveats as text, in order."""
        out = []
        for caveat in self.caveats:
            try:
                out.append(caveat.identifier.decode())
            except UnicodeDecodeError:
                raise L402Invalid("a caveat is not UTF-8 text") from None
        return out

    def serialize(self) -> bytes:
        """The libmacaroons/go-macaroon v2 binary form."""
        out = bytearray([2])
        if self.location:
            out += _field(_FIELD_LOCATION, self.location.encode())
        out += _field(_FIELD_IDENTIFIER, self.identifier)
        out.append(_FIELD_EOS)
        for caveat in self.caveats:
            if caveat.location:
                out += _field(_FIELD_LOCATION, caveat.location.encode())
            out += _field(_FIELD_IDENTIFIER, caveat.identifier)
            if caveat.verification_id:
                out += _field(_FIELD_VID, caveat.verification_id)
            out.append(_FIELD_EOS)
        out.append(_FIELD_EOS)
        out += _field(_FIELD_SIGNATURE, self.signature)
        return bytes(out)

    @classmethod
    def parse(cls, data: bytes) -> Macaroon:
        """Read the v2 binary form; ``L402Invalid`` says what is wrong with it."""
        if len(data) > _MAX_MACAROON_BYTES:
            raise L402Invalid("macaroon is too large")
        reader = _Reader(data)
        if reader.byte() != 2:
            raise L402Invalid("macaroon is not in the v2 binary format")
        header = reader.section()
        location = _text(header.get(_FIELD_LOCATION, b""), "location")
        if _FIELD_IDENTIFIER not in header:
            raise L402Invalid("macaroon has no identifier")
        caveats: list[Caveat] = []
        while True:
            section = reader.section()
            if not section:
                break
            if _FIELD_IDENTIFIER not in section:
                raise L402Invalid("macaroon caveat has no identifier")
            caveat_location = section.get(_FIELD_LOCATION)
            caveats.append(
                Caveat(
                    identifier=section[_FIELD_IDENTIFIER],
                    verification_id=section.get(_FIELD_VID),
                    location=None if caveat_location is None
                    else _text(caveat_location, "caveat location"),
                )
            )
        kind, signature = reader.field()
        if kind != _FIELD_SIGNATURE or len(signature) != 32:
            raise L402Invalid("macaroon signature is missing or not 32 bytes")
        if not reader.done():
            raise L402Invalid("macaroon has trailing bytes")
        return cls(
            identifier=header[_FIELD_IDENTIFIER],
            signature=signature,
            location=location,
            caveats=tuple(caveats),
        )


@attrs.frozen
class TokenIdentifier:
    """What an L402 macaroon's identifier binds: the payment hash and a unique token id."""

    payment_hash: bytes
    token_id: bytes
    version: int = IDENTIFIER_VERSION

    def encode(self) -> bytes:
        """``version u16 BE ‖ payment_hash[32] ‖ token_id[32]`` (bLIP-0026)."""
        return struct.pack(">H", self.version) + self.payment_hash + self.token_id

    @classmethod
    def decode(cls, identifier: bytes) -> TokenIdentifier:
        """Split an L402 identifier; only version 0 (66 bytes) exists."""
        if len(identifier) < 2:
            raise L402Invalid("macaroon identifier is too short for L402")
        (version,) = struct.unpack(">H", identifier[:2])
        if version != IDENTIFIER_VERSION:
            raise L402Invalid(f"unknown L402 identifier version {version}")
        if len(identifier) != 66:
            raise L402Invalid("L402 identifier must be 66 bytes")
        return cls(payment_hash=identifier[2:34], token_id=identifier[34:66], version=version)


@attrs.frozen
class Credential:
    """What a client presents: the macaroon and the preimage that proves payment."""

    macaroon: Macaroon
    preimage: bytes


@attrs.frozen
class Challenge:
    """What the server answers an unpaid request with: the macaroon and the invoice to pay."""

    macaroon: Macaroon
    invoice: str


def derive_root_key(master_secret: bytes, token_id: bytes) -> bytes:
    """Per-token root key from one server secret, so no per-token key table is needed.

    Aperture stores a random root key per token id; deriving it with HMAC gives the same
    isolation (one leaked token key reveals nothing about the others) without storage.
    """
    if len(master_secret) < 32:
        raise L402Invalid("the L402 master secret must be at least 32 bytes")
    return _hmac(master_secret, b"owm-l402-root-key:" + token_id)


def mint(root_key: bytes, identifier: bytes, *, location: str = "",
         conditions: tuple[str, ...] = ()) -> Macaroon:
    """A new macaroon signed with ``root_key`` carrying first-party ``conditions``."""
    macaroon = Macaroon(
        identifier=identifier,
        signature=_hmac(_hmac(_KEY_GENERATOR, root_key), identifier),
        location=location,
    )
    for condition in conditions:
        macaroon = macaroon.add_first_party_caveat(condition)
    return macaroon


def mint_token(
    root_key: bytes,
    payment_hash: bytes,
    token_id: bytes,
    *,
    service: str,
    valid_until: int,
    location: str = "owm",
) -> Macaroon:
    """An L402 macaroon for one invoice: opens ``service`` until ``valid_until`` (SRS-API-03)."""
    if len(payment_hash) != 32 or len(token_id) != 32:
        raise L402Invalid("payment hash and token id must be 32 bytes each")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", service):
        raise L402Invalid("service names are lower-case letters, digits, '-', '_' and '.'")
    identifier = TokenIdentifier(payment_hash=payment_hash, token_id=token_id).encode()
    return mint(
        root_key,
        identifier,
        location=location,
        conditions=(
            f"{SERVICES_CONDITION}={service}:0",
            f"{service}{VALID_UNTIL_SUFFIX}={valid_until}",
        ),
    )


def verify_signature(macaroon: Macaroon, root_key: bytes) -> bool:
    """Whether the HMAC chain over identifier and caveats ends in the macaroon's signature."""
    signature = _hmac(_hmac(_KEY_GENERATOR, root_key), macaroon.identifier)
    for caveat in macaroon.caveats:
        if not caveat.first_party:
            return False
        signature = _hmac(signature, caveat.identifier)
    return hmac.compare_digest(signature, macaroon.signature)


def verify(credential: Credential, root_key: bytes, *, service: str, now: int,
           capability: str | None = None) -> TokenIdentifier:
    """Check an L402 credential; return its identifier or raise ``L402Invalid`` saying why.

    Valid when the preimage hashes to the identifier's payment hash, the HMAC chain verifies,
    and every caveat holds at ``now``: ``services`` names ``service``, each
    ``<service>_valid_until`` lies in the future, each ``<service>_capabilities`` lists
    ``capability``. Caveats for other services restrict those services only; any other
    condition is unknown and fails the token, as macaroon semantics require (SRS-LN-07).
    """
    token = TokenIdentifier.decode(credential.macaroon.identifier)
    if len(credential.preimage) != 32:
        raise L402Invalid("the preimage must be 32 bytes")
    if not hmac.compare_digest(hashlib.sha256(credential.preimage).digest(), token.payment_hash):
        raise L402Invalid("the preimage does not match the token's payment hash")
    if any(not caveat.first_party for caveat in credential.macaroon.caveats):
        raise L402Invalid("third-party caveats are not supported")
    if not verify_signature(credential.macaroon, root_key):
        raise L402Invalid("the macaroon signature does not verify")
    services_seen = False
    for condition in credential.macaroon.conditions():
        name, sep, value = condition.partition("=")
        if not sep:
            raise L402Invalid(f"caveat {condition!r} is not of the form name=value")
        if name == SERVICES_CONDITION:
            services_seen = True
            names = {part.split(":", 1)[0] for part in value.split(",")}
            if service not in names:
                raise L402Invalid(f"the token does not open the service {service!r}")
        elif name == f"{service}{VALID_UNTIL_SUFFIX}":
            if not value.isdigit():
                raise L402Invalid(f"caveat {name} is not a POSIX time")
            if now >= int(value):
                raise L402Invalid("the token has expired")
        elif name == f"{service}{CAPABILITIES_SUFFIX}":
            if capability is None or capability not in value.split(","):
                raise L402Invalid(f"the token does not open the capability {capability!r}")
        elif name.endswith((VALID_UNTIL_SUFFIX, CAPABILITIES_SUFFIX)):
            continue
        else:
            raise L402Invalid(f"unknown caveat {name!r}")
    if not services_seen:
        raise L402Invalid("the token names no service")
    return token


# -- HTTP headers ---------------------------------------------------------------------------

_CHALLENGE = re.compile(
    r'\s*(?:L402|LSAT)\s+macaroon="(?P<macaroon>[A-Za-z0-9+/=_-]+)"\s*,\s*'
    r'invoice="(?P<invoice>[A-Za-z0-9]+)"\s*'
)
_AUTHORIZATION = re.compile(
    r"\s*(?:L402|LSAT)\s+(?P<macaroon>[A-Za-z0-9+/=_-]+(?:,[A-Za-z0-9+/=_-]+)*)"
    r":(?P<preimage>[0-9a-fA-F]{64})\s*"
)


def format_challenge(challenge: Challenge) -> str:
    """The ``WWW-Authenticate`` value of a 402 answer (standard base64, as Aperture sends)."""
    encoded = base64.b64encode(challenge.macaroon.serialize()).decode()
    return f'L402 macaroon="{encoded}", invoice="{challenge.invoice}"'


def parse_challenge(value: str) -> Challenge:
    """Read a ``WWW-Authenticate: L402 ...`` value (clients use this)."""
    match = _CHALLENGE.fullmatch(value)
    if match is None:
        raise L402Invalid('expected L402 macaroon="<base64>", invoice="<bolt11>"')
    return Challenge(macaroon=_decode_macaroon(match["macaroon"]), invoice=match["invoice"])


def format_authorization(credential: Credential) -> str:
    """The ``Authorization`` value a client sends once it has paid."""
    encoded = base64.b64encode(credential.macaroon.serialize()).decode()
    return f"L402 {encoded}:{credential.preimage.hex()}"


def parse_authorization(value: str) -> Credential:
    """Read an ``Authorization: L402 <base64 macaroon>:<hex preimage>`` value.

    A header naming several macaroons (comma separated) is refused: OWM issues one per token.
    """
    match = _AUTHORIZATION.fullmatch(value)
    if match is None:
        raise L402Invalid("expected L402 <base64 macaroon>:<64 hex digit preimage>")
    if "," in match["macaroon"]:
        raise L402Invalid("exactly one macaroon is expected")
    return Credential(
        macaroon=_decode_macaroon(match["macaroon"]),
        preimage=bytes.fromhex(match["preimage"]),
    )


def _decode_macaroon(text: str) -> Macaroon:
    """Standard or URL-safe base64, padded or not (clients differ)."""
    normalized = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        data = base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise L402Invalid("the macaroon is not valid base64") from None
    return Macaroon.parse(data)


# -- binary format internals ----------------------------------------------------------------


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(kind: int, data: bytes) -> bytes:
    return bytes([kind]) + _uvarint(len(data)) + data


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise L402Invalid(f"macaroon {what} is not UTF-8") from None


class _Reader:
    """A cursor over v2 bytes; every malformation is an ``L402Invalid``."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def done(self) -> bool:
        return self.pos == len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise L402Invalid("macaroon is truncated")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uvarint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 28:
                raise L402Invalid("macaroon field length is too large")

    def field(self) -> tuple[int, bytes]:
        kind = self.byte()
        if kind == _FIELD_EOS:
            return kind, b""
        length = self.uvarint()
        if self.pos + length > len(self.data):
            raise L402Invalid("macaroon is truncated")
        value = self.data[self.pos : self.pos + length]
        self.pos += length
        return kind, value

    def section(self) -> dict[int, bytes]:
        """Fields up to the next end-of-section marker, in strictly increasing type order."""
        fields: dict[int, bytes] = {}
        last = -1
        while True:
            kind, value = self.field()
            if kind == _FIELD_EOS:
                return fields
            if kind <= last or kind not in (_FIELD_LOCATION, _FIELD_IDENTIFIER, _FIELD_VID):
                raise L402Invalid(f"unexpected macaroon field type {kind}")
            fields[kind] = value
            last = kind
