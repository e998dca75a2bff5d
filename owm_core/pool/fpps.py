"""The mining pool's economics: FPPS crediting, the 80/20 split and payouts (spec 4.11).

* FPPS share value (SRS-POOL-04)::

      value_sat = floor((subsidy_sat + expected_fees_sat) × share_difficulty
                        / network_difficulty × (10_000 − pool_fee_bps) / 10_000)

  The spec's simplified ``(block_subsidy / pool_difficulty) × 0.80`` is the special case
  ``expected_fees_sat = 0``, ``share_difficulty = 1`` (``pool_difficulty`` there is the network
  difficulty, i.e. the expected number of difficulty-1 shares per block) and
  ``pool_fee_bps = 2_000`` (:data:`DEFAULT_POOL_FEE_BPS`): the 20 % withheld is the treasury's
  cut (spec 4.11.1). Ours also pays the expected transaction fees and scales by the share's
  difficulty, which is what FPPS means; the value is floored, so rounding favours the pool.
* The 80 % miners / 20 % treasury split of a block reward (spec 4.11.1), conserving every sat.
* When a miner's balance is due (SRS-POOL-07) and the payout batch that carries the treasury's
  cut together with the miners' payments (SRS-POOL-08).

No I/O: time is passed in as POSIX seconds. The Bitcoin primitives these rules read (subsidy,
targets, shares) live in :mod:`owm_core.pool.bitcoin`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from fractions import Fraction

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.pool.bitcoin import block_subsidy_sat, compact_to_target, difficulty_of_target

BPS_DENOMINATOR = 10_000
DEFAULT_POOL_FEE_BPS = 2_000
"""The pool fee withheld from FPPS value: 20 %, the treasury's cut (spec 4.11.1, SRS-POOL-04)."""
TREASURY_SHARE_BPS = 2_000
"""The treasury's share of a block reward: 20 % (spec 4.11.1); miners receive the rest."""

DEFAULT_PAYOUT_THRESHOLD_SAT = 10_000
"""A miner balance of at least this many sats is paid out at once (SRS-POOL-07)."""
DEFAULT_PAYOUT_INTERVAL_S = 3_600
"""A positive balance is paid at the latest this long after the previous payout (SRS-POOL-07)."""


# --------------------------------------------------------------------------- FPPS


def _positive_difficulty(
    _instance: object, attribute: attrs.Attribute[Fraction], value: object
) -> None:
    if not isinstance(value, Fraction) or value <= 0:
        raise InvalidValue(attribute.name, f"must be a positive int or Fraction, got {value!r}")


def _to_fraction(value: object) -> object:
    """Exact ints become fractions; anything else (floats!) is left for the validator to refuse."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Fraction(value)
    return value


@attrs.frozen
class FppsTerms:
    """What one difficulty unit of work is worth right now (SRS-POOL-04).

    ``network_difficulty`` is exact (an ``int`` or a ``Fraction``; floats are refused); use
    :meth:`from_block` to derive it from a template's ``nBits``. ``pool_fee_bps`` is the share of
    value withheld, in basis points; the default 2,000 is the treasury's 20 %.
    """

    block_subsidy_sat: int = attrs.field(validator=fields.money())
    expected_fees_sat: int = attrs.field(validator=fields.money())
    network_difficulty: Fraction = attrs.field(
        converter=_to_fraction,
        validator=_positive_difficulty,
    )
    pool_fee_bps: int = attrs.field(
        default=DEFAULT_POOL_FEE_BPS, validator=fields.integer(0, BPS_DENOMINATOR)
    )

    @classmethod
    def from_block(
        cls,
        height: int,
        bits: int,
        expected_fees_sat: int = 0,
        pool_fee_bps: int = DEFAULT_POOL_FEE_BPS,
        subsidy_sat: int | None = None,
    ) -> FppsTerms:
        """Terms for mining at ``height`` with network target ``bits`` (subsidy by schedule,
        unless ``subsidy_sat`` replaces it: a test network's pretend block reward)."""
        return cls(
            block_subsidy_sat=block_subsidy_sat(height) if subsidy_sat is None else subsidy_sat,
            expected_fees_sat=expected_fees_sat,
            network_difficulty=difficulty_of_target(compact_to_target(bits)),
            pool_fee_bps=pool_fee_bps,
        )


def _check_share_difficulty(share_difficulty: int | Fraction) -> None:
    if isinstance(share_difficulty, bool) or not isinstance(share_difficulty, int | Fraction):
        raise InvalidValue("share_difficulty", "must be an integer or a Fraction")
    if share_difficulty < 0:
        raise InvalidValue("share_difficulty", f"must be ≥ 0, got {share_difficulty}")


def gross_share_value(terms: FppsTerms, share_difficulty: int | Fraction) -> Fraction:
    """The exact expected block reward a share earns before the pool fee (SRS-POOL-04)."""
    _check_share_difficulty(share_difficulty)
    reward = terms.block_subsidy_sat + terms.expected_fees_sat
    return reward * Fraction(share_difficulty) / terms.network_difficulty


def exact_share_value(terms: FppsTerms, share_difficulty: int | Fraction) -> Fraction:
    """The exact FPPS value of a share after the pool fee, before rounding (SRS-POOL-04)."""
    keep = Fraction(BPS_DENOMINATOR - terms.pool_fee_bps, BPS_DENOMINATOR)
    return gross_share_value(terms, share_difficulty) * keep


def share_value_sat(terms: FppsTerms, share_difficulty: int | Fraction) -> int:
    """The FPPS credit of a share in whole sats, floored in the pool's favour (SRS-POOL-04).

    ``(subsidy + expected fees) × share_difficulty / network_difficulty × (1 − fee)``.
    Crediting shares one by one never pays more than crediting their summed difficulty, and
    pays less by fewer sats than there are shares (each floor loses < 1 sat).
    """
    value = exact_share_value(terms, share_difficulty)
    return value.numerator // value.denominator


@attrs.frozen
class ShareCredit:
    """What a share adds to balances: the miner's FPPS value and the treasury's cut (4.11.1).

    Computed exactly from the terms, never taken from a caller, so not held to
    :data:`~owm_core.fields.MAX_MONEY` (a share far above the network difficulty is worth
    many blocks); the balances they are added to are."""

    miner_sat: int = attrs.field(validator=fields.integer(minimum=0))
    treasury_sat: int = attrs.field(validator=fields.integer(minimum=0))


def credit_share(terms: FppsTerms, share_difficulty: int | Fraction) -> ShareCredit:
    """Split a share's floored gross value into the miner's credit and the treasury's cut.

    The miner gets :func:`share_value_sat`; the treasury gets the rest of the floored gross
    value, so the fee withheld from miners accrues to the treasury (spec 4.11.1, SRS-POOL-08).
    """
    gross = gross_share_value(terms, share_difficulty)
    gross_sat = gross.numerator // gross.denominator
    miner_sat = share_value_sat(terms, share_difficulty)
    return ShareCredit(miner_sat=miner_sat, treasury_sat=gross_sat - miner_sat)


@attrs.frozen
class RewardSplit:
    """A block reward divided between miners (80 %) and the treasury (20 %) (spec 4.11.1)."""

    miners_sat: int = attrs.field(validator=fields.money())
    treasury_sat: int = attrs.field(validator=fields.money())

    @property
    def total_sat(self) -> int:
        """The whole reward: miners plus treasury, to the sat."""
        return self.miners_sat + self.treasury_sat


def split_block_reward(reward_sat: int, treasury_bps: int = TREASURY_SHARE_BPS) -> RewardSplit:
    """Split ``reward_sat`` 80/20 without losing a sat (spec 4.11.1).

    The treasury gets ``floor(reward × 20 %)``; the miners get the remainder, so the rounding
    remainder (< 1 sat of the exact 20 %) always goes to the miners' side.
    """
    if isinstance(reward_sat, bool) or not isinstance(reward_sat, int) or reward_sat < 0:
        raise InvalidValue("reward_sat", f"must be an integer ≥ 0, got {reward_sat!r}")
    if isinstance(treasury_bps, bool) or not isinstance(treasury_bps, int):
        raise InvalidValue("treasury_bps", "must be an integer")
    if not 0 <= treasury_bps <= BPS_DENOMINATOR:
        raise InvalidValue("treasury_bps", f"must be in [0, 10000], got {treasury_bps}")
    treasury = reward_sat * treasury_bps // BPS_DENOMINATOR
    return RewardSplit(miners_sat=reward_sat - treasury, treasury_sat=treasury)


# --------------------------------------------------------------------------- payouts


@attrs.frozen
class PayoutPolicy:
    """When balances are paid (SRS-POOL-07): at ``threshold_sat`` or after ``interval_s``."""

    threshold_sat: int = attrs.field(
        default=DEFAULT_PAYOUT_THRESHOLD_SAT, validator=fields.money(minimum=1)
    )
    interval_s: int = attrs.field(
        default=DEFAULT_PAYOUT_INTERVAL_S, validator=fields.integer(minimum=1)
    )


@attrs.frozen
class MinerAccount:
    """A miner's unpaid FPPS balance, its Lightning destination and its last payout time."""

    miner_id: str = attrs.field(validator=fields.text(max_len=256))
    ln_destination: str = attrs.field(validator=fields.text(max_len=2048))
    balance_sat: int = attrs.field(validator=fields.money())
    last_payout_at: int = attrs.field(validator=fields.timestamp())


def payout_due(
    account: MinerAccount,
    now: int,
    policy: PayoutPolicy | None = None,
    last_block_at: int | None = None,
) -> bool:
    """Whether ``account`` must be paid now: whichever comes first of (SRS-POOL-07)

    * the balance reached the threshold (``balance ≥ threshold_sat``, default 10,000 sats), or
    * ``interval_s`` (default 1 hour) passed since the last payout and the balance is positive, or
    * the pool found a block (at ``last_block_at``) since the last payout (the same second
      counts: better one payout too many than a block's credit left waiting) and the balance
      is positive: what was owed when the block was found is paid at the next sweep, so it is
      dispatched within 60 minutes of the block (SRS-LN-14, SRS-PERF-12) however small.

    An empty balance is never due: there is nothing to send.
    """
    policy = policy or PayoutPolicy()
    if isinstance(now, bool) or not isinstance(now, int) or now < 0:
        raise InvalidValue("now", f"must be POSIX seconds ≥ 0, got {now!r}")
    if account.balance_sat == 0:
        return False
    return (
        account.balance_sat >= policy.threshold_sat
        or now - account.last_payout_at >= policy.interval_s
        or (last_block_at is not None and account.last_payout_at <= last_block_at <= now)
    )


@attrs.frozen
class Payment:
    """One Lightning payment of a batch."""

    destination: str = attrs.field(validator=fields.text(max_len=2048))
    amount_sat: int = attrs.field(validator=fields.money(minimum=1))
    miner_id: str | None = None
    """The miner paid, or ``None`` for the treasury's cut."""


@attrs.frozen
class PayoutBatch:
    """The payments dispatched together: due miners and the treasury's cut (SRS-POOL-08)."""

    created_at: int = attrs.field(validator=fields.timestamp())
    miner_payments: tuple[Payment, ...]
    treasury_payment: Payment | None

    @property
    def payments(self) -> tuple[Payment, ...]:
        """Every payment of the batch, the treasury's last."""
        tail = (self.treasury_payment,) if self.treasury_payment is not None else ()
        return self.miner_payments + tail

    @property
    def total_sat(self) -> int:
        """Sum of all payments in the batch."""
        return sum(p.amount_sat for p in self.payments)

    @property
    def is_empty(self) -> bool:
        """No miner is due, so nothing is sent (the treasury waits for the next batch)."""
        return not self.miner_payments


def plan_payout_batch(
    accounts: Iterable[MinerAccount],
    treasury_owed_sat: int,
    treasury_destination: str,
    now: int,
    policy: PayoutPolicy | None = None,
) -> PayoutBatch:
    """Pay every due miner its whole balance, and the treasury's owed cut in the same batch.

    SRS-POOL-07 decides which miners are due; SRS-POOL-08 puts the treasury's accrued 20 %
    (``treasury_owed_sat``) into the very batch that pays them. If no miner is due the batch is
    empty and the treasury's cut stays owed until the next one. Miner payments are ordered by
    ``miner_id`` so that a batch is deterministic.
    """
    policy = policy or PayoutPolicy()
    if isinstance(treasury_owed_sat, bool) or not isinstance(treasury_owed_sat, int):
        raise InvalidValue("treasury_owed_sat", "must be an integer")
    if treasury_owed_sat < 0:
        raise InvalidValue("treasury_owed_sat", f"must be ≥ 0, got {treasury_owed_sat}")
    listed = list(accounts)
    if len({a.miner_id for a in listed}) != len(listed):
        raise InvalidValue("accounts", "a miner appears more than once")
    due = sorted((a for a in listed if payout_due(a, now, policy)), key=lambda a: a.miner_id)
    miner_payments = tuple(
        Payment(destination=a.ln_destination, amount_sat=a.balance_sat, miner_id=a.miner_id)
        for a in due
    )
    treasury_payment = (
        Payment(destination=treasury_destination, amount_sat=treasury_owed_sat)
        if miner_payments and treasury_owed_sat > 0
        else None
    )
    return PayoutBatch(
        created_at=now, miner_payments=miner_payments, treasury_payment=treasury_payment
    )


# --------------------------------------------------------------------------- per-share msat


MSAT_PER_SAT = 1_000


@attrs.frozen
class MsatCredit:
    """One share's credit in whole msat and the exact fraction of a msat carried to the next."""

    msat: int = attrs.field(validator=fields.integer(minimum=0))  # computed, as ShareCredit
    carry: Fraction = Fraction(0)


def credit_share_msat(
    terms: FppsTerms, share_difficulty: int | Fraction, carry: Fraction = Fraction(0)
) -> MsatCredit:
    """Credit one share in msat as it is accepted, carrying the fraction (SRS-POOL-04).

    ``msat = floor(exact_share_value × 1000 + carry)`` and the remainder (in ``[0, 1)``) is the
    new carry. Crediting a miner's shares one by one this way pays, in total, exactly the floor
    of their summed exact value: no rounding drift however many shares, never more than earned.
    """
    return _msat_with_carry(exact_share_value(terms, share_difficulty), carry)


def treasury_share_value(terms: FppsTerms, share_difficulty: int | Fraction) -> Fraction:
    """The exact part of a share's value withheld for the treasury (its 20 %, SRS-POOL-08):
    the gross value less the miner's :func:`exact_share_value`, so the two add up exactly."""
    return gross_share_value(terms, share_difficulty) - exact_share_value(terms, share_difficulty)


def credit_treasury_msat(
    terms: FppsTerms, share_difficulty: int | Fraction, carry: Fraction = Fraction(0)
) -> MsatCredit:
    """The treasury's cut of one share in msat, its fraction carried like a miner's
    (:func:`credit_share_msat`): in total exactly the floor of the exact cut (SRS-POOL-08)."""
    return _msat_with_carry(treasury_share_value(terms, share_difficulty), carry)


def _msat_with_carry(value_sat: Fraction, carry: Fraction) -> MsatCredit:
    if not 0 <= carry < 1:
        raise InvalidValue("carry", "must be in [0, 1)")
    exact = value_sat * MSAT_PER_SAT + carry
    whole = exact.numerator // exact.denominator
    return MsatCredit(msat=whole, carry=exact - whole)


# --------------------------------------------------------------------------- balances, payouts

FPPS_PAYOUT_PREFIX = "fpps:"
TREASURY_CREDIT_ID = "treasury"
"""The :class:`MinerCredit` row that accrues the treasury's 20 % of every share (SRS-POOL-08);
never a node id (those are ``n`` + 40 hex), so no miner can be paid from it."""


@attrs.frozen
class MinerCredit:
    """What a miner has earned so far, durably: whole msat credited and the exact fraction of a
    msat carried to its next share (``carry`` as ``"numerator/denominator"``), SRS-POOL-04."""

    miner_id: str = attrs.field(validator=fields.text(max_len=256))
    #: Computed share by share, never taken from a caller (see ShareCredit): not held to
    #: MAX_MONEY, as before it existed.
    credited_msat: int = attrs.field(validator=fields.integer(minimum=0))
    carry: str = attrs.field(validator=fields.text(max_len=4096))
    updated_at: int = attrs.field(validator=fields.timestamp())

    def add_share(
        self, terms: FppsTerms, share_difficulty: int | Fraction, now: int
    ) -> tuple[MinerCredit, int]:
        """This credit after one more accepted share, and the msat that share added."""
        return self._added(credit_share_msat(terms, share_difficulty, Fraction(self.carry)), now)

    def add_treasury_cut(
        self, terms: FppsTerms, share_difficulty: int | Fraction, now: int
    ) -> tuple[MinerCredit, int]:
        """This (treasury) credit after one more share's 20 % cut, and the msat it added."""
        return self._added(credit_treasury_msat(terms, share_difficulty, Fraction(self.carry)), now)

    def add_value(self, value_sat: Fraction, now: int) -> tuple[MinerCredit, int]:
        """This credit after one more share worth exactly ``value_sat`` (from
        :func:`exact_share_value` or :func:`treasury_share_value`, computed once per template
        and share difficulty), and the msat it added: the same result as :meth:`add_share` /
        :meth:`add_treasury_cut`, in integer arithmetic on the stored ``carry`` — the pool's
        hot path (SRS-POOL-04, SRS-PERF-11)."""
        credit, (whole,) = self.add_values(value_sat, 1, now)
        return credit, whole

    def add_values(
        self, value_sat: Fraction, count: int, now: int
    ) -> tuple[MinerCredit, list[int]]:
        """This credit after ``count`` more shares each worth exactly ``value_sat``, and the msat
        each of them added, in order: the same as ``count`` calls of :meth:`add_value`, with
        the carry kept as an integer over one denominator between them and reduced once at
        the end (the pool credits a batch of shares this way, SRS-POOL-04, SRS-PERF-11)."""
        den, step, rest = self._steps(value_sat)
        added = []
        for _ in range(count):
            whole, rest = divmod(rest + step, den)
            added.append(whole)
        return self._carrying(rest, den, sum(added), now), added

    def add_run(self, value_sat: Fraction, count: int, now: int) -> tuple[MinerCredit, int]:
        """This credit after ``count`` more shares each worth exactly ``value_sat``, and the
        msat they added together: the credit and the sum of :meth:`add_values`, in one division
        (the carried fractions of consecutive shares add up to the whole one), for a credit
        whose per-share msat nobody reads — the treasury's cut (SRS-POOL-08, SRS-PERF-11)."""
        den, step, rest = self._steps(value_sat)
        whole, rest = divmod(rest + count * step, den)
        return self._carrying(rest, den, whole, now), whole

    def _steps(self, value_sat: Fraction) -> tuple[int, int, int]:
        """``(den, step, rest)``: the carry and one share's ``value_sat × 1000`` msat over
        one common denominator ``den`` (``rest/den`` the carry, ``step/den`` a share)."""
        if value_sat.numerator < 0:  # (comparing the Fraction itself is slower)
            raise InvalidValue("value_sat", "must be ≥ 0")
        numerator, _, denominator = self.carry.partition("/")
        carry_num, carry_den = int(numerator), int(denominator or 1)
        if not 0 <= carry_num < carry_den:
            raise InvalidValue("carry", "must be in [0, 1)")
        step = value_sat.numerator * MSAT_PER_SAT * carry_den
        return value_sat.denominator * carry_den, step, carry_num * value_sat.denominator

    def _carrying(self, rest: int, den: int, added: int, now: int) -> MinerCredit:
        """This credit with ``added`` msat more and ``rest/den`` carried (reduced)."""
        common = math.gcd(rest, den)
        carry = f"{rest // common}/{den // common}"
        return MinerCredit(self.miner_id, self.credited_msat + added, carry, now)

    def _added(self, credit: MsatCredit, now: int) -> tuple[MinerCredit, int]:
        carry = f"{credit.carry.numerator}/{credit.carry.denominator}"
        return attrs.evolve(
            self, credited_msat=self.credited_msat + credit.msat, carry=carry, updated_at=now
        ), credit.msat


def fresh_credit(miner_id: str, now: int) -> MinerCredit:
    """A miner's credit before its first share."""
    return MinerCredit(miner_id, 0, "0/1", now)


def fpps_payout_ids(miner_id: str, n: int) -> tuple[str, str]:
    """``(payment_id, task_id)`` of ``miner_id``'s ``n``-th payout (0-based) in the outbox:
    deterministic, so a sweep repeated after a crash finds the record and pays once."""
    digest = hashlib.sha256(f"{miner_id}\x00{n}".encode()).hexdigest()[:40]
    return f"fp-{digest}", f"{FPPS_PAYOUT_PREFIX}{miner_id}:{n}"
