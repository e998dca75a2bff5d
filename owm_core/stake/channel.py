"""A node's stake: the Lightning channel it locks with the treasury and its lifecycle (spec 4.12).

Owns :class:`StakeChannel` (one channel as the treasury's Lightning node lists it),
:func:`check_stake` (does a node's best channel meet its tier minimum, SRS-STAKE-01), the stake
bonus rule (SRS-STAKE-10), the stake state machine :class:`Stake` (SRS-STAKE-02/03/07/08) and
its timing :class:`StakePolicy`.

States and moves (every other move raises :class:`~owm_core.errors.InvalidTransition`)::

    register ──> pending ──verified(confirmed qualifying channel)──> active
    active ──reverified(no qualifying channel)──> degraded          (24 h grace, SRS-STAKE-03)
    degraded ──reverified(qualifying channel, within grace)──> active
    degraded ──tick / reverified at or after the grace deadline──> suspended  (no slashing)
    pending|active|degraded|suspended ──cooperatively_closed──> deregistered  (no cooldown,
                                                                               SRS-STAKE-08)
    any state but slashed ──slashed──> slashed   (30-day cooldown by public key, SRS-STAKE-07)
    slashed ──reinstated (slashing reversed on appeal)──> deregistered  (cooldown lifted)
    deregistered | suspended | slashed after its cooldown ──register──> pending (a new Stake)

The spec's public node status shows both ``suspended`` and ``slashed`` as "suspended"; they are
kept apart here because only a slash starts a cooldown. A slash is accepted even after a
cooperative close, so that closing quickly cannot dodge the cooldown of a confirmed misbehaviour.

Time is POSIX seconds passed in by the caller; amounts are satoshis.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import CooldownActive, InsufficientStake, InvalidTransition, InvalidValue
from owm_core.nodes.tiers import StakeRequirements, Tier

#: Active channels are re-verified every 6 hours (SRS-STAKE-02).
REVERIFY_PERIOD_S = 6 * 3600
#: A degraded node has 24 hours to restore its channel capacity (SRS-STAKE-03).
GRACE_PERIOD_S = 24 * 3600
#: A slashed public key may not register again for 30 days (SRS-STAKE-07).
COOLDOWN_S = 30 * 86_400
#: Stake bonus at exactly the tier minimum: 10 000 basis points = 1.00× (SRS-STAKE-10).
BONUS_BASE_BPS = 10_000
#: Each doubling of the capacity over the minimum adds 1 000 bps (+10 %) (SRS-STAKE-10).
BONUS_STEP_BPS = 1_000
#: The bonus never exceeds 15 000 bps = 1.50× (reached at 32× the minimum) (SRS-STAKE-10).
BONUS_MAX_BPS = 15_000

_CHANNEL_POINT = r"[0-9a-f]{64}:[0-9]{1,10}"


@attrs.frozen
class StakePolicy:
    """Timing and bonus settings of the stake manager (SRS-STAKE-02, -03, -07, -10).

    Defaults: re-verification every 6 h, 24 h grace, 30-day cooldown, bonus 1.00× at the
    minimum, +10 % per doubling, capped at 1.50×.
    """

    reverify_period_s: int = attrs.field(
        default=REVERIFY_PERIOD_S, validator=fields.integer(minimum=1)
    )
    grace_period_s: int = attrs.field(default=GRACE_PERIOD_S, validator=fields.integer(minimum=1))
    cooldown_s: int = attrs.field(default=COOLDOWN_S, validator=fields.integer(minimum=1))
    bonus_step_bps: int = attrs.field(default=BONUS_STEP_BPS, validator=fields.integer(minimum=0))
    bonus_max_bps: int = attrs.field(
        default=BONUS_MAX_BPS, validator=fields.integer(minimum=BONUS_BASE_BPS)
    )


DEFAULT_POLICY = StakePolicy()


def stake_bonus_bps(capacity_sat: int, min_sats: int, policy: StakePolicy = DEFAULT_POLICY) -> int:
    """The reward multiplier earned by staking more than the minimum, in bps (SRS-STAKE-10).

    Rule (integers only): below or at the minimum the bonus is 10 000 bps (1.00×, no malus:
    eligibility is the state machine's business). Above it, with ``k`` whole doublings
    (``min·2^k ≤ capacity < min·2^(k+1)``), the bonus is
    ``10 000 + step·k + floor(step·(capacity − min·2^k) / (min·2^k))`` — linear between
    doublings — capped at ``policy.bonus_max_bps``. With the defaults: 2× the minimum gives
    11 000, 3× gives 11 500, 32× and more give 15 000. It never decreases as capacity grows.
    """
    if isinstance(capacity_sat, bool) or not isinstance(capacity_sat, int) or capacity_sat < 0:
        raise InvalidValue("capacity_sat", "must be an integer ≥ 0")
    if isinstance(min_sats, bool) or not isinstance(min_sats, int) or min_sats < 1:
        raise InvalidValue("min_sats", "must be an integer ≥ 1")
    if capacity_sat <= min_sats:
        return BONUS_BASE_BPS
    doublings = (capacity_sat // min_sats).bit_length() - 1
    floor_sat = min_sats << doublings
    partial = policy.bonus_step_bps * (capacity_sat - floor_sat) // floor_sat
    bonus = BONUS_BASE_BPS + policy.bonus_step_bps * doublings + partial
    return min(bonus, policy.bonus_max_bps)


@attrs.frozen
class StakeChannel:
    """One Lightning channel between the treasury and a node, as ListChannels reports it.

    ``local``/``remote`` are seen from the treasury's node; their sum never exceeds the
    capacity (reserves and commitment fees make up the rest). ``confirmations`` is 0 while the
    funding transaction is unconfirmed; ``active`` says whether the peer is online. The stake a
    channel locks is the node's *own* balance in it, :attr:`own_balance_sat` (the treasury's
    remote balance), not its capacity: a channel the treasury funded, or one the node emptied by
    paying through the treasury, stakes nothing of the node's (SRS-STAKE-01, SRS-LN-11).
    """

    channel_id: str = attrs.field(validator=fields.text(max_len=64, pattern=r"[0-9A-Za-z:x_-]+"))
    channel_point: str = attrs.field(validator=fields.text(max_len=75, pattern=_CHANNEL_POINT))
    peer_pubkey: str = attrs.field(validator=fields.text(max_len=66, pattern=fields.LN_PUBKEY))
    capacity_sat: int = attrs.field(validator=fields.money())
    local_balance_sat: int = attrs.field(validator=fields.money())
    remote_balance_sat: int = attrs.field(validator=fields.money())
    confirmations: int = attrs.field(validator=fields.integer(minimum=0))
    active: bool = attrs.field(validator=fields.instance_of(bool))

    def __attrs_post_init__(self) -> None:
        if self.local_balance_sat + self.remote_balance_sat > self.capacity_sat:
            raise InvalidValue("remote_balance_sat", "local + remote exceeds the capacity")

    @property
    def confirmed(self) -> bool:
        """True once the funding transaction has at least one confirmation (spec 4.12.2)."""
        return self.confirmations >= 1

    @property
    def own_balance_sat(self) -> int:
        """The node's own funds in the channel: the treasury's *remote* balance."""
        return self.remote_balance_sat


def _check_consistent(instance: StakeCheck, _attribute: Any, channel: StakeChannel | None) -> None:
    if channel is None:
        return
    if not isinstance(channel, StakeChannel):
        raise InvalidValue("channel", f"must be a StakeChannel, got {type(channel).__name__}")
    if channel.own_balance_sat < instance.required_sats:
        raise InvalidValue("channel", "a qualifying channel's own balance must reach required_sats")


@attrs.frozen
class StakeCheck:
    """The outcome of one stake verification against a tier minimum (SRS-STAKE-01, SRS-LN-11).

    ``channel`` is the best qualifying channel (``None``: the check failed);
    ``best_capacity_sat`` is the largest own balance seen among all channels, qualifying or not
    (the stake that counts is the node's own balance, :attr:`StakeChannel.own_balance_sat`).
    """

    tier: Tier = attrs.field(validator=fields.instance_of(Tier))
    required_sats: int = attrs.field(validator=fields.money(minimum=1))
    best_capacity_sat: int = attrs.field(validator=fields.money())
    channel: StakeChannel | None = attrs.field(default=None, validator=_check_consistent)

    def __attrs_post_init__(self) -> None:
        if self.channel is not None and self.channel.own_balance_sat > self.best_capacity_sat:
            raise InvalidValue("best_capacity_sat", "is below the chosen channel's own balance")

    @property
    def passed(self) -> bool:
        """True when some channel's own balance reaches the tier minimum."""
        return self.channel is not None

    @property
    def confirmed(self) -> bool:
        """True when the qualifying channel is confirmed: the condition for "active"."""
        return self.channel is not None and self.channel.confirmed

    @property
    def capacity_sat(self) -> int:
        """The stake that counts: the qualifying channel's own balance, else the best seen."""
        if self.channel is not None:
            return self.channel.own_balance_sat
        return self.best_capacity_sat

    def raise_if_failed(self) -> None:
        """Raises INSUFFICIENT_STAKE with the minimum required amount (spec 4.12.2)."""
        if self.channel is None:
            raise InsufficientStake(
                f"{self.tier.value} requires a channel holding at least {self.required_sats} sat "
                f"of your own balance; the largest found holds {self.best_capacity_sat} sat",
                required_sats=self.required_sats,
            )


def check_stake(
    tier: Tier, channels: Iterable[StakeChannel], requirements: StakeRequirements | None = None
) -> StakeCheck:
    """Whether a node's channels to the treasury meet its tier minimum (SRS-STAKE-01).

    A channel qualifies when the node's own balance in it reaches the minimum (a capacity the
    treasury funded is not the node's stake). Among qualifying channels the
    best is a confirmed one before an unconfirmed one, then the largest, then the smallest
    ``channel_id`` so that the choice is deterministic. ``channels`` are those ListChannels
    returns for the node's public key (spec 4.12.2 step 2).

    A pure function of frozen values: the checks seen last are remembered, since every stake
    is re-verified each period with, most often, the same channels (unhashable input is
    checked, and refused, without the memo).
    """
    seen = tuple(channels)
    try:
        return _remembered_check(tier, seen, requirements)
    except TypeError:
        return _check(tier, seen, requirements)


@functools.lru_cache(maxsize=1 << 14)
def _remembered_check(
    tier: Tier, seen: tuple[StakeChannel, ...], requirements: StakeRequirements | None
) -> StakeCheck:
    return _check(tier, seen, requirements)


def _check(
    tier: Tier, seen: tuple[StakeChannel, ...], requirements: StakeRequirements | None
) -> StakeCheck:
    table = requirements if requirements is not None else StakeRequirements()
    required = table.for_tier(tier).min_sats
    for channel in seen:
        if not isinstance(channel, StakeChannel):
            raise InvalidValue("channels", f"must hold StakeChannel, got {type(channel).__name__}")
    qualifying = [channel for channel in seen if channel.own_balance_sat >= required]
    best = min(
        qualifying,
        key=lambda c: (not c.confirmed, -c.own_balance_sat, c.channel_id),
        default=None,
    )
    return StakeCheck(
        tier=tier,
        required_sats=required,
        best_capacity_sat=max((c.own_balance_sat for c in seen), default=0),
        channel=best,
    )


class StakeStatus(enum.Enum):
    """Where a node's stake is in its lifecycle (spec 4.12)."""

    PENDING = "pending"
    ACTIVE = "active"
    DEGRADED = "degraded"
    SUSPENDED = "suspended"
    SLASHED = "slashed"
    DEREGISTERED = "deregistered"


_LIVE = frozenset({StakeStatus.PENDING, StakeStatus.ACTIVE, StakeStatus.DEGRADED})
_VERIFIED = frozenset({StakeStatus.ACTIVE, StakeStatus.DEGRADED})
_PENDING = frozenset({StakeStatus.PENDING})


class StakeCooldownActive(CooldownActive):
    """A slashed key asked to register during its cooldown; says until when (SRS-STAKE-07)."""

    def __init__(self, message: str, cooldown_until: int, remaining_s: int) -> None:
        super().__init__(message)
        self.cooldown_until = cooldown_until
        self.remaining_s = remaining_s


_TIMESTAMP = fields.timestamp()


def _optional_time(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _TIMESTAMP(_instance, attribute, value)


@attrs.frozen
class Stake:
    """One registration of a node's stake and its status (spec 4.12, SRS-STAKE-01..10).

    A frozen value: every move returns a new :class:`Stake`. ``required_sats`` is the tier
    minimum at the last verification, ``capacity_sat`` the stake then seen and ``bonus_bps`` its
    reward multiplier, recomputed at every verification (SRS-STAKE-10). ``channel`` is the last
    qualifying channel seen: the registration's channel, kept while degraded and after a slash
    because it is the one to force-close (SRS-STAKE-05, SRS-LN-12).
    """

    public_key: str = attrs.field(validator=fields.hex_digest(32))
    tier: Tier = attrs.field(validator=fields.instance_of(Tier))
    status: StakeStatus = attrs.field(validator=fields.instance_of(StakeStatus))
    required_sats: int = attrs.field(validator=fields.money(minimum=1))
    capacity_sat: int = attrs.field(validator=fields.money())
    bonus_bps: int = attrs.field(validator=fields.integer(minimum=BONUS_BASE_BPS))
    changed_at: int = attrs.field(validator=fields.timestamp())
    channel: StakeChannel | None = attrs.field(
        default=None, validator=attrs.validators.optional(fields.instance_of(StakeChannel))
    )
    next_verification_at: int | None = attrs.field(default=None, validator=_optional_time)
    grace_until: int | None = attrs.field(default=None, validator=_optional_time)
    cooldown_until: int | None = attrs.field(default=None, validator=_optional_time)

    def __attrs_post_init__(self) -> None:
        if self.status is StakeStatus.ACTIVE and (
            self.channel is None
            or not self.channel.confirmed
            or self.channel.own_balance_sat < self.required_sats
        ):
            raise InvalidValue("channel", "an active stake needs a confirmed qualifying channel")
        if (self.status is StakeStatus.DEGRADED) != (self.grace_until is not None):
            raise InvalidValue("grace_until", "is set exactly when the stake is degraded")
        if (self.status is StakeStatus.SLASHED) != (self.cooldown_until is not None):
            raise InvalidValue("cooldown_until", "is set exactly when the stake is slashed")

    # --- registration -------------------------------------------------------------------

    @classmethod
    def register(
        cls,
        public_key: str,
        check: StakeCheck,
        now: int,
        previous: Stake | None = None,
        policy: StakePolicy = DEFAULT_POLICY,
    ) -> Stake:
        """Starts a registration in "pending" (spec 4.12.2 PASS branch, SRS-STAKE-01/07).

        ``previous`` is the key's last stake record, if any: registration is refused with
        :class:`StakeCooldownActive` while a slash cooldown runs (SRS-STAKE-07) and with
        InvalidTransition while the key is still registered. A failed ``check`` raises
        InsufficientStake with the required amount (REGISTRATION_FAILED).
        """
        if previous is not None:
            if previous.public_key != public_key:
                raise InvalidValue("previous", "belongs to another public key")
            previous.ensure_may_register(now)
        check.raise_if_failed()
        return cls(
            public_key=public_key,
            tier=check.tier,
            status=StakeStatus.PENDING,
            required_sats=check.required_sats,
            capacity_sat=check.capacity_sat,
            bonus_bps=stake_bonus_bps(check.capacity_sat, check.required_sats, policy),
            changed_at=now,
            channel=check.channel,
        )

    @property
    def live(self) -> bool:
        """Registered now: pending, active or degraded (not deregistered, suspended, slashed)."""
        return self.status in _LIVE

    def may_register(self, now: int) -> bool:
        """True when this key may register anew: not registered and not in a slash cooldown."""
        if self.status in _LIVE:
            return False
        return self.cooldown_until is None or now >= self.cooldown_until

    def ensure_may_register(self, now: int) -> None:
        """Raises unless :meth:`may_register` (cooldown: with the remaining seconds)."""
        if self.status in _LIVE:
            raise InvalidTransition(f"public key is already registered ({self.status.value})")
        if self.cooldown_until is not None and now < self.cooldown_until:
            remaining = self.cooldown_until - now
            raise StakeCooldownActive(
                f"slashed key is in cooldown for another {remaining} s "
                f"(until {self.cooldown_until})",
                cooldown_until=self.cooldown_until,
                remaining_s=remaining,
            )

    # --- verification -------------------------------------------------------------------

    def verified(self, check: StakeCheck, now: int, policy: StakePolicy = DEFAULT_POLICY) -> Stake:
        """A pending stake seen again: "active" once its qualifying channel is confirmed.

        Otherwise it stays pending with what the check saw (spec 4.12.2, SRS-STAKE-01).
        """
        self._expect(now, _PENDING, "verify")
        self._same_tier(check)
        if check.confirmed:
            return self._seen(
                check,
                now,
                policy,
                status=StakeStatus.ACTIVE,
                next_verification_at=now + policy.reverify_period_s,
            )
        return self._seen(check, now, policy, status=StakeStatus.PENDING)

    def reverified(
        self, check: StakeCheck, now: int, policy: StakePolicy = DEFAULT_POLICY
    ) -> Stake:
        """The periodic re-verification of an active or degraded stake (SRS-STAKE-02/03).

        active + no confirmed qualifying channel → degraded with a grace deadline; degraded +
        qualifying channel before the deadline → active; a degraded stake seen at or after
        its deadline is suspended whatever the check says. The bonus follows the capacity
        (SRS-STAKE-10).
        """
        self._expect(now, _VERIFIED, "re-verify")
        self._same_tier(check)
        next_at = now + policy.reverify_period_s
        if self.status is StakeStatus.DEGRADED:
            assert self.grace_until is not None
            if now >= self.grace_until:
                return self._suspended(now)
            grace_until = self.grace_until
        else:
            grace_until = now + policy.grace_period_s
        if check.confirmed:
            return self._seen(
                check, now, policy, status=StakeStatus.ACTIVE, next_verification_at=next_at
            )
        return self._seen(
            check,
            now,
            policy,
            status=StakeStatus.DEGRADED,
            # Looked at again no later than the grace deadline, so suspension is on time.
            next_verification_at=min(next_at, grace_until),
            grace_until=grace_until,
        )

    def verification_due(self, now: int) -> bool:
        """True when an active or degraded stake should be re-verified (SRS-STAKE-02)."""
        return (
            self.status in _VERIFIED
            and self.next_verification_at is not None
            and now >= self.next_verification_at
        )

    def tick(self, now: int) -> Stake:
        """Lets time pass: a degraded stake whose grace has run out is suspended (SRS-STAKE-03).

        Every other stake is returned unchanged.
        """
        self._expect(now, set(StakeStatus), "tick")
        if (
            self.status is StakeStatus.DEGRADED
            and self.grace_until is not None
            and now >= self.grace_until
        ):
            return self._suspended(now)
        return self

    # --- leaving ------------------------------------------------------------------------

    def cooperatively_closed(self, now: int) -> Stake:
        """The node closed its channel cooperatively: deregistered, no cooldown (SRS-STAKE-08)."""
        self._expect(now, _LIVE | {StakeStatus.SUSPENDED}, "deregister")
        return self._unverified(now, StakeStatus.DEREGISTERED)

    def slashed(self, now: int, policy: StakePolicy = DEFAULT_POLICY) -> Stake:
        """A slashing decision: the 30-day cooldown of this public key starts (SRS-STAKE-07).

        The channel to force-close stays in :attr:`channel` (SRS-STAKE-05, SRS-LN-12).
        """
        self._expect(now, set(StakeStatus) - {StakeStatus.SLASHED}, "slash")
        return self._unverified(now, StakeStatus.SLASHED, cooldown_until=now + policy.cooldown_s)

    def reinstated(self, now: int) -> Stake:
        """The slashing was reversed on appeal: the cooldown is lifted (SRS-STAKE-07).

        The stake ends as ``deregistered``, the state of a key that left without misbehaving:
        its channel was force-closed, so the node registers again, at once, with a channel.
        """
        self._expect(now, {StakeStatus.SLASHED}, "reinstate")
        return fields.evolve(
            self,
            status=StakeStatus.DEREGISTERED,
            changed_at=now,
            next_verification_at=None,
            grace_until=None,
            cooldown_until=None,
        )

    # --- internals ----------------------------------------------------------------------

    def _expect(self, now: int, allowed: Iterable[StakeStatus], move: str) -> None:
        if isinstance(now, bool) or not isinstance(now, int) or now < 0:
            raise InvalidValue("now", "must be POSIX seconds (an integer ≥ 0)")
        if now < self.changed_at:
            raise InvalidValue("now", f"is before the last change ({self.changed_at})")
        if self.status not in allowed:
            raise InvalidTransition(f"cannot {move} a {self.status.value} stake")

    def _same_tier(self, check: StakeCheck) -> None:
        if not isinstance(check, StakeCheck):
            raise InvalidValue("check", f"must be a StakeCheck, got {type(check).__name__}")
        if check.tier is not self.tier:
            raise InvalidValue(
                "check", f"is for {check.tier.value}, the stake is {self.tier.value}"
            )

    def _seen(
        self,
        check: StakeCheck,
        now: int,
        policy: StakePolicy,
        *,
        status: StakeStatus,
        next_verification_at: int | None = None,
        grace_until: int | None = None,
    ) -> Stake:
        return fields.evolve(
            self,
            status=status,
            required_sats=check.required_sats,
            capacity_sat=check.capacity_sat,
            bonus_bps=stake_bonus_bps(check.capacity_sat, check.required_sats, policy),
            changed_at=now,
            channel=check.channel if check.channel is not None else self.channel,
            next_verification_at=next_verification_at,
            grace_until=grace_until,
        )

    def _suspended(self, now: int) -> Stake:
        return self._unverified(now, StakeStatus.SUSPENDED)

    def _unverified(
        self, now: int, status: StakeStatus, *, cooldown_until: int | None = None
    ) -> Stake:
        """Moved to ``status`` at ``now``, no longer re-verified nor in a grace period."""
        return fields.evolve(
            self,
            status=status,
            changed_at=now,
            next_verification_at=None,
            grace_until=None,
            cooldown_until=cooldown_until if cooldown_until is not None else self.cooldown_until,
        )
