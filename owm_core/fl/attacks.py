"""Model-poisoning attacks used by OWM's FL simulations and tests (SRS-SEC-05).

This module owns the Byzantine clients' behaviour in ``owm sim fl``: given the round's starting
model ``reference``, the honest clients' updates and the Byzantine clients' own honestly trained
updates, it returns what the Byzantine clients send instead. The adversary is omniscient and
colluding (it sees every honest update), the strongest model the robust rules are designed for.

* ``signflip`` — each Byzantine client sends its own step reversed and boosted:
  ``ref − 10·(own − ref)``;
* ``gaussian`` — ``ref + N(0, σ²)`` with ``σ = 10`` per parameter;
* ``scaled`` — each Byzantine client boosts its own step a hundredfold: ``ref + 100·(own − ref)``
  (model-replacement style);
* ``alie`` — "A Little Is Enough" (Baruch et al., NeurIPS 2019): all send
  ``μ − z·σ`` (coordinate-wise mean and standard deviation of the honest updates) with
  ``z = Φ⁻¹((n − s)/n)``, ``s = ⌊n/2 + 1⌋ − f``; designed to stay inside the honest spread.

Randomness comes from the caller's ``torch.Generator``.
"""

from __future__ import annotations

import enum
import math

import torch

from owm_core.errors import InvalidValue

SIGNFLIP_SCALE = 10.0
GAUSSIAN_SIGMA = 10.0
SCALED_FACTOR = 100.0


class Attack(enum.Enum):
    """A Byzantine behaviour for simulations."""

    SIGNFLIP = "signflip"
    GAUSSIAN = "gaussian"
    SCALED = "scaled"
    ALIE = "alie"


def alie_z(n: int, f: int) -> float:
    """ALIE's ``z``: the largest shift that keeps the attack inside a majority's spread."""
    s = math.floor(n / 2 + 1) - f
    p = (n - s) / n
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))


def poison(
    attack: Attack,
    *,
    reference: torch.Tensor,
    honest: torch.Tensor,
    own: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """What the Byzantine clients send: one row per row of ``own`` (their honest updates)."""
    if honest.dim() != 2 or own.dim() != 2 or honest.shape[1] != own.shape[1]:
        raise InvalidValue("honest", "honest and own updates must be 2-D with equal widths")
    if tuple(reference.shape) != (own.shape[1],):
        raise InvalidValue("reference", "must have one value per parameter")
    b = own.shape[0]
    if attack is Attack.SIGNFLIP:
        return reference - SIGNFLIP_SCALE * (own - reference)
    if attack is Attack.GAUSSIAN:
        noise = torch.randn(own.shape, generator=generator, dtype=own.dtype)
        return reference + GAUSSIAN_SIGMA * noise
    if attack is Attack.SCALED:
        return reference + SCALED_FACTOR * (own - reference)
    if attack is Attack.ALIE:
        n = honest.shape[0] + b
        mu = honest.mean(dim=0)
        sigma = honest.std(dim=0, unbiased=False) if honest.shape[0] > 1 else torch.zeros_like(mu)
        return (mu - alie_z(n, b) * sigma).expand(b, -1).clone()
    raise InvalidValue("attack", f"unknown attack {attack!r}")
