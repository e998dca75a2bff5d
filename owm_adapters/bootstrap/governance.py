"""The governance part of the composition root: roles, the treasury wallet and its chain.

Builds, from ``[governance]`` of ``coordinator.toml``, the
:class:`~owm_adapters.services.governance.GovernanceService` the HTTP API and the CLI share:
the configured roles (SRS-GOV-04/05), the 3-of-5 treasury wallet over embit (SRS-LN-09,
SRS-SEC-12) and the chain its coins and broadcasts go through (Bitcoin Core / Knots over RPC,
or the devnet's embedded ledger, funded once from ``devnet_funding_sat``).
"""

from __future__ import annotations

from pathlib import Path

from owm_adapters.bootstrap.settings import (
    ConfigError,
    CoordinatorSettings,
    GovernanceSection,
    data_dir_of,
)
from owm_adapters.services.governance import GovernanceConfig, GovernanceService
from owm_adapters.services.treasury import TreasuryDesk
from owm_core.access.ratelimit import RateLimit
from owm_core.errors import DomainError, InvalidValue
from owm_core.governance.roles import GovernanceRoles, Holder
from owm_core.identity.keys import Identity
from owm_core.ports.chain import WalletChain
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

LEDGER_FILE = "treasury-ledger.sqlite3"


def roles_of(section: GovernanceSection) -> GovernanceRoles | None:
    """The configured roles; None when no holders are configured (and no maintainers)."""
    if not section.holder_multisig_keys and not section.maintainer_keys:
        return None
    origins = section.holder_key_origins or ("",) * len(section.holder_multisig_keys)
    lists = (section.holder_statement_keys, section.holder_multisig_keys, origins)
    if len({len(items) for items in lists}) != 1:
        raise ConfigError(
            "governance: holder_statement_keys, holder_multisig_keys and holder_key_origins "
            "must list the same holders"
        )
    try:
        holders = [Holder(s, m, o) for s, m, o in zip(*lists, strict=True)]
        return GovernanceRoles(maintainers=section.maintainer_keys, holders=holders)
    except InvalidValue as exc:
        name = "holder_multisig_keys" if exc.field == "holders" else exc.field
        raise ConfigError(f"governance.{name}: {exc.reason}") from None


def wallet_chain_from(settings: CoordinatorSettings) -> WalletChain:
    """Bitcoin Core / Knots at ``bitcoin_rpc``, else the embedded ledger file."""
    section = settings.governance
    if section.bitcoin_rpc:
        from owm_adapters.chain.bitcoin_rpc import BitcoinRpc

        return BitcoinRpc(
            section.bitcoin_rpc, user=section.rpc_user or None,
            password=section.rpc_password or None,
            cookie_file=Path(section.rpc_cookie).expanduser() if section.rpc_cookie else None,
        )  # fmt: skip
    from owm_adapters.chain.local_ledger import LocalLedger

    path = section.ledger_path or str(data_dir_of(settings) / LEDGER_FILE)
    return LocalLedger(Path(path).expanduser())


def treasury_desk_from(
    settings: CoordinatorSettings,
    roles: GovernanceRoles | None,
    store: Repositories,
    chain: WalletChain | None = None,
) -> TreasuryDesk | None:
    """The treasury's PSBT desk; None without holders. A fresh embedded ledger is funded
    with ``devnet_funding_sat`` once."""
    if roles is None or not roles.holders:
        return None
    from owm_adapters.treasury.wallet import MultisigWallet

    section = settings.governance
    try:
        wallet = MultisigWallet(roles.holders, section.network)
    except DomainError as exc:
        raise ConfigError(f"governance.network: {exc.message}") from None
    chain = chain if chain is not None else wallet_chain_from(settings)
    fund = getattr(chain, "fund", None)
    if section.devnet_funding_sat > 0 and callable(fund) and not chain.unspent(
        wallet.script_pubkey
    ):
        fund(wallet.script_pubkey, section.devnet_funding_sat)
    return TreasuryDesk(wallet, chain, store, section.fee_rate_sat_vb)


def governance_from(
    settings: CoordinatorSettings,
    store: Repositories,
    clock: Clock,
    coordinator: Identity,
    *,
    chain: WalletChain | None = None,
    shared: bool = False,
) -> GovernanceService:
    """The governance service of a coordinator with ``settings``; ``shared``: other
    coordinators share ``store`` (a signer's statement limit counts there, SRS-COORD-05)."""
    section = settings.governance
    if section.statements_per_hour < 1 or not 1 <= section.fee_rate_sat_vb <= 1_000:
        raise ConfigError(
            "governance: statements_per_hour must be ≥ 1 and fee_rate_sat_vb 1 to 1000"
        )
    roles = roles_of(section)
    config = GovernanceConfig(
        statements_per_signer=RateLimit(limit=section.statements_per_hour, window_s=3_600),
        explorer_tx_url=section.explorer_tx_url,
    )
    desk = treasury_desk_from(settings, roles, store, chain)
    rules_clock = None
    if section.devnet_time_file:
        from owm_adapters.clock import OffsetClock, SystemClock

        rules_clock = OffsetClock(SystemClock(), str(Path(section.devnet_time_file).expanduser()))
    return GovernanceService(store, clock, coordinator, roles, desk, config, rules_clock,
                             shared=shared)
