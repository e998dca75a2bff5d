"""The client side of a challenge-authenticated control-plane call (SRS-SEC-03).

Registering, opening the task stream and deregistering all follow one skeleton: ask the
coordinator for a challenge for the call's purpose, sign the challenge together with the
call's details, then make the call carrying the challenge's nonce and the signature. Both
control-plane clients — gRPC (:mod:`.grpc_client`) and the in-process twin
(:mod:`.in_process`) — run it through :func:`authenticated_call`, so the two sign exactly the
same bytes: the details come from the coordinator's own rules
(:func:`~owm_core.coordination.registration.registration_details`,
:func:`~owm_core.coordination.registration.task_stream_details`), re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from owm_core.coordination.challenges import Challenge, ChallengePurpose, challenge_message
from owm_core.coordination.registration import (
    ln_control_message,
    registration_details,
    task_stream_details,
)
from owm_core.ports.control_plane import ChallengeSigner, MessageSigner

_T = TypeVar("_T")

FetchChallenge = Callable[[ChallengeSigner, ChallengePurpose], Challenge]
"""How a client obtains a fresh challenge for a signer and a purpose."""


def answer(signer: ChallengeSigner, challenge: Challenge, details: Mapping[str, object]) -> str:
    """The hex signature answering ``challenge`` for a request carrying ``details``."""
    return signer.sign(challenge_message(challenge, details)).hex()


def ln_signature(
    ln_signer: MessageSigner | None, signer: ChallengeSigner, nonce: str, ln_node_uri: str
) -> str:
    """The Lightning node's proof of control for a registration with ``nonce`` ("" without a
    Lightning signer: the coordinator then refuses, naming ``ln_signature``; SRS-STAKE-01)."""
    if ln_signer is None:
        return ""
    return ln_signer.sign_message(ln_control_message(signer.public_key_hex, nonce, ln_node_uri))


def authenticated_call(
    fetch_challenge: FetchChallenge,
    signer: ChallengeSigner,
    purpose: ChallengePurpose,
    details: Mapping[str, object],
    send: Callable[[str, str], _T],
) -> _T:
    """Challenge → answer → call: ``send(challenge_nonce, signature)``'s result."""
    challenge = fetch_challenge(signer, purpose)
    return send(challenge.nonce, answer(signer, challenge, details))


__all__ = [
    "FetchChallenge",
    "answer",
    "authenticated_call",
    "ln_signature",
    "registration_details",
    "task_stream_details",
]
