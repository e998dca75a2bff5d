"""Which kept model versions a node holds on to, and which it may delete (SRS-NODE-10, SRS-SEC-11).

A node keeps every verified version of a sub-model it installed so that a task pinned to an
older one runs exactly that one. Without pruning that cache only grows (one FL release a
minute is ~16 MB a day per sub-model). The rule: keep the installed (current) version, every
version a task in flight or queued on the node is pinned to, and the ``keep`` newest others
(by ``created_at``); everything else may go. A pruned version that is pinned again later is
simply downloaded and verified again, like any version the node never held.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from owm_core.errors import InvalidValue


def kept_versions(
    held: Mapping[str, int], current: str | None, pinned: Collection[str], keep: int
) -> frozenset[str]:
    """The versions of one sub-model to keep, out of ``held`` (version → ``created_at``).

    ``current ∪ (pinned ∩ held) ∪`` the ``keep`` newest of the rest; ties in ``created_at``
    are broken by the version string so the choice is deterministic.
    """
    if keep < 0:
        raise InvalidValue("keep_versions", f"{keep} is negative")
    protected = {v for v in held if v == current or v in pinned}
    others = sorted((v for v in held if v not in protected),
                    key=lambda v: (held[v], v), reverse=True)
    return frozenset(protected | set(others[:keep]))


__all__ = ["kept_versions"]
