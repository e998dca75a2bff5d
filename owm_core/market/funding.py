"""Funded work only: every task's money is held in escrow before any node runs it.

This module owns the money rules of task funding (SRS-LN-04 pays nodes out of it, SRS-LN-05
logs what it decides, SRS-LN-07 is how a client's invoice is paid):

* **Who pays.** A :attr:`Payer.CLIENT` task is paid by its submitter before dispatch
  (:func:`fund_client_task`: a paid invoice, or a prepaid balance, worth at least
  :func:`escrow_required_msat`). A :attr:`Payer.NETWORK` task (FL rounds, sample traffic) draws
  on the treasury's budget for the current period (:func:`fund_network_task`); a draw that
  would exceed the period's budget is refused, and the budget starts afresh each period.
* **Prices are capped.** A replica's price is at most :attr:`FundingRules.max_price_msat`
  (configurable); a higher price is refused with an ``InvalidValue`` naming the cap, so no
  submitter can make the escrow pay a node an unbounded amount.
* **Fixed split, integer msat.** Each settled replica pays its node exactly ``price_msat`` and
  the treasury ``treasury_share_msat = floor(price × fee_ppm / 10⁶)`` on top (client tasks
  only: the treasury does not charge itself, so a network task's share is 0). A replica
  therefore costs ``price + share`` and a task's escrow is ``replicas × (price + share)``.
* **Prepaid balances.** A client funds its tasks from a :class:`Balance` keyed by its
  submitter key: paid invoices credit it (:func:`credit_balance`), a task's escrow is debited
  from it before the task is stored (:func:`debit_balance`, refused with
  ``InsufficientFunds`` naming the msat missing) and refunds return to it
  (:func:`refund_to_balance`); ``available = funded − escrowed + refunded`` always.
* **A node is paid at most the funded price.** :func:`settle_replica` takes what the node is
  actually owed (the negotiated midpoint, at most the request's maximum = the escrowed
  price); whatever the escrow still holds when the task ends is refunded.
* **Refunds.** When a task ends (verified, failed or expired) :func:`close_escrow` returns the
  unspent remainder to whoever funded it: the client, or the treasury for network tasks.
  Refunded network money does not reopen the period's budget: the budget caps what is drawn.

Conservation, checked by property tests over random task streams: for every escrow
``funded_msat == paid_to_nodes_msat + treasury_share_msat + refunded_msat + held_msat``, so
over all tasks the sats paid to nodes + treasury shares + refunds (+ what is still held) equal
the sats collected + the budget drawn, never more; no balance is ever negative.

Money is integer msat; time is POSIX seconds passed in by the caller.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from owm_core import fields
from owm_core.errors import InsufficientFunds, InvalidTransition, InvalidValue, PolicyViolation
from owm_core.identity.envelopes import canonical_bytes, sha256_hex
from owm_core.market.tasks import TaskRequest

PPM = 1_000_000
DEFAULT_FEE_PPM = 50_000
"""The treasury's share of each settled client replica: 5 % on top of the node's price."""
DEFAULT_PERIOD_S = 86_400
"""Network tasks draw on a daily treasury budget by default."""
MAX_REPLICAS = 101
"""The most replicas one task may fund (the largest redundancy a verification policy allows)."""

_ID = fields.text(max_len=128)


class Payer(enum.Enum):
    """Who funds a task: its submitting client, or the treasury's network budget."""

    CLIENT = "client"
    NETWORK = "network"


@attrs.frozen
class FundingRules:
    """The configurable funding limits of a coordinator.

    ``max_price_msat`` caps one replica's price; ``fee_ppm`` is the treasury's share of a
    settled client replica; ``period_budget_msat`` is what network tasks may draw per
    ``period_s`` seconds (periods are ``now // period_s``).
    """

    max_price_msat: int = attrs.field(validator=fields.integer(minimum=1))
    period_budget_msat: int = attrs.field(validator=fields.money())
    fee_ppm: int = attrs.field(default=DEFAULT_FEE_PPM, validator=fields.integer(0, PPM))
    period_s: int = attrs.field(default=DEFAULT_PERIOD_S, validator=fields.integer(minimum=1))


def _int(name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidValue(name, f"must be an integer ≥ {minimum}, got {value!r}")
    return value


def check_price(price_msat: int, rules: FundingRules) -> int:
    """Return ``price_msat`` if it is a whole msat amount within the configured cap.

    The error names the cap and the setting, so a client knows what it may offer.
    """
    _int("price_msat", price_msat)
    if price_msat > rules.max_price_msat:
        raise InvalidValue(
            "price_msat",
            f"exceeds the maximum price per replica of {rules.max_price_msat} msat "
            f"(max_price_msat), got {price_msat}",
        )
    return price_msat


def treasury_share_msat(price_msat: int, payer: Payer, rules: FundingRules) -> int:
    """The treasury's share of one settled replica: ``floor(price × fee_ppm / 10⁶)``.

    Zero for network tasks, which the treasury funds itself.
    """
    check_price(price_msat, rules)
    if payer is Payer.NETWORK:
        return 0
    return price_msat * rules.fee_ppm // PPM


def escrow_required_msat(price_msat: int, replicas: int, payer: Payer, rules: FundingRules) -> int:
    """What a task must be funded with: ``replicas × (price + treasury share)``.

    A client's task offers a price above zero: its escrow is what makes a submission cost its
    client something, so a free one would let anyone store tasks no node is paid for."""
    _int("replicas", replicas, minimum=1)
    if payer is Payer.CLIENT and price_msat <= 0:
        raise InvalidValue(
            "price_msat", "a client's task must offer a price above 0 msat (nodes are paid "
            "from its escrow, funded by the client's prepaid balance)",
        )
    if replicas > MAX_REPLICAS:
        raise InvalidValue("replicas", f"must be ≤ {MAX_REPLICAS}, got {replicas}")
    return replicas * (price_msat + treasury_share_msat(price_msat, payer, rules))


@attrs.frozen
class Payout:
    """What settling one replica moves: ``node_msat`` to its node, the share to the treasury."""

    task_id: str = attrs.field(validator=_ID)
    replica_id: str = attrs.field(validator=_ID)
    node_msat: int = attrs.field(validator=fields.money())
    treasury_share_msat: int = attrs.field(validator=fields.money())


def _ids(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _check_books(instance: Escrow, _attribute: object, _value: object) -> None:
    spent = instance.paid_to_nodes_msat + instance.treasury_share_msat + instance.refunded_msat
    if spent + instance.held_msat != instance.funded_msat:
        raise InvalidValue("held_msat", "paid + shares + refunds + held must equal the funding")


@attrs.frozen
class Escrow:
    """One task's money: what funded it, what was paid out of it and what it still holds.

    Build it with :func:`fund_client_task` or :func:`fund_network_task`; every move returns a
    new ``Escrow`` whose books still balance.
    """

    task_id: str = attrs.field(validator=_ID)
    payer: Payer = attrs.field(validator=fields.instance_of(Payer))
    price_msat: int = attrs.field(validator=fields.money())
    share_msat: int = attrs.field(validator=fields.money())
    replicas: int = attrs.field(validator=fields.integer(1, MAX_REPLICAS))
    funded_msat: int = attrs.field(validator=fields.money())
    held_msat: int = attrs.field(validator=fields.money())
    paid_to_nodes_msat: int = attrs.field(default=0, validator=fields.money())
    treasury_share_msat: int = attrs.field(default=0, validator=fields.money())
    refunded_msat: int = attrs.field(default=0, validator=fields.money())
    settled_replica_ids: frozenset[str] = attrs.field(default=frozenset(), converter=_ids)
    #: Who funded it: the client's submitter key (hex), or the name of a network budget.
    funder: str = attrs.field(default="", validator=fields.text(min_len=0, max_len=128))
    opened_at: int = attrs.field(default=0, validator=fields.integer(minimum=0))
    closed: bool = attrs.field(default=False, validator=[fields.instance_of(bool), _check_books])

    @property
    def replica_cost_msat(self) -> int:
        """What one settled replica takes out of the escrow: price plus treasury share."""
        return self.price_msat + self.share_msat


def fund_client_task(
    task_id: str,
    price_msat: int,
    replicas: int,
    paid_msat: int,
    rules: FundingRules,
    *,
    funder: str = "",
    opened_at: int = 0,
) -> Escrow:
    """Open the escrow of a client task from the ``paid_msat`` its submitter paid.

    Refused (``PolicyViolation``) when the payment is short of :func:`escrow_required_msat`;
    any overpayment is refunded at once, so the escrow holds exactly the required amount.
    """
    required = escrow_required_msat(price_msat, replicas, Payer.CLIENT, rules)
    _int("paid_msat", paid_msat)
    if paid_msat < required:
        raise PolicyViolation(
            f"task {task_id} needs {required} msat paid before dispatch, got {paid_msat}"
        )
    return Escrow(
        task_id=task_id,
        payer=Payer.CLIENT,
        price_msat=price_msat,
        share_msat=treasury_share_msat(price_msat, Payer.CLIENT, rules),
        replicas=replicas,
        funded_msat=paid_msat,
        held_msat=required,
        refunded_msat=paid_msat - required,
        funder=funder,
        opened_at=opened_at,
    )


@attrs.frozen
class PeriodBudget:
    """What network tasks drew from the treasury in one budget period (``now // period_s``)."""

    period: int = attrs.field(validator=fields.integer(minimum=0))
    drawn_msat: int = attrs.field(default=0, validator=fields.money())


def period_of(now: int, rules: FundingRules) -> int:
    """The budget period that contains POSIX time ``now``."""
    return _int("now", now) // rules.period_s


def budget_at(budget: PeriodBudget, now: int, rules: FundingRules) -> PeriodBudget:
    """``budget`` as it stands at ``now``: a fresh, undrawn budget once a new period began."""
    current = period_of(now, rules)
    if current < budget.period:
        raise InvalidValue("now", f"lies before budget period {budget.period}")
    return budget if current == budget.period else PeriodBudget(current)


def fund_network_task(
    budget: PeriodBudget,
    task_id: str,
    price_msat: int,
    replicas: int,
    now: int,
    rules: FundingRules,
    *,
    funder: str = "",
) -> tuple[PeriodBudget, Escrow]:
    """Draw a network task's escrow from the treasury's budget for the period of ``now``.

    Refused (``PolicyViolation``) when the draw would take the period past
    ``period_budget_msat``; the next period starts with the whole budget again.
    """
    required = escrow_required_msat(price_msat, replicas, Payer.NETWORK, rules)
    current = budget_at(budget, now, rules)
    if current.drawn_msat + required > rules.period_budget_msat:
        left = rules.period_budget_msat - current.drawn_msat
        raise PolicyViolation(
            f"network task {task_id} needs {required} msat but only {left} msat of this "
            f"period's treasury budget is left"
        )
    escrow = Escrow(
        task_id=task_id,
        payer=Payer.NETWORK,
        price_msat=price_msat,
        share_msat=0,
        replicas=replicas,
        funded_msat=required,
        held_msat=required,
        funder=funder,
        opened_at=now,
    )
    return fields.evolve(current, drawn_msat=current.drawn_msat + required), escrow


def settle_replica(
    escrow: Escrow, replica_id: str, node_msat: int | None = None
) -> tuple[Escrow, Payout]:
    """Pay one verified replica: its node gets ``node_msat``, the treasury its share.

    ``node_msat`` is what the node is owed (the negotiated price; the funded price when
    omitted) and may not exceed the funded price, so the midpoint rule can never pay more than
    was paid in. Each replica is paid at most once and never more replicas than were funded, so
    the escrow can never pay out more than it holds.
    """
    owed = escrow.price_msat if node_msat is None else _int("node_msat", node_msat)
    if owed > escrow.price_msat:
        raise InvalidValue(
            "node_msat", f"exceeds the funded price of {escrow.price_msat} msat, got {owed}"
        )
    if escrow.closed:
        raise InvalidTransition(f"the escrow of task {escrow.task_id} is closed")
    if replica_id in escrow.settled_replica_ids:
        raise InvalidTransition(f"replica {replica_id} of {escrow.task_id} is already paid")
    if len(escrow.settled_replica_ids) >= escrow.replicas:
        raise InvalidTransition(f"all {escrow.replicas} replicas of {escrow.task_id} are paid")
    payout = Payout(escrow.task_id, replica_id, owed, escrow.share_msat)
    return (
        fields.evolve(
            escrow,
            held_msat=escrow.held_msat - owed - escrow.share_msat,
            paid_to_nodes_msat=escrow.paid_to_nodes_msat + payout.node_msat,
            treasury_share_msat=escrow.treasury_share_msat + payout.treasury_share_msat,
            settled_replica_ids=escrow.settled_replica_ids | {replica_id},
        ),
        payout,
    )


def close_escrow(escrow: Escrow) -> tuple[Escrow, int]:
    """End the task (verified, failed or expired) and refund what its escrow still holds.

    Returns the closed escrow and the refund in msat, owed to the client or, for a network
    task, back to the treasury. Closing twice is refused: a refund is made once.
    """
    if escrow.closed:
        raise InvalidTransition(f"the escrow of task {escrow.task_id} is already closed")
    refund = escrow.held_msat
    closed = fields.evolve(
        escrow, held_msat=0, refunded_msat=escrow.refunded_msat + refund, closed=True
    )
    return closed, refund


def _check_balance(instance: Balance, _attribute: object, _value: object) -> None:
    expected = instance.funded_msat - instance.escrowed_msat + instance.refunded_msat
    if instance.available_msat != expected:
        raise InvalidValue("available_msat", "must equal funded − escrowed + refunded")


@attrs.frozen
class Balance:
    """A client's prepaid balance, keyed by its submitter key (64 hex, Ed25519).

    ``funded_msat`` is what paid invoices credited, ``escrowed_msat`` what tasks took,
    ``refunded_msat`` what ended tasks gave back; ``available_msat`` is what is left to spend.
    """

    public_key: str = attrs.field(validator=fields.text(min_len=64, max_len=64))
    funded_msat: int = attrs.field(default=0, validator=fields.money())
    escrowed_msat: int = attrs.field(default=0, validator=fields.money())
    refunded_msat: int = attrs.field(default=0, validator=fields.money())
    available_msat: int = attrs.field(default=0, validator=[fields.money(), _check_balance])


def credit_balance(balance: Balance, amount_msat: int) -> Balance:
    """Credit a paid invoice's ``amount_msat`` to the balance."""
    return _made_available(balance, "funded_msat", amount_msat)


def debit_balance(balance: Balance, amount_msat: int, task_id: str) -> Balance:
    """Take a task's escrow from the balance; ``InsufficientFunds`` naming what is missing."""
    amount = _int("amount_msat", amount_msat)
    if amount > balance.available_msat:
        missing = amount - balance.available_msat
        raise InsufficientFunds(
            f"task {task_id} needs {amount} msat in escrow but the submitter's prepaid balance "
            f"holds {balance.available_msat} msat: {missing} msat missing (FundBalance tops it "
            f"up)",
            missing,
        )
    return fields.evolve(
        balance,
        escrowed_msat=balance.escrowed_msat + amount,
        available_msat=balance.available_msat - amount,
    )


def refund_to_balance(balance: Balance, amount_msat: int) -> Balance:
    """Return an ended task's unspent escrow to the balance."""
    return _made_available(balance, "refunded_msat", amount_msat)


def _made_available(balance: Balance, counter: str, amount_msat: int) -> Balance:
    """``amount_msat`` added to the balance's ``counter`` (funded or refunded) and to what is
    available: money that comes in, from an invoice or back from an escrow."""
    amount = _int("amount_msat", amount_msat)
    return fields.evolve(
        balance,
        **{counter: getattr(balance, counter) + amount},
        available_msat=balance.available_msat + amount,
    )


def submission_digest(request: TaskRequest, input_data: bytes, coordinator_key: str) -> str:
    """SHA-256 (hex) of a task's canonical request fields, its input's SHA-256 and the public
    key of the coordinator it is submitted to.

    What a submitter signs (:class:`~owm_core.identity.envelopes.TaskSubmission`): nobody can
    reuse its signature for another task, price, replica count or input, nor at another
    coordinator (a testnet's operator replaying it, while fresh, at mainnet's to spend the
    submitter's balance there; SRS-SEC-03).
    """
    fields_ = {
        "coordinator": coordinator_key,
        "gpu_required": request.gpu_required,
        "input_schema_id": request.input_schema_id,
        "input_schema_version": request.input_schema_version,
        "input_sha256": sha256_hex(bytes(input_data)),
        "max_price_msat": request.max_price_msat,
        "min_ram_mb": request.min_ram_mb,
        "min_tier": request.min_tier.value,
        "min_vram_mb": request.min_vram_mb,
        "task_id": request.task_id,
        "task_type": request.task_type,
    }
    return sha256_hex(canonical_bytes(fields_, "request"))


class TopUpState(enum.Enum):
    """Where a balance top-up invoice stands: unpaid, credited (once), or expired unpaid."""

    OPEN = "open"
    CREDITED = "credited"
    EXPIRED = "expired"


@attrs.frozen
class TopUp:
    """An invoice the treasury issued to top up a submitter's prepaid balance.

    It is credited exactly once, when the treasury's Lightning node reports it settled; an
    invoice past ``expires_at`` unpaid is closed and never credited.
    """

    payment_hash: str = attrs.field(validator=fields.text(min_len=64, max_len=64))
    public_key: str = attrs.field(validator=fields.text(min_len=64, max_len=64))
    amount_msat: int = attrs.field(validator=fields.integer(minimum=1))
    bolt11: str = attrs.field(validator=fields.text(max_len=4_000))
    created_at: int = attrs.field(validator=fields.integer(minimum=0))
    expires_at: int = attrs.field(validator=fields.integer(minimum=0))
    state: TopUpState = attrs.field(
        default=TopUpState.OPEN, validator=fields.instance_of(TopUpState)
    )


def credit_top_up(balance: Balance, top_up: TopUp) -> tuple[Balance, TopUp]:
    """Credit a settled top-up to its balance; refused once it left OPEN (credited once)."""
    if top_up.state is not TopUpState.OPEN:
        raise InvalidTransition(f"top-up {top_up.payment_hash} is {top_up.state.value}")
    if balance.public_key != top_up.public_key:
        raise InvalidValue("public_key", "the top-up belongs to another balance")
    return credit_balance(balance, top_up.amount_msat), fields.evolve(
        top_up, state=TopUpState.CREDITED
    )
