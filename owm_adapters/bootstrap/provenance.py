"""The coordinator's timestamping of ``[provenance]`` (SRS-NODE-10, SRS-PERF-10).

``embedded``: :class:`~owm_adapters.provenance.embedded.EmbeddedProvenance` under
``<data_dir>/provenance``, its URL the one ``calendar_listen`` serves when set. ``calendars``:
:class:`~owm_adapters.provenance.ots.OpenTimestamps` over
:class:`~owm_adapters.provenance.calendar_http.HttpCalendar` clients (the public calendars by
default), upgrades following only whitelisted calendars, verification against the
coordinator's own chain source. Every out-of-range value is a ConfigError naming the key.
"""

from __future__ import annotations

from pathlib import Path

from owm_adapters.bootstrap.chains import chain_source_of
from owm_adapters.bootstrap.settings import ConfigError, NodeChain, ProvenanceSection
from owm_core.access.destinations import DestinationPolicy
from owm_core.ports.timestamping import Timestamping

BACKENDS = ("embedded", "calendars")


def calendar_url_of(section: ProvenanceSection) -> str:
    """The URL written into the embedded calendar's pending attestations: the HTTP address
    ``calendar_listen`` serves when set (so ``ots upgrade`` can reach it), else
    ``calendar_url``."""
    if section.calendar_listen:
        return f"http://{section.calendar_listen}"
    return section.calendar_url


def _check(section: ProvenanceSection) -> None:
    if section.backend not in BACKENDS:
        raise ConfigError(
            f"provenance.backend {section.backend!r} is not supported "
            f"(one of {', '.join(BACKENDS)})"
        )
    checks = (
        ("provenance.calendar_interval_s", section.calendar_interval_s >= 1),
        ("provenance.submit_timeout_s", 1 <= section.submit_timeout_s <= 30),
        ("provenance.upgrade_every_s", section.upgrade_every_s >= 1),
        ("provenance.upgrade_max_backoff_s",
         section.upgrade_max_backoff_s >= section.upgrade_every_s),
    )
    for name, ok in checks:
        if not ok:
            raise ConfigError(f"{name}: out of range")
    if section.backend == "calendars" and not (
        1 <= section.min_calendars <= len(section.calendars)
    ):
        raise ConfigError(
            f"provenance.min_calendars: must be 1 to the {len(section.calendars)} calendars "
            "listed in provenance.calendars"
        )


def ots_chain_of(timestamping: Timestamping) -> str:
    """The chain ``timestamping`` checks proofs against, as the API names it
    (``X-OWM-OTS-Verified``): ``embedded-regtest`` for a devnet's own chain (it proves no real
    time), ``bitcoin-<network>`` for a Bitcoin node, ``none`` when unknown."""
    from owm_adapters.provenance.embedded import EmbeddedProvenance
    from owm_adapters.provenance.ots import OpenTimestamps

    if isinstance(timestamping, EmbeddedProvenance):
        return "embedded-regtest"
    if isinstance(timestamping, OpenTimestamps) and timestamping.has_chain:
        return f"bitcoin-{timestamping.network.chain_name}"
    return "none"


def timestamping_of(
    section: ProvenanceSection, data_dir: Path, chain: NodeChain | None = None
) -> Timestamping:
    """The timestamping port ``section`` configures, checking proofs against ``chain`` (the
    coordinator's ``[chain]``; module docstring)."""
    _check(section)
    if section.backend == "embedded":
        from owm_adapters.provenance.embedded import EmbeddedProvenance

        return EmbeddedProvenance(
            data_dir / "provenance", interval_s=section.calendar_interval_s,
            url=calendar_url_of(section),
        )
    from owm_adapters.provenance.calendar_http import (
        CalendarDirectory,
        HttpCalendar,
        whitelist_of,
    )
    from owm_adapters.provenance.ots import OpenTimestamps

    source = chain_source_of(chain or NodeChain())
    if source is None:
        raise ConfigError(
            "provenance.backend = \"calendars\" needs a chain to check upgraded proofs against: "
            "[chain] bitcoin_rpc (your Bitcoin Core / Knots node) or [chain] local_chain"
        )
    policy = DestinationPolicy.devnet() if section.allow_private_calendars else DestinationPolicy()
    timeout_s = float(section.submit_timeout_s)
    calendars = [HttpCalendar(url, policy=policy, timeout_s=timeout_s)
                 for url in section.calendars]
    directory = CalendarDirectory(
        whitelist_of([*section.calendars, *section.calendar_whitelist]),
        policy=policy, timeout_s=timeout_s,
    )
    headers, network = source
    return OpenTimestamps(headers, network, calendars, min_calendars=section.min_calendars,
                          remote_calendar=directory)
