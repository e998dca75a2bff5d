"""Who may do what in governance: core maintainers and the five treasury multisig holders.

Both roles are public keys in the coordinator's configuration (SRS-GOV-04, SRS-GOV-05,
SRS-LN-09, SRS-SEC-12). A maintainer is one Ed25519 key, with which it signs its governance
statements (extend, close, execute). A holder has two keys: the Ed25519 key that signs its
statements (acknowledgements) and the compressed secp256k1 key its hardware wallet signs
treasury transactions with; ``origin`` is that key's BIP-32 origin (``[fingerprint/path]``),
which a hardware wallet needs in the PSBT to find its key, empty for a plain key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.governance.proposals import MULTISIG_HOLDERS, TreasuryConfig

_ED25519 = re.compile(r"[0-9a-f]{64}")
_SECP256K1 = re.compile(r"0[23][0-9a-f]{64}")
_ORIGIN = re.compile(r"(|\[[0-9a-f]{8}(/[0-9]{1,10}[h']?){0,10}\])")


def _maintainer_set(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _maintainers_valid(
    _instance: object, attribute: attrs.Attribute[frozenset[str]], value: frozenset[str]
) -> None:
    for key in value:
        if not isinstance(key, str) or not _ED25519.fullmatch(key):
            raise InvalidValue(attribute.name, f"{key!r} is not an Ed25519 public key (64 hex)")


@attrs.frozen
class Holder:
    """One treasury multisig holder: its statement key, its multisig key and that key's origin."""

    statement_key: str = attrs.field(
        validator=fields.matches(_ED25519, "an Ed25519 public key (64 lower-case hex)")
    )
    multisig_key: str = attrs.field(
        validator=fields.matches(_SECP256K1, "a compressed secp256k1 public key (66 hex)")
    )
    origin: str = attrs.field(
        default="", validator=fields.matches(_ORIGIN, "a key origin like [0a1b2c3d/48h/1h/0h/2h]")
    )


def _holder_tuple(value: Iterable[Holder]) -> tuple[Holder, ...]:
    return tuple(value)


def _holders_valid(
    _instance: object, attribute: attrs.Attribute[tuple[Holder, ...]], value: tuple[Holder, ...]
) -> None:
    if len(value) not in (0, MULTISIG_HOLDERS):
        raise InvalidValue(
            attribute.name, f"must name exactly {MULTISIG_HOLDERS} holders (or none: no treasury)"
        )
    for kind in ("statement_key", "multisig_key"):
        if len({getattr(h, kind) for h in value}) != len(value):
            raise InvalidValue(attribute.name, f"two holders share a {kind}")


@attrs.frozen
class GovernanceRoles:
    """The configured maintainers and holders (see the module docstring); no holders at all
    means the coordinator runs no treasury."""

    maintainers: frozenset[str] = attrs.field(
        converter=_maintainer_set, validator=_maintainers_valid
    )
    holders: tuple[Holder, ...] = attrs.field(converter=_holder_tuple, validator=_holders_valid)

    @property
    def treasury(self) -> TreasuryConfig:
        """The multisig as the proposal rules count it: the five holders' secp256k1 keys."""
        return TreasuryConfig(h.multisig_key for h in self.holders)

    def is_maintainer(self, statement_key: str) -> bool:
        """Whether ``statement_key`` is a core maintainer's (SRS-GOV-04)."""
        return statement_key in self.maintainers

    def holder(self, statement_key: str) -> Holder | None:
        """The holder who signs statements with ``statement_key``, or None."""
        return next((h for h in self.holders if h.statement_key == statement_key), None)

    def holder_by_multisig_key(self, multisig_key: str) -> Holder | None:
        """The holder whose wallet signs with ``multisig_key``, or None."""
        return next((h for h in self.holders if h.multisig_key == multisig_key), None)
