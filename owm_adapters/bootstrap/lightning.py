"""Every Lightning handle a process needs, built from its settings in one place.

The coordinator's treasury payment handle (:func:`lightning_from`), its separate force-close
handle for slashing (:func:`force_closer_from`, SRS-SEC-13) and a node's own invoicing node
(``owm_adapters.bootstrap.node``) all go through :func:`lnd_from_files` and
:func:`cln_from_socket`, so there is one way to read LND's TLS certificate and macaroons and
Core Lightning's socket.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from owm_adapters.bootstrap.settings import ConfigError, CoordinatorSettings, data_dir_of
from owm_adapters.lightning.embedded import LEDGER_FILE
from owm_core.errors import DomainError
from owm_core.ports.lightning import Lightning

if TYPE_CHECKING:
    from owm_adapters.lightning.cln import ClnRestForceClose
    from owm_adapters.lightning.embedded import SimLedger
    from owm_adapters.services.payout_channels import PayoutChannels
    from owm_core.ports.clock import Clock
    from owm_core.ports.repositories import Repositories

LIGHTNING_FILE = LEDGER_FILE
"""The embedded ledger's file under the coordinator's data directory."""


def lnd_from_files(
    host: str,
    tls_cert: str,
    macaroon: str,
    *,
    force_close_macaroon: str = "",
    tls_server_name: str = "",
) -> Lightning:
    """An LND node over gRPC (TLS certificate and macaroon files; ``~`` expanded)."""
    from owm_adapters.lightning.lnd import LndLightning

    return LndLightning.from_files(
        host,
        tls_cert_path=Path(tls_cert).expanduser(),
        payment_macaroon_path=Path(macaroon).expanduser(),
        force_close_macaroon_path=(
            Path(force_close_macaroon).expanduser() if force_close_macaroon else None
        ),
        tls_server_name=tls_server_name or None,
    )


def cln_from_socket(socket: str, *, force_closer: ClnRestForceClose | None = None) -> Lightning:
    """A Core Lightning node over its RPC socket (``~`` expanded)."""
    from owm_adapters.lightning.cln import ClnLightning

    return ClnLightning(Path(socket).expanduser(), force_closer=force_closer)


def lightning_from(settings: CoordinatorSettings, *, force_close: bool = False) -> Lightning:
    """The treasury's Lightning node: LND, Core Lightning, or the embedded ledger's
    ``treasury_alias`` node (``[lightning] backend``).

    Only with ``force_close`` (the slashing service's handle) does an LND/CLN handle get the
    force-close credential; the payment handle never holds it (SRS-SEC-13).
    """
    ln = settings.lightning
    if ln.backend in {"lnd", "cln"}:
        return _real_lightning(settings, force_close=force_close)
    if ln.backend != "embedded":
        raise ConfigError(f"lightning.backend {ln.backend!r} is not supported")
    from owm_adapters.lightning.embedded import SimLedger

    ledger = SimLedger(data_dir_of(settings) / LIGHTNING_FILE)
    ledger.add_node(settings.lightning.treasury_alias)
    return ledger.lightning(settings.lightning.treasury_alias)


def force_closer_from(settings: CoordinatorSettings) -> Lightning:
    """The Lightning handle that holds the force-close credential (SRS-SEC-13)."""
    ln = settings.lightning
    if ln.backend in {"lnd", "cln"}:
        from owm_adapters.lightning.cln import FORCE_CLOSE_SETTINGS

        names = ("lnd_force_close_macaroon",) if ln.backend == "lnd" else FORCE_CLOSE_SETTINGS
        missing = [name for name in names if not getattr(ln, name)]
        if missing:
            what = (
                "the force-close macaroon" if ln.backend == "lnd"
                else "clnrest and a rune restricted to method=close"
            )
            raise ConfigError(
                "lightning." + ", lightning.".join(missing) + ": slashing needs the separate "
                f"force-close credential ({what}, SRS-SEC-13); set it in coordinator.toml"
            )
        return lightning_from(settings, force_close=True)
    if ln.backend != "embedded":
        raise ConfigError(f"lightning.backend {ln.backend!r} is not supported")
    from owm_adapters.lightning.embedded import SimLedger

    ledger = SimLedger(data_dir_of(settings) / LIGHTNING_FILE)
    ledger.add_node(ln.treasury_alias)
    return ledger.lightning(ln.treasury_alias, force_close_allowed=True)


def _real_lightning(settings: CoordinatorSettings, *, force_close: bool) -> Lightning:
    """The treasury's LND (gRPC, TLS + macaroons) or Core Lightning (RPC socket; force close
    over clnrest with a close-only rune) node."""
    ln = settings.lightning
    try:
        if ln.backend == "lnd":
            return lnd_from_files(
                ln.lnd_host,
                ln.lnd_tls_cert,
                ln.lnd_macaroon,
                force_close_macaroon=ln.lnd_force_close_macaroon if force_close else "",
                tls_server_name=ln.lnd_tls_server_name,
            )
        return cln_from_socket(
            ln.cln_socket, force_closer=_cln_force_closer(settings) if force_close else None
        )
    except ConfigError:
        raise
    except DomainError as exc:
        raise ConfigError(f"lightning ({ln.backend}): {exc.message}") from None


def _cln_force_closer(settings: CoordinatorSettings) -> ClnRestForceClose | None:
    """clnrest with the close-only rune (SRS-SEC-13), or None when none of its settings is set;
    a half-configured one is a ConfigError naming what is missing."""
    from owm_adapters.lightning.cln import FORCE_CLOSE_SETTINGS, ClnRestForceClose

    ln = settings.lightning
    missing = [name for name in FORCE_CLOSE_SETTINGS if not getattr(ln, name)]
    if len(missing) == len(FORCE_CLOSE_SETTINGS):
        return None
    if missing:
        raise ConfigError(
            "lightning." + ", lightning.".join(missing) + ": needed with the other CLN "
            "force-close settings (clnrest URL, close-only rune file, clnrest ca.pem)"
        )
    return ClnRestForceClose.from_files(
        ln.cln_rest_url,
        rune_file=Path(ln.cln_force_close_rune_file).expanduser(),
        ca_file=Path(ln.cln_rest_ca_file).expanduser(),
    )


def embedded_ledger(settings: CoordinatorSettings) -> SimLedger:
    """The embedded ledger of a devnet coordinator (its treasury and simulated nodes)."""
    from owm_adapters.lightning.embedded import SimLedger

    return SimLedger(data_dir_of(settings) / LIGHTNING_FILE)


def payout_channels_from(
    settings: CoordinatorSettings, store: Repositories, treasury: Lightning, clock: Clock
) -> PayoutChannels | None:
    """The payout-channel worker (SRS-LN-03) when ``[lightning] payout_channel_sat`` > 0 and
    the treasury's handle can open channels (LND, CLN, the embedded ledger); else None."""
    from owm_adapters.lightning.channel_opening import opener_for
    from owm_adapters.services.payout_channels import PayoutChannels
    from owm_core.payments.payout_channels import PayoutChannelPolicy

    section = settings.lightning
    if section.payout_channel_sat <= 0:
        return None
    opener = opener_for(treasury)
    if opener is None:
        return None
    try:
        policy = PayoutChannelPolicy(
            reserve_sat=section.payout_reserve_sat, per_node_sat=section.payout_channel_sat,
            daily_budget_sat=section.payout_daily_budget_sat,
        )  # fmt: skip
    except DomainError as exc:
        raise ConfigError(f"lightning.payout_*: {exc.message}") from None
    period = max(1, section.payout_channel_period_s)
    return PayoutChannels(store, opener, treasury, clock, policy, period_s=period)
