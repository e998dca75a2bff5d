"""Nodes over the public API: registration, deregistration, status, earnings and stake.

Registration and deregistration call
:class:`~owm_adapters.services.coordinator.service.CoordinatorService` — the same use cases as
gRPC, never a second implementation (spec 4.12.2, SRS-STAKE-08); the reads come from the
store.
"""

from __future__ import annotations

from collections.abc import Sequence

from owm_adapters.services.api.config import ApiConfig, ReadCache
from owm_adapters.services.coordinator.service import CoordinatorService
from owm_core.access.ratelimit import Transport
from owm_core.coordination.challenges import Challenge
from owm_core.coordination.registration import Registered, Registration
from owm_core.errors import InvalidValue, must_exist
from owm_core.identity.keys import node_id_from_public_key
from owm_core.nodes.registry import Node, NodeStatus
from owm_core.nodes.tiers import StakeRequirements
from owm_core.payments.records import RewardPayment
from owm_core.stake.channel import Stake


class Nodes:
    """A node's registration and its records (see the module docstring)."""

    def __init__(
        self, coordinator: CoordinatorService, cache: ReadCache, config: ApiConfig
    ) -> None:
        self._coordinator = coordinator
        self._repositories = coordinator.repositories
        self._cache = cache
        self._config = config

    def challenge(self, public_key: str, purpose: str) -> Challenge:
        """A one-use challenge for registration or deregistration (SRS-SEC-03)."""
        return self._coordinator.challenge(public_key, purpose)

    def register(
        self,
        registration: Registration,
        challenge_nonce: str,
        signature: str,
        client_ip: str | None,
    ) -> Registered:
        """Register a node exactly as gRPC Register does (spec 4.12.2)."""
        registered = self._coordinator.register(
            registration,
            challenge_nonce=challenge_nonce,
            signature=signature,
            transport=Transport.CLEARNET,
            client_ip=client_ip,
        )
        self._cache.clear()
        return registered

    def deregister(
        self, node_id: str, public_key: str, challenge_nonce: str, signature: str
    ) -> Stake:
        """Leave cooperatively exactly as gRPC Deregister does (SRS-STAKE-08)."""
        if node_id_from_public_key(public_key) != node_id:
            raise InvalidValue("public_key", "is not the key of this node_id")
        stake = self._coordinator.deregister(public_key, challenge_nonce, signature)
        self._cache.clear()
        return stake

    def node(self, node_id: str) -> tuple[Node, NodeStatus, Stake | None]:
        """A node's record, public status and stake; NotFound if unknown."""
        node = must_exist(self._repositories.nodes.get(node_id), f"no node {node_id}")
        stake = self._repositories.stakes.get(node.public_key)
        return node, self._coordinator.status_of(node_id), stake

    def earnings(self, node_id: str, limit: int = 100) -> tuple[Node, Sequence[RewardPayment]]:
        """A node's reward payments, newest first (SRS-LN-10)."""
        node = must_exist(self._repositories.nodes.get(node_id), f"no node {node_id}")
        return node, self._repositories.payments.for_node(
            node_id, min(limit, self._config.max_list)
        )

    def stake(self, node_id: str) -> Stake:
        """A node's stake record (spec 4.12)."""
        return self._coordinator.stake_status(node_id, None)

    def stake_requirements(self) -> StakeRequirements:
        """The stake minimum of every tier (SRS-STAKE-01)."""
        return self._coordinator.config.stake_requirements
