"""The domain's exceptions: every rule OWM enforces fails with one of these.

Shells translate them in exactly one place each (HTTP problem documents, gRPC statuses, CLI
messages), so each class carries a stable machine-readable ``code`` and a human message that
never contains secrets.
"""

from __future__ import annotations

from typing import TypeVar

_T = TypeVar("_T")


class DomainError(Exception):
    """Base of every rule violation raised by ``owm_core``."""

    code = "domain-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidValue(DomainError, ValueError):
    """A value object was constructed with data that breaks its invariants.

    ``field`` names the offending attribute so that callers (CLI, HTTP, gRPC) can point at it.
    """

    code = "invalid-value"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidTransition(DomainError):
    """A state machine (stake, task, proposal) was asked for a move its rules forbid."""

    code = "invalid-transition"


class RevealsNotOpen(InvalidTransition):
    """A replica's reveal arrived while its task's commit phase is still open: retry later.

    ``retry_after_ms`` says when to try again (the node keeps its reveal and resends it); the
    gRPC status is FAILED_PRECONDITION with the code ``reveals-not-open``.
    """

    code = "reveals-not-open"

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(f"{message}; retry after {retry_after_ms} ms")
        self.retry_after_ms = retry_after_ms


class SignatureInvalid(DomainError):
    """A signed envelope's Ed25519 signature does not verify against its claimed key."""

    code = "signature-invalid"


class ReplayRejected(DomainError):
    """A signed envelope is outside the freshness window or reuses a nonce (replay protection)."""

    code = "replay-rejected"


class RateLimited(DomainError):
    """A sliding-window limit is exhausted; ``retry_after_s`` says when the next slot frees."""

    code = "rate-limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ReplayGuardFull(RateLimited):
    """A replay guard has no room for a fresh, well-signed request right now: the whole guard
    holds its ``max_entries`` nonces, or the signer its ``max_per_signer`` (SRS-SEC-03).

    Not a replay: the same request, signed afresh, is accepted once the guard forgets a nonce,
    ``retry_after_s`` from now. Shells answer it as the rate limit it is (HTTP 429 with
    ``Retry-After``, gRPC RESOURCE_EXHAUSTED with ``retry-after-s``), never as a failed
    authentication.
    """

    code = "replay-guard-full"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(f"{message}; retry after {retry_after_s} s", retry_after_s)


class PaymentRequired(DomainError):
    """What was paid does not cover this request any more (per-query pricing): pay again."""

    code = "payment-required"


class InsufficientStake(DomainError):
    """The node's stake channel is missing or below its tier minimum (SRS-STAKE-01)."""

    code = "insufficient-stake"

    def __init__(self, message: str, required_sats: int) -> None:
        super().__init__(message)
        self.required_sats = required_sats


class CooldownActive(DomainError):
    """A slashed key tried to register again during its 30-day cooldown (SRS-STAKE-07)."""

    code = "cooldown-active"


class PolicyViolation(DomainError):
    """A governance, slashing or treasury rule is not satisfied (e.g. missing signatures)."""

    code = "policy-violation"


class InsufficientFunds(PolicyViolation):
    """A submitter's prepaid balance (or a treasury budget) cannot fund a task; ``missing_msat``
    says how much more it needs."""

    code = "insufficient-funds"

    def __init__(self, message: str, missing_msat: int) -> None:
        super().__init__(message)
        self.missing_msat = missing_msat


class NoMatch(DomainError):
    """No offer satisfies a task's capability, tier and price constraints."""

    code = "no-match"


class ByzantineAssumptionViolated(DomainError):
    """A robust aggregation rule was asked to tolerate more faulty clients than it can."""

    code = "byzantine-assumption-violated"


class InvalidShare(DomainError):
    """A mining share fails validation; ``reason`` is the logged reason code (SRS-POOL-06)."""

    code = "invalid-share"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class LightningUnavailable(DomainError):
    """The Lightning node could not be reached or refused the call (down, TLS, credentials).

    The message names the backend and the failure kind only, never a macaroon, rune or key
    (SRS-SEC-07).
    """

    code = "lightning-unavailable"


class HasherUnavailable(DomainError):
    """owm-mine was asked for a header hasher this machine cannot run (torch not installed)."""

    code = "hasher-unavailable"


class StoreUnavailable(DomainError):
    """The coordinator's database could not be reached, or the connection broke mid-call
    (a failover in progress, SRS-COORD-06); the call may be retried once it is back.

    When the connection broke while committing, the write may or may not have been kept:
    callers whose writes guard money (the payout outbox) look before they act again. The
    message never contains the database URL's password.
    """

    code = "store-unavailable"


class InvoiceNotFound(DomainError):
    """No invoice with this payment hash exists on the Lightning node."""

    code = "invoice-not-found"


class ChannelNotFound(DomainError):
    """No open channel with this channel point exists on the Lightning node (SRS-STAKE-05)."""

    code = "channel-not-found"


class ForceCloseNotPermitted(DomainError):
    """A force close was asked of an adapter that holds no force-close credential (SRS-SEC-13)."""

    code = "force-close-not-permitted"


class L402Invalid(DomainError):
    """An L402 header, macaroon or preimage is malformed or does not verify (SRS-LN-07)."""

    code = "l402-invalid"


class UnknownBlock(DomainError):
    """The chain has no block at the asked height or with the asked hash (RPC codes -5/-8)."""

    code = "unknown-block"


class ChainUnavailable(DomainError):
    """The Bitcoin node cannot be reached, refused the credentials or answered nonsense."""

    code = "chain-unavailable"


class BlockRejected(DomainError):
    """The chain refused a submitted block; ``reason`` is bitcoind's (``high-hash``, …)."""

    code = "block-rejected"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ProofMalformed(DomainError):
    """Bytes that should be an OpenTimestamps proof (``.ots``) do not deserialise as one."""

    code = "ots-proof-malformed"


class CalendarUnavailable(DomainError):
    """No timestamp calendar accepted a digest, so nothing could be stamped (SRS-PERF-10)."""

    code = "calendar-unavailable"


class Conflict(DomainError):
    """A write clashes with what is stored: a duplicate id, a stale state, a broken chain.

    Repositories raise it instead of a database's integrity error, so shells can answer 409.
    """

    code = "conflict"


class GitHubUnavailable(DomainError):
    """GitHub (or the server standing in for it) refused or failed a call of the GitHub App:
    unreachable, an error status, a token refused; the message never carries a token."""

    code = "github-unavailable"


class NotFound(DomainError):
    """The request names a node, task or challenge the coordinator does not know."""

    code = "not-found"


def must_exist(value: _T | None, message: str) -> _T:
    """``value`` as looked up, or NotFound(``message``) when the lookup found nothing (None):
    the step every use case that reads one record by its id takes."""
    if value is None:
        raise NotFound(message)
    return value


class NotAMaintainer(SignatureInvalid):
    """A maintainer acknowledgement verifies but its signer is not a configured maintainer
    (SRS-SEC-14); the HTTP API answers 403."""

    code = "not-a-maintainer"


class ReversalRefused(PolicyViolation):
    """A slashing reversal is not (or no longer) allowed: too few distinct maintainers, a log
    index that is no slashing of that node, a slashing reversed already or superseded by a
    later one (docs/slashing.md, "Appeals"); the HTTP API answers 409."""

    code = "reversal-refused"


class AcknowledgerMayNotReverse(ReversalRefused):
    """A maintainer who acknowledged a slashing signed its reversal: an appeal is reviewed by
    maintainers not among those who acknowledged it; the HTTP API answers 403."""

    code = "acknowledger-may-not-reverse"


class RoleRequired(DomainError):
    """A governance statement verifies, but its signer does not hold the role the action
    needs (a core maintainer, a treasury multisig holder; SRS-GOV-04/05); the HTTP API
    answers 403."""

    code = "role-required"


class TransactionRejected(DomainError):
    """The Bitcoin node refused a transaction (spent or unknown coins, bad signatures, fees);
    the message carries its reason (SRS-GOV-06)."""

    code = "transaction-rejected"


class NoiseFailure(DomainError):
    """A Stratum V2 Noise handshake or encrypted frame failed: a bad MAC, a malformed key, or a
    pool certificate that does not verify or is out of its validity period (SRS-SEC-16). The
    connection is closed; the message never carries key material."""

    code = "noise-failure"


class FrameMalformed(DomainError):
    """A Stratum V2 frame or message cannot be decoded: wrong length, unknown message type,
    trailing bytes, a field out of range (SRS-SEC-16)."""

    code = "frame-malformed"
