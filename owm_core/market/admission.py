"""Admission: a task no registered node could ever run is refused at submission (SRS-COORD-02).

Work the market cannot place must not enter it: every stored task costs the dispatcher a look
and the store its input. At submission the coordinator compares the request with the hardware
of its registered, online nodes (their registry records) and refuses, with
``NoMatch`` naming the first requirement that too few nodes meet, a task that no node fits
(the coordinator asks for one: the number of replicas follows the nodes that fit,
:mod:`owm_core.market.redundancy`): tier ≥ ``min_tier``, a GPU when ``gpu_required`` (a
node's GPU is known by its VRAM), VRAM ≥ ``min_vram_mb``, RAM ≥ ``min_ram_mb``.

What the registry does not know (the task types a node serves, its ask) is known only while
its task stream is open, so a task that passes admission may still find no taker; it expires
after the market's queue time instead (:func:`~owm_core.market.tasks.expire`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from owm_core.errors import NoMatch
from owm_core.market.tasks import TaskRequest, tier_at_least
from owm_core.nodes.registry import Liveness, Node, NodeStatus


def online_fleet(nodes: Iterable[Node], now: int, liveness: Liveness) -> list[Node]:
    """The registered nodes that count at ``now``: heard from in time and not suspended."""
    return [n for n in nodes if n.status(now, liveness) is NodeStatus.ONLINE]


def _stages(request: TaskRequest) -> tuple[tuple[str, Callable[[Node], bool]], ...]:
    """The request's hardware requirements, in the order a refusal names them."""
    tier = request.min_tier
    return (
        (f"tier {tier.value} or above", lambda c: tier_at_least(c.tier, tier)),
        ("a GPU", lambda c: c.vram_mb > 0 or not request.gpu_required),
        (f"vram ≥ {request.min_vram_mb} MB", lambda c: c.vram_mb >= request.min_vram_mb),
        (f"ram ≥ {request.min_ram_mb} MB", lambda c: c.ram_mb >= request.min_ram_mb),
    )


def eligible_nodes(request: TaskRequest, fleet: Iterable[Node]) -> list[Node]:
    """The nodes of ``fleet`` (:func:`online_fleet`) whose hardware fits ``request``: those
    that could take one of its replicas, which its replica plan follows (SRS-PERF-07)."""
    stages = _stages(request)
    return [n for n in fleet if all(fits(n) for _, fits in stages)]


def check_admissible(request: TaskRequest, replicas: int, fleet: Iterable[Node]) -> None:
    """Refuse (``NoMatch``) a task that fewer than ``replicas`` nodes of ``fleet`` could run.

    ``fleet`` is the registered nodes that count now (:func:`online_fleet`). The message names
    the first requirement after which too few nodes remain, and how many the task needs.
    """
    remaining = list(fleet)
    stages = _stages(request)
    if len(remaining) < replicas:
        raise NoMatch(
            f"task {request.task_id} needs {replicas} online node(s); {len(remaining)} registered"
        )
    for what, fits in stages:
        remaining = [c for c in remaining if fits(c)]
        if len(remaining) < replicas:
            raise NoMatch(
                f"task {request.task_id} needs {replicas} online node(s) with {what}; "
                f"{len(remaining)} registered"
            )
