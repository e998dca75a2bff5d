"""How a miner signs in to the OWM pool with its node identity (SRS-POOL-02).

The ``user_identity`` of ``OpenStandardMiningChannel`` is ``<node_id>.<worker>.<signature>``:
the node id, a worker name (letters, digits, ``_`` and ``-``, at most 64) and the hex Ed25519
signature by the node's key over ``owm/sv2-login/v1 || 0x00 || handshake_hash || node_id ||
0x00 || worker``. The handshake hash is the Noise session's ``h``, the same at both ends and
different for every connection, so a login overheard or replayed on another connection does
not verify; the pool checks the signature against the key the registry holds for the node id.
"""

from __future__ import annotations

import re

import attrs

from owm_core.errors import SignatureInvalid
from owm_core.identity.keys import Identity, node_id_matches, verify_signature

LOGIN_DOMAIN = b"owm/sv2-login/v1\x00"
MAX_WORKER = 64
_LOGIN_RE = re.compile(r"(n[0-9a-f]{40})\.([A-Za-z0-9_-]{0,64})\.([0-9a-f]{128})")
_NOT_WORKER = re.compile(r"[^A-Za-z0-9_-]")


@attrs.frozen
class MinerLogin:
    """A parsed ``user_identity``: who claims to mine, on which worker, with what signature."""

    node_id: str
    worker: str
    signature: bytes

    @property
    def miner_id(self) -> str:
        """The miner's id in the share log: the node id, so that every worker's shares count
        for the node's profile (``/v1/mining/nodes/{node_id}``); the worker is for the logs."""
        return self.node_id


def login_message(handshake_hash: bytes, node_id: str, worker: str) -> bytes:
    """The bytes a node signs to sign in on the session with ``handshake_hash``."""
    return LOGIN_DOMAIN + handshake_hash + node_id.encode() + b"\x00" + worker.encode()


def user_identity(identity: Identity, worker: str, handshake_hash: bytes) -> str:
    """The ``user_identity`` a node sends to open a channel on this session."""
    signature = identity.sign(login_message(handshake_hash, identity.node_id, worker))
    return f"{identity.node_id}.{worker}.{signature.hex()}"


def worker_name(user_name: str) -> str:
    """The worker name a login carries for a miner that sent a plain ``user_name`` (SV2
    firmware behind the mining login proxy, SRS-POOL-03): each character outside letters,
    digits, ``_`` and ``-`` becomes ``-`` (``farm.rig1`` → ``farm-rig1``), cut to
    :data:`MAX_WORKER` characters."""
    return _NOT_WORKER.sub("-", user_name)[:MAX_WORKER]


def parse_login(text: str) -> MinerLogin:
    """The login in a ``user_identity``; ``SignatureInvalid`` if it has not the OWM form."""
    match = _LOGIN_RE.fullmatch(text)
    if match is None:
        raise SignatureInvalid("user_identity must be <node_id>.<worker>.<signature hex>")
    return MinerLogin(match[1], match[2], bytes.fromhex(match[3]))


def verify_login(login: MinerLogin, public_key_hex: str, handshake_hash: bytes) -> None:
    """Raise ``SignatureInvalid`` unless the registered key of ``login.node_id`` signed this
    login for this very session."""
    if not node_id_matches(login.node_id, public_key_hex):
        raise SignatureInvalid("the registered key does not belong to this node id")
    message = login_message(handshake_hash, login.node_id, login.worker)
    verify_signature(public_key_hex, message, login.signature)
