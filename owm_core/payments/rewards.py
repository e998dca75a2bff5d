"""Task rewards, the reward ledger and the reliability score (SRS-LN-04, SRS-STAKE-10, SRS-SEC-11).

Owns the reward formula (:func:`task_reward_msat`), the per-node :class:`RewardLedger` of
earned, paid and forfeited millisatoshis, and the reliability rule (:class:`ReliabilityRule`).

Everything is integer: money in msat, reliability in parts per million (0..1 000 000, the spec's
0.0–1.0 ``reliability_score`` × 10⁶), the stake bonus in basis points (10 000 = 1.00×).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidTransition, InvalidValue

#: Reliability is counted in parts per million: 1 000 000 ppm = a perfect record.
PPM = 1_000_000
#: Stake bonus unit: 10 000 basis points = 1.00× (see owm_core.stake.channel.stake_bonus_bps).
BPS = 10_000

_ID = fields.text(max_len=128)


@attrs.frozen
class TaskReward:
    """The inputs of one task's reward; :attr:`amount_msat` is what the node earns.

    ``amount_msat = floor(base_price_msat × reliability_ppm × stake_bonus_bps / (10⁶ × 10⁴))``
    — rounded down once, at the end, so the treasury never pays a fraction of a msat more than
    the exact product (SRS-LN-04, SRS-STAKE-10).
    """

    base_price_msat: int = attrs.field(validator=fields.money())
    reliability_ppm: int = attrs.field(validator=fields.integer(minimum=0, maximum=PPM))
    stake_bonus_bps: int = attrs.field(validator=fields.integer(minimum=0))

    @property
    def amount_msat(self) -> int:
        """The reward in msat, floored."""
        return self.base_price_msat * self.reliability_ppm * self.stake_bonus_bps // (PPM * BPS)


def task_reward_msat(base_price_msat: int, reliability_ppm: int, stake_bonus_bps: int) -> int:
    """Reward = base price × reliability × stake bonus, in msat, rounded down (SRS-LN-04).

    Monotone in each factor; never above ``base_price_msat × stake_bonus_bps / 10 000``.
    Raises InvalidValue naming the argument for floats, bools or out-of-range values.
    """
    return TaskReward(
        base_price_msat=base_price_msat,
        reliability_ppm=reliability_ppm,
        stake_bonus_bps=stake_bonus_bps,
    ).amount_msat


#: Weight of the newest outcome in the moving average: 50 000 ppm = 5 %.
RELIABILITY_ALPHA_PPM = 50_000
#: Reliability of a node without history: 500 000 ppm = 0.5.
RELIABILITY_INITIAL_PPM = 500_000


@attrs.frozen
class ReliabilityRule:
    """Exponential moving average of verified (1) and failed (0) tasks, in ppm (SRS-SEC-11).

    ``after_success(r) = r + floor((10⁶ − r) × α / 10⁶)`` and
    ``after_failure(r) = r − ceil(r × α / 10⁶)``: both round against the node, so reputation is
    earned slowly and lost promptly. Defaults: α = 50 000 ppm (5 %), a new node starts at
    500 000 ppm. A node flagged as malicious drops to 0 (:meth:`after_malicious`, SRS-SEC-11).
    """

    alpha_ppm: int = attrs.field(
        default=RELIABILITY_ALPHA_PPM, validator=fields.integer(minimum=1, maximum=PPM)
    )
    initial_ppm: int = attrs.field(
        default=RELIABILITY_INITIAL_PPM, validator=fields.integer(minimum=0, maximum=PPM)
    )

    def after_success(self, reliability_ppm: int) -> int:
        """The score after a task whose result was verified."""
        current = _reliability(reliability_ppm)
        return current + (PPM - current) * self.alpha_ppm // PPM

    def after_failure(self, reliability_ppm: int) -> int:
        """The score after a task that failed verification or timed out."""
        current = _reliability(reliability_ppm)
        return current - (-(-current * self.alpha_ppm // PPM))

    def after(self, reliability_ppm: int, verified: bool) -> int:
        """The score after one task outcome: ``verified`` True for success."""
        if not isinstance(verified, bool):
            raise InvalidValue("verified", f"must be a bool, got {type(verified).__name__}")
        if verified:
            return self.after_success(reliability_ppm)
        return self.after_failure(reliability_ppm)

    def after_malicious(self, reliability_ppm: int) -> int:
        """A node flagged for malicious behaviour has its reputation set to 0 (SRS-SEC-11)."""
        _reliability(reliability_ppm)
        return 0


def _reliability(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= PPM:
        raise InvalidValue("reliability_ppm", f"must be an integer in [0, {PPM}], got {value!r}")
    return value


@attrs.frozen
class NodeAccount:
    """One node's reward account: earned = paid + forfeited + unpaid, always (SRS-LN-10)."""

    node_id: str = attrs.field(validator=_ID)
    earned_msat: int = attrs.field(default=0, validator=fields.money())
    paid_msat: int = attrs.field(default=0, validator=fields.money())
    forfeited_msat: int = attrs.field(default=0, validator=fields.money())

    def __attrs_post_init__(self) -> None:
        if self.paid_msat + self.forfeited_msat > self.earned_msat:
            raise InvalidValue("paid_msat", "paid + forfeited exceeds earned")

    @property
    def unpaid_msat(self) -> int:
        """What the node has earned and neither been paid nor forfeited."""
        return self.earned_msat - self.paid_msat - self.forfeited_msat


@attrs.frozen
class _Earning:
    """Validates the arguments of :meth:`RewardLedger.earn`."""

    node_id: str = attrs.field(validator=_ID)
    task_id: str = attrs.field(validator=_ID)
    amount_msat: int = attrs.field(validator=fields.money())


@attrs.frozen
class _Payment:
    """Validates the arguments of :meth:`RewardLedger.pay`."""

    node_id: str = attrs.field(validator=_ID)
    amount_msat: int = attrs.field(validator=fields.money(minimum=1))


def _frozen_accounts(value: Any) -> Any:
    return MappingProxyType(dict(value)) if isinstance(value, Mapping) else value


def _accounts_valid(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Mapping):
        raise InvalidValue(attribute.name, "must be a mapping")
    for key, account in value.items():
        if not isinstance(account, NodeAccount) or account.node_id != key:
            raise InvalidValue(attribute.name, f"entry {key!r} must be that node's NodeAccount")


def _credits_valid(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Mapping):
        raise InvalidValue(attribute.name, "must be a mapping")
    totals: dict[str, int] = {}
    for key, amount in value.items():
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)):
            raise InvalidValue(attribute.name, f"key {key!r} must be (node_id, task_id)")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise InvalidValue(attribute.name, f"amount for {key!r} must be an integer ≥ 0")
        totals[key[0]] = totals.get(key[0], 0) + amount
    accounts: Mapping[str, NodeAccount] = instance.accounts
    for node_id, account in accounts.items():
        if totals.get(node_id, 0) != account.earned_msat:
            raise InvalidValue(attribute.name, f"credits of {node_id!r} do not sum to earned_msat")
    if set(totals) - set(accounts):
        raise InvalidValue(attribute.name, "credits a node that has no account")


@attrs.frozen
class RewardLedger:
    """Per-node earned, paid and forfeited msat (SRS-LN-04, SRS-LN-10, SRS-SEC-11).

    A frozen value: every operation returns a new ledger. Every msat is conserved — for each
    node ``earned = paid + forfeited + unpaid`` and earned is exactly the sum of the node's
    credited tasks. Earning is idempotent per ``(node_id, task_id)``: a replayed completion
    proof credits once (the same task may pay several nodes, e.g. redundant execution).
    """

    accounts: Mapping[str, NodeAccount] = attrs.field(
        factory=dict, converter=_frozen_accounts, validator=_accounts_valid
    )
    credits: Mapping[tuple[str, str], int] = attrs.field(
        factory=dict, converter=_frozen_accounts, validator=_credits_valid
    )

    def account(self, node_id: str) -> NodeAccount:
        """The node's account; an all-zero account for a node that never earned."""
        found = self.accounts.get(node_id)
        return found if found is not None else NodeAccount(node_id=node_id)

    def unpaid_msat(self, node_id: str) -> int:
        """What the node is owed right now."""
        return self.account(node_id).unpaid_msat

    def credited(self, node_id: str, task_id: str) -> bool:
        """True when the task has already been credited to the node."""
        return (node_id, task_id) in self.credits

    def earn(self, node_id: str, task_id: str, amount_msat: int) -> RewardLedger:
        """Credits a verified task's reward to a node, once per task (SRS-LN-04).

        Earning the same ``(node_id, task_id)`` again with the same amount changes nothing;
        with a different amount it raises InvalidTransition (a task has one price).
        """
        earning = _Earning(node_id=node_id, task_id=task_id, amount_msat=amount_msat)
        key = (earning.node_id, earning.task_id)
        if key in self.credits:
            if self.credits[key] != earning.amount_msat:
                raise InvalidTransition(
                    f"task {task_id!r} was credited {self.credits[key]} msat, not {amount_msat}"
                )
            return self
        before = self.account(node_id)
        after = attrs.evolve(before, earned_msat=before.earned_msat + earning.amount_msat)
        return RewardLedger(
            accounts={**self.accounts, node_id: after},
            credits={**self.credits, key: earning.amount_msat},
        )

    def pay(self, node_id: str, amount_msat: int) -> RewardLedger:
        """Records a Lightning payment to a node; at most its unpaid balance (SRS-LN-04)."""
        payment = _Payment(node_id=node_id, amount_msat=amount_msat)
        before = self.account(payment.node_id)
        if payment.amount_msat > before.unpaid_msat:
            raise InvalidValue(
                "amount_msat", f"exceeds the unpaid balance of {before.unpaid_msat} msat"
            )
        after = attrs.evolve(before, paid_msat=before.paid_msat + payment.amount_msat)
        return RewardLedger(accounts={**self.accounts, node_id: after}, credits=self.credits)

    def forfeit_unpaid(self, node_id: str) -> RewardLedger:
        """A slashed node loses everything still unpaid (SRS-SEC-11; the real penalty of a slash).

        Paid msat stay paid; the unpaid balance moves to ``forfeited_msat``.
        """
        before = self.account(node_id)
        if before.unpaid_msat == 0:
            return self
        after = attrs.evolve(before, forfeited_msat=before.forfeited_msat + before.unpaid_msat)
        return RewardLedger(accounts={**self.accounts, node_id: after}, credits=self.credits)

    @property
    def total(self) -> NodeAccount:
        """All nodes together as one account (node id ``*``): earned, paid, forfeited, unpaid."""
        accounts = self.accounts.values()
        return NodeAccount(
            node_id="*",
            earned_msat=sum(account.earned_msat for account in accounts),
            paid_msat=sum(account.paid_msat for account in accounts),
            forfeited_msat=sum(account.forfeited_msat for account in accounts),
        )
