"""``owm ots``: verify, inspect, stamp and upgrade OpenTimestamps proofs from the command line.

A thin shell over :mod:`owm_adapters.provenance.ots`: it reads files, picks the chain the headers
come
from (``--bitcoin-rpc URL`` for Bitcoin Core / Knots, or ``--local-chain PATH`` for a devnet's
embedded chain) and prints the verdict. Exit codes of ``verify``: 0 confirmed, 3 not verified
(the reason is printed), 4 pending only (try ``upgrade`` later); 1 and 2 as for every ``owm``
command (a missing file / a rule violation or an unreachable node, see :mod:`owm_cli.errors`).
See docs/ots-verification.md.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from owm_adapters.chain.bitcoin_rpc import BitcoinRpc
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.provenance.calendar_http import (
    DEFAULT_CALENDARS,
    CalendarDirectory,
    HttpCalendar,
    whitelist_of,
)
from owm_adapters.provenance.ots import OpenTimestamps, describe, digest_of
from owm_adapters.provenance.ots_calendar import DEFAULT_URL, Calendar
from owm_cli.errors import OwmGroup
from owm_cli.options import chain_options, json_option, render
from owm_core.access.destinations import DestinationPolicy
from owm_core.errors import ChainUnavailable, ProofMalformed
from owm_core.ports.chain import Chain
from owm_core.provenance.versions import FailureReason, Network, Verification

EXIT_NOT_VERIFIED = 3
EXIT_PENDING = 4


def _iso(posix: int) -> str:
    return datetime.datetime.fromtimestamp(posix, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_CHAIN_OPTIONS = chain_options(credentials=True)


def chain_for(
    rpc_url: str | None, rpc_user: str | None, rpc_password: str | None,
    rpc_cookie: Path | None, local_chain: Path | None, network: str | None,
) -> tuple[Chain | None, Network]:
    """The chain the CLI checks headers against (a node, a devnet file, or none) and its rules."""
    if rpc_url and local_chain:
        raise click.UsageError("give --bitcoin-rpc or --local-chain, not both")
    if local_chain is not None:
        return LocalChain(local_chain), Network.from_name(network or "regtest")
    if rpc_url:
        rpc = BitcoinRpc(rpc_url, user=rpc_user, password=rpc_password, cookie_file=rpc_cookie)
        return rpc, Network.from_name(network) if network else rpc.network()
    return None, Network.from_name(network or "main")


def _digest_option(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        digest = bytes.fromhex(value)
    except ValueError:
        raise click.BadParameter("must be hex", param_hint="--digest") from None
    if not 20 <= len(digest) <= 64:
        raise click.BadParameter("must be 20 to 64 bytes of hex", param_hint="--digest")
    return digest


@click.group(cls=OwmGroup)
def ots() -> None:
    """OpenTimestamps proofs of model versions: verify, info, stamp, upgrade."""


@ots.command()
@click.argument("proof_file", metavar="FILE.ots",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--digest", "digest_hex", metavar="HEX",
              help="The digest the proof must be for (a model version's SHA-256).")
@click.option("--file", "target", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The file the proof must be for (hashed with the proof's hash op).")
@_CHAIN_OPTIONS
@json_option("the verdict")
def verify(
    proof_file: Path, digest_hex: str | None, target: Path | None, rpc_url: str | None,
    rpc_user: str | None, rpc_password: str | None, rpc_cookie: Path | None,
    local_chain: Path | None, network: str | None, as_json: bool,
) -> None:
    """Verify FILE.ots for --digest HEX or --file PATH against Bitcoin block headers.

    Prints the attesting block's height and time, or the precise reason it does not verify
    (digest_mismatch, unknown_block, pending_only, bad_header, bad_pow, malformed,
    unsupported). Exit 0 confirmed, 3 not verified, 4 pending only.
    """
    if (digest_hex is None) == (target is None):
        raise click.UsageError("give exactly one of --digest HEX and --file PATH")
    proof = proof_file.read_bytes()
    digest = _digest_option(digest_hex)
    if digest is None:
        assert target is not None
        try:
            with target.open("rb") as stream:
                digest = digest_of(proof, stream)
        except ProofMalformed:  # let verify() name the problem
            digest = b"\0" * 32
    chain, net = chain_for(rpc_url, rpc_user, rpc_password, rpc_cookie, local_chain, network)
    try:
        verdict = OpenTimestamps(chain, net).verify(proof, digest)
    except ChainUnavailable:
        if chain is not None:
            raise
        raise click.UsageError(
            "the proof has Bitcoin attestations: give --bitcoin-rpc URL or --local-chain PATH "
            "to check their block headers") from None
    _report(verdict, as_json)


def _report(verdict: Verification, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({
            "status": verdict.status.value, "digest": verdict.digest, "height": verdict.height,
            "block_time": verdict.block_time, "block_hash": verdict.block_hash,
            "failure": verdict.failure.value if verdict.failure else None,
            "detail": verdict.detail, "pending_calendars": list(verdict.pending_uris),
        }, sort_keys=True))
    elif verdict.ok:
        assert verdict.block_time is not None
        click.echo(f"Success! Bitcoin block {verdict.height} ({verdict.block_hash}) attests "
                   f"existence as of {_iso(verdict.block_time)}")
    else:
        assert verdict.failure is not None
        click.echo(f"not verified: {verdict.failure.value}: {verdict.detail}", err=True)
    if verdict.failure is FailureReason.PENDING_ONLY:
        sys.exit(EXIT_PENDING)
    if not verdict.ok:
        sys.exit(EXIT_NOT_VERIFIED)


@ots.command()
@click.argument("proof_file", metavar="FILE.ots",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option("the proof's digest, attestations and tree")
def info(proof_file: Path, as_json: bool) -> None:
    """Show what FILE.ots commits to and its attestations, like ``ots info``."""
    proof_info = describe(proof_file.read_bytes())
    attestations = [{
        "kind": a.kind, "height": a.height, "calendar": a.uri,
        "merkle_root": a.message[::-1].hex() if a.height is not None else None,
    } for a in proof_info.attestations]
    report = {"hash_op": proof_info.hash_op, "digest": proof_info.digest.hex(),
              "attestations": attestations, "tree": proof_info.tree.rstrip("\n")}
    render(report, as_json, lambda: _info_lines(report))


def _info_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"File {report['hash_op']} hash: {report['digest']}"]
    for attestation in report["attestations"]:
        if attestation["height"] is not None:
            what = f"Bitcoin block {attestation['height']}, merkle root " \
                   f"{attestation['merkle_root']}"
        elif attestation["calendar"] is not None:
            what = f"pending at {attestation['calendar']}"
        else:
            what = f"{attestation['kind']} (not checked)"
        lines.append(f"Attestation: {what}")
    return [*lines, "Timestamp:", report["tree"]]


def _devnet(calendar_db: Path, local_chain: Path, calendar_url: str) -> tuple[
    LocalChain, Calendar
]:
    chain = LocalChain(local_chain)
    return chain, Calendar(calendar_db, chain, url=calendar_url)


_calendar_options = [
    click.option("--calendar-url", "calendar_urls", multiple=True, metavar="URL",
                 help="A remote calendar (repeatable) [default: the public calendars "
                      "`ots stamp` uses]."),
    click.option("--whitelist", multiple=True, metavar="URL",
                 help="Upgrade: also follow this calendar URL or glob (repeatable) besides "
                      "the reference client's whitelist and --calendar-url."),
    click.option("--allow-private-calendars", is_flag=True,
                 help="Let calendars sit on loopback or private addresses (devnets)."),
    click.option("--timeout", "timeout_s", type=click.IntRange(1, 30), default=30,
                 show_default=True, help="Seconds each calendar has to answer."),
    click.option("--calendar", "calendar_db", type=click.Path(dir_okay=False, path_type=Path),
                 help="Devnet: the embedded calendar's SQLite file instead of remote "
                      "calendars (created if missing; needs --local-chain)."),
    click.option("--local-chain", type=click.Path(dir_okay=False, path_type=Path),
                 help="Devnet: the embedded chain file (created if missing)."),
    click.option("--calendar-file-url", "calendar_url", default=DEFAULT_URL,
                 show_default=True,
                 help="Devnet: the embedded calendar's URL as written into attestations."),
]


def _with_calendar_options(func: Any) -> Any:
    for option in reversed(_calendar_options):
        func = option(func)
    return func


def _timestamping(
    calendar_urls: tuple[str, ...], whitelist: tuple[str, ...], allow_private_calendars: bool,
    timeout_s: int, calendar_db: Path | None, local_chain: Path | None, calendar_url: str,
    min_calendars: int = 1,
) -> tuple[OpenTimestamps, Calendar | None]:
    """The devnet's embedded calendar (``--calendar`` + ``--local-chain``), else remote ones."""
    if (calendar_db is None) != (local_chain is None):
        raise click.UsageError("--calendar and --local-chain go together (a devnet calendar)")
    if calendar_db is not None and local_chain is not None:
        if calendar_urls:
            raise click.UsageError("give --calendar-url or a devnet --calendar, not both")
        chain, calendar = _devnet(calendar_db, local_chain, calendar_url)
        return OpenTimestamps(chain, Network.REGTEST, [calendar]), calendar
    urls = calendar_urls or DEFAULT_CALENDARS
    policy = DestinationPolicy.devnet() if allow_private_calendars else DestinationPolicy()
    if not 1 <= min_calendars <= len(urls):
        raise click.BadParameter(f"must be 1 to {len(urls)}", param_hint="-m")
    directory = CalendarDirectory(whitelist_of([*urls, *whitelist]), policy=policy,
                                  timeout_s=timeout_s)
    calendars = [HttpCalendar(url, policy=policy, timeout_s=timeout_s) for url in urls]
    return OpenTimestamps(None, calendars=calendars, min_calendars=min_calendars,
                          remote_calendar=directory), None


@ots.command()
@click.option("--file", "target", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Stamp this file's SHA-256 (output FILE.ots unless -o).")
@click.option("--digest", "digest_hex", metavar="HEX", help="Stamp this SHA-256 digest.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the proof.")
@click.option("-m", "min_calendars", type=int, default=2, show_default=True,
              help="Remote calendars that must acknowledge (at most as many as are given).")
@_with_calendar_options
@json_option("what was submitted where")
def stamp(target: Path | None, digest_hex: str | None, output: Path | None,
          min_calendars: int, as_json: bool, **calendars: Any) -> None:
    """Stamp a file or digest at the public calendars (or --calendar-url, or a devnet's
    --calendar); the proof is pending until a calendar commits it in a block."""
    if (digest_hex is None) == (target is None):
        raise click.UsageError("give exactly one of --digest HEX and --file PATH")
    if target is not None:
        digest = hashlib.sha256(target.read_bytes()).digest()
        output = output or target.with_name(target.name + ".ots")
    else:
        digest = _digest_option(digest_hex) or b""
        if output is None:
            raise click.UsageError("--digest needs -o/--output")
    if not calendars["calendar_urls"] and calendars["calendar_db"] is None:
        min_calendars = min(min_calendars, len(DEFAULT_CALENDARS))
    elif calendars["calendar_db"] is not None:
        min_calendars = 1
    else:
        min_calendars = min(min_calendars, len(calendars["calendar_urls"]))
    timestamping, _ = _timestamping(**calendars, min_calendars=min_calendars)
    proof = timestamping.stamp(digest)
    output.write_bytes(proof)
    report = {"digest": digest.hex(), "calendars": list(describe(proof).pending_uris),
              "file": str(output), "status": "pending"}
    render(report, as_json, lambda: [
        f"Submitted {digest.hex()} to {', '.join(report['calendars'])}; wrote {output} (pending)"])


@ots.command()
@click.argument("proof_file", metavar="FILE.ots",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_with_calendar_options
@click.option("--flush", is_flag=True, help="Devnet: commit the calendar's pending round first.")
@json_option("the outcome")
def upgrade(proof_file: Path, flush: bool, as_json: bool, **calendars: Any) -> None:
    """Complete FILE.ots's pending attestations (rewritten in place): from the calendars it
    names that are whitelisted, or from a devnet's --calendar. Exit 4 while still pending."""
    timestamping, calendar = _timestamping(**calendars)
    lines: list[str] = []
    report: dict[str, Any] = {"file": str(proof_file), "flushed": None}
    if flush:
        if calendar is None:
            raise click.UsageError("--flush commits a devnet --calendar's round")
        committed = calendar.flush()
        if committed is not None:
            report["flushed"] = {"leaves": committed.leaves, "height": committed.height}
            lines.append(f"Calendar committed {committed.leaves} digest(s) in block "
                         f"{committed.height}")
    proof = proof_file.read_bytes()
    upgraded = timestamping.upgrade(proof)
    heights = describe(upgraded).bitcoin_heights
    if upgraded != proof:
        proof_file.write_bytes(upgraded)
    report.update(status="complete" if heights else "pending",
                  height=heights[0] if heights else None)
    lines.append(f"Complete: Bitcoin block {heights[0]}; wrote {proof_file}" if heights
                 else "Still pending: no calendar has committed this digest in a block yet")
    render(report, as_json, lambda: lines)
    if not heights:
        sys.exit(EXIT_PENDING)
