"""Variable share difficulty ("vardiff"): each channel's difficulty follows its miner's hash rate,
so a CPU miner and an ASIC both submit a few shares a minute (SRS-POOL-03, SRS-POOL-04).

A share of difficulty ``d`` stands for ``d · 2³²`` hashes on average, and FPPS pays it in
proportion to ``d`` (:mod:`owm_core.pool.fpps`), so a miner earns the same per hash at any
difficulty; what the difficulty sets is how many shares the pool must judge and store. A
channel opens at the difficulty its miner's declared ``nominal_hash_rate`` calls for
(:func:`initial_difficulty`) and is retargeted every ``retarget_s`` seconds, or sooner when its
shares come far too fast (:func:`retarget_due`), from the shares it had accepted
(:func:`next_difficulty`), by at most ``max_step`` times per retarget, within the pool's floor and
the network difficulty (a share harder than a block is a block).
"""

from __future__ import annotations

from fractions import Fraction

import attrs

from owm_core import fields
from owm_core.pool.bitcoin import DIFF1_TARGET

HASHES_PER_DIFFICULTY_1 = 2**32


@attrs.frozen
class VardiffPolicy:
    """How channels' difficulties are chosen: ``shares_per_minute`` wanted from each channel,
    looked at every ``retarget_s`` seconds, moved at most ``max_step`` times up or down at
    once, never below ``min_difficulty`` (the pool's ``share_difficulty``)."""

    shares_per_minute: int = attrs.field(default=6, validator=fields.integer(1, 600))
    retarget_s: int = attrs.field(default=60, validator=fields.integer(1, 86_400))
    min_difficulty: int = attrs.field(default=1, validator=fields.integer(minimum=1))
    max_step: int = attrs.field(default=4, validator=fields.integer(2, 1_000))


def network_difficulty(network_target: int) -> int:
    """The whole difficulty of a block at ``network_target``, at least 1: the most a share
    difficulty can usefully be."""
    return max(1, DIFF1_TARGET // max(network_target, 1))


def _bounded(wanted: Fraction, policy: VardiffPolicy, max_difficulty: int) -> int:
    """``wanted`` held within the policy's floor and ``max_difficulty``, rounded down to a
    whole difficulty (never above what the shares prove)."""
    ceiling = max(policy.min_difficulty, max_difficulty)
    return max(policy.min_difficulty, min(ceiling, int(wanted)))


def initial_difficulty(nominal_hash_rate: float, policy: VardiffPolicy, max_difficulty: int) -> int:
    """The difficulty a channel opens at: what ``nominal_hash_rate`` (hashes per second, as the
    miner declared it in its channel opening; 0, negative or not finite: unknown) needs to make
    ``shares_per_minute`` shares a minute."""
    if not nominal_hash_rate > 0 or nominal_hash_rate == float("inf"):
        return policy.min_difficulty
    rate = Fraction(nominal_hash_rate)
    wanted = rate * 60 / (policy.shares_per_minute * HASHES_PER_DIFFICULTY_1)
    return _bounded(wanted, policy, max_difficulty)


def retarget_due(accepted: int, elapsed_s: int, policy: VardiffPolicy) -> bool:
    """Whether a channel that had ``accepted`` shares in the ``elapsed_s`` seconds since its
    difficulty was last set is due a new one: once ``retarget_s`` have passed, or as soon as it
    has sent ``max_step`` times the shares a whole window should bring. So a miner far faster
    than its difficulty (one that declared too low a hash rate, say) is raised a step every few
    shares instead of flooding the pool until the minute is over (SRS-SEC-15)."""
    window = max(1, policy.shares_per_minute * policy.retarget_s // 60)
    return elapsed_s >= policy.retarget_s or accepted >= policy.max_step * window


def next_difficulty(
    current: int, accepted: int, elapsed_s: int, policy: VardiffPolicy, max_difficulty: int
) -> int:
    """A channel's difficulty after ``elapsed_s`` seconds (at least 1) in which it had
    ``accepted`` shares at ``current``: the difficulty that would have given
    ``shares_per_minute``, at most ``max_step`` times ``current`` and at least ``current /
    max_step`` (no share at all: ``current / max_step``), within the floor and
    ``max_difficulty``. Ask only when :func:`retarget_due` says so."""
    wanted = Fraction(current * accepted * 60, max(elapsed_s, 1) * policy.shares_per_minute)
    step = min(max(wanted, Fraction(current, policy.max_step)), Fraction(current * policy.max_step))
    return _bounded(step, policy, max_difficulty)
