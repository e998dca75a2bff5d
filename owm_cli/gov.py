"""``owm gov`` and ``owm treasury psbt``: governance by signed statements, and the treasury's
PSBT files (SRS-GOV-01..06, SRS-LN-09, SRS-SEC-12).

Every ``owm gov`` action signs a ``governance_statement`` envelope with ``--key`` (an Ed25519
key file: a node's identity, a maintainer's or a holder's) and posts it to the coordinator
(``--api``, POST /v1/governance/statements); reading commands use ``--api-key``.
``owm gov log verify`` checks the governance log's chain, the coordinator's signatures and
every statement in it, like ``owm slashing-log verify`` (exit 3 at the first bad entry).

The treasury flow is file-based, as hardware wallets need: ``owm treasury psbt create``
prepares an accepted proposal's PSBT and writes it to a file; each holder signs it (on a
Coldcard or Trezor, or with ``owm treasury psbt sign`` and a software key on a devnet);
``combine`` hands the signed copies back; ``broadcast`` has the coordinator finalise, send
and record the transaction.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from owm_adapters.storage import keystore
from owm_cli.api_client import get_json, post_json, v1_url
from owm_cli.options import COORDINATOR_OPTION, chosen_coordinator, json_option, render
from owm_cli.slashing import check_log
from owm_core.coordination.governance_log import GovernanceLogEntry, verify_log
from owm_core.identity.envelopes import EnvelopeKind, GovernanceStatement, seal, to_bytes
from owm_core.identity.keys import parse_public_key

PAGE = 500
DAY_S = 86_400

API_OPTION = click.option(
    "--api", "api_url", envvar="OWM_API_URL",
    help="The coordinator API's base URL, e.g. http://127.0.0.1:8000 (env OWM_API_URL).",
)  # fmt: skip
KEY_OPTION = click.option(
    "--key", "key_path", required=True, envvar="OWM_GOV_KEY",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The Ed25519 key file that signs the statement (0600; env OWM_GOV_KEY).",
)  # fmt: skip
SIGN_ONLY_OPTION = click.option(
    "--sign-only", is_flag=True,
    help="Print the signed statement (JSON) instead of sending it, e.g. to paste into the "
    "portal's form within 300 s.",
)  # fmt: skip


def _keep_challenge(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None and not re.fullmatch(r"[0-9a-f]{32}", value):
        raise click.BadParameter("must be the 32 hex characters the portal shows")
    ctx.meta["owm_gov_challenge"] = value


CHALLENGE_OPTION = click.option(
    "--challenge", expose_value=False, callback=_keep_challenge,
    help="The challenge the portal's page shows: the statement answers it (with --sign-only).",
)  # fmt: skip


API_KEY_OPTION = click.option(
    "--api-key", envvar="OWM_API_KEY", help="API key for reading (env OWM_API_KEY)."
)


def act(
    api_url: str | None, key_path: Path, action: str, proposal_id: str,
    sign_only: bool = False, **args: Any,
) -> Any:  # fmt: skip
    """Sign one statement and post it; the coordinator's receipt. With ``sign_only``, print
    the statement and exit instead."""
    identity = keystore.load_identity(key_path.expanduser())
    meta = click.get_current_context().meta
    coordinator = chosen_coordinator(api_url)
    body = GovernanceStatement(action=action, proposal_id=proposal_id, args=args,
                               coordinator=coordinator)  # fmt: skip
    challenge = meta.get("owm_gov_challenge")
    envelope = seal(identity, EnvelopeKind.GOVERNANCE_STATEMENT, body,
                    challenge or os.urandom(16), int(time.time()),
                    audience=coordinator)  # fmt: skip
    raw = to_bytes(envelope)
    if sign_only:
        click.echo(raw.decode("utf-8"))
        sys.exit(0)
    return post_json(v1_url(need_api(api_url), "/governance/statements"), raw)


def need_api(api_url: str | None) -> str:
    """``--api``, or a usage error naming it."""
    if not api_url:
        raise click.UsageError("--api (or OWM_API_URL) is required")
    return api_url


def _line(p: dict[str, Any]) -> str:
    amount = f" {p['requested_sat']} sat" if p.get("requested_sat") else ""
    tx = f" txid {p['txid']}" if p.get("txid") else ""
    head = f"{p['proposal_id']} [{p['status']}] {p['type']}{amount} — {p['title']}"
    return f"{head} (comments until {p['comment_deadline_at']}, {p['acknowledgements']} acks){tx}"


def _report(receipt: dict[str, Any], as_json: bool) -> None:
    entry = receipt["log_entry"]
    render(receipt, as_json,
           lambda: [_line(receipt["proposal"]), f"logged as entry {entry['index']}"])  # fmt: skip


@click.group("gov")
def gov() -> None:
    """Governance proposals by signed statements (SRS-GOV-01..06)."""


def _on_proposal(
    action: str, help_text: str, options: tuple[Callable[[Any], Any], ...]
) -> click.Command:
    """The ``owm gov ACTION PROPOSAL_ID`` command that signs one statement about an existing
    proposal: the proposal id, ``--api``, ``--key``, ``--sign-only`` and ``--challenge``, then
    ``options``, whose values are the statement's arguments."""

    def command(
        proposal_id: str, api_url: str | None, key_path: Path, sign_only: bool, as_json: bool,
        **args: Any,
    ) -> None:  # fmt: skip
        _report(act(api_url, key_path, action, proposal_id, sign_only, **args), as_json)

    f: Any = command
    decorators = (json_option("the receipt"), *reversed(options), COORDINATOR_OPTION,
                  CHALLENGE_OPTION, SIGN_ONLY_OPTION, KEY_OPTION, API_OPTION,
                  click.argument("proposal_id"))
    for decorate in decorators:
        f = decorate(f)
    return gov.command(action, help=help_text)(f)


@gov.command("propose")
@API_OPTION
@KEY_OPTION
@SIGN_ONLY_OPTION
@CHALLENGE_OPTION
@COORDINATOR_OPTION
@click.option("--title", required=True, help="What the proposal is about (≤ 200 characters).")
@click.option("--description", required=True, help="Why, in full.")
@click.option(
    "--type", "proposal_type", required=True,
    type=click.Choice(["technical", "treasury", "policy"]), help="What it changes.",
)  # fmt: skip
@click.option("--plan", required=True, help="The implementation plan.")
@click.option("--amount-sat", type=int, default=0, help="Treasury proposals: sat requested.")
@click.option("--payout-address", default="", help="Treasury proposals: the address to pay.")
@json_option("the receipt (proposal and log entry)")
def propose(
    api_url: str | None, key_path: Path, sign_only: bool, title: str, description: str,
    proposal_type: str, plan: str, amount_sat: int, payout_address: str, as_json: bool,
) -> None:  # fmt: skip
    """Submit a proposal signed with your key."""
    args: dict[str, Any] = {"title": title, "description": description, "type": proposal_type,
                            "implementation_plan": plan}  # fmt: skip
    if amount_sat:
        args["requested_sat"] = amount_sat
    if payout_address:
        args["payout_address"] = payout_address
    _report(act(api_url, key_path, "propose", "", sign_only, **args), as_json)


@gov.command("list")
@API_OPTION
@API_KEY_OPTION
@click.option("--status", type=click.Choice(["open", "closed", "accepted", "rejected",
                                             "executed"]), help="Only this status.")  # fmt: skip
@json_option("the proposals")
def list_proposals(
    api_url: str | None, api_key: str | None, status: str | None, as_json: bool
) -> None:
    """List proposals, newest first."""
    query = f"?status={status}" if status else ""
    url = v1_url(need_api(api_url), "/governance/proposals") + query
    answer = get_json(url, api_key=api_key)
    render(answer, as_json, lambda: [_line(p) for p in answer["proposals"]] or ["no proposals"])


@gov.command("show")
@click.argument("proposal_id")
@API_OPTION
@API_KEY_OPTION
@json_option("the proposal with its comments and treasury spend")
def show(proposal_id: str, api_url: str | None, api_key: str | None, as_json: bool) -> None:
    """Show PROPOSAL_ID with its discussion and treasury transaction."""
    url = v1_url(need_api(api_url), f"/governance/proposals/{proposal_id}")
    p = get_json(url, api_key=api_key)

    def lines() -> list[str]:
        out = [_line(p), p["description"], f"plan: {p['implementation_plan']}"]
        out += [f"  {c['author']} at {c['at']}: {c['text']}" for c in p["comments"]]
        if p.get("explorer_url"):
            out.append(f"transaction: {p['explorer_url']}")
        return out

    render(p, as_json, lines)


_ON_PROPOSAL: tuple[tuple[str, str, tuple[Callable[[Any], Any], ...]], ...] = (
    ("comment", "Comment on PROPOSAL_ID during its comment period.",
     (click.option("--text", required=True, help="The comment."),)),
    ("extend", "Extend the comment period of PROPOSAL_ID (core maintainers, SRS-GOV-04).",
     (click.option("--deadline-at", type=int, required=True,
                   help="The new end of the comment period (POSIX s; at most 21 days after "
                        "submission)."),)),
    ("ack", "Acknowledge treasury proposal PROPOSAL_ID (multisig holders, SRS-GOV-05).", ()),
    ("close", "Close PROPOSAL_ID after its comment period and record the outcome (maintainers).",
     (click.option("--outcome", required=True, type=click.Choice(["accepted", "rejected"]),
                   help="The decision recorded once the comment period is over."),)),
    ("execute",
     "Mark PROPOSAL_ID executed; a treasury proposal's transaction is finalised and broadcast.",
     ()),
)  # fmt: skip
"""The statements about an existing proposal: action, help, and the options that become the
statement's arguments (``--deadline-at`` is ``deadline_at``)."""

for _action, _help, _options in _ON_PROPOSAL:
    _on_proposal(_action, _help, _options)


@gov.group("log")
def log() -> None:
    """The governance log: every action, hash-chained and signed by the coordinator."""


def _log_from_url(url: str) -> tuple[list[Any], str]:
    base = v1_url(url, "/governance/log")
    found: list[Any] = []
    key = ""
    while True:
        page = get_json(f"{base}?start={len(found)}&limit={PAGE}")
        key = str(page.get("coordinator_key", ""))
        found.extend(page["entries"])
        if len(page["entries"]) < PAGE:
            return found, key


@log.command("verify")
@click.option("--url", help="The coordinator API's base URL (GET /v1/governance/log).")
@click.option("--file", "file_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON exported from GET /v1/governance/log.")  # fmt: skip
@click.option("--coordinator-key",
              help="The coordinator's Ed25519 public key (64 hex); without it, the key the "
                   "log names (which proves only internal consistency).")  # fmt: skip
@click.option("--expected-head", help="The head hash published earlier (detects truncation).")
@json_option("the verdict (ok, entries and head, or the bad index and why)")
def verify(
    url: str | None, file_path: Path | None, coordinator_key: str | None,
    expected_head: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Check the chain, the coordinator's signatures and every statement; exit 3 if bad."""
    if (url is None) == (file_path is None):
        raise click.UsageError("give exactly one of --url and --file")
    if url is not None:
        raw, named = _log_from_url(url)
    else:
        data = json.loads(Path(file_path or "").read_text(encoding="utf-8"))
        raw, named = data.get("entries", []), str(data.get("coordinator_key", ""))
    key = parse_public_key((coordinator_key or named).strip().lower(), "coordinator_key")
    check_log(raw, GovernanceLogEntry.from_dict, lambda e: verify_log(e, key, expected_head),
              as_json, coordinator_key=key)  # fmt: skip
