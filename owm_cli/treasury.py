"""``owm treasury psbt create | sign | combine | broadcast``: the treasury's PSBT files
(SRS-LN-09, SRS-SEC-12, SRS-GOV-06); see :mod:`owm_cli.gov` for the flow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from owm_adapters.storage import keystore
from owm_cli.api_client import post_json, v1_url
from owm_cli.gov import API_OPTION, KEY_OPTION, act, need_api
from owm_cli.options import COORDINATOR_OPTION, json_option, render


def _write(path: Path, psbt: str) -> None:
    path.write_text(psbt + "\n", encoding="ascii")


@click.group("treasury")
def treasury() -> None:
    """The treasury's 3-of-5 multisig wallet (SRS-LN-09)."""


@treasury.group("psbt")
def psbt() -> None:
    """Treasury transactions as PSBT files, signed by the holders' hardware wallets."""


@psbt.command("create")
@click.argument("proposal_id")
@API_OPTION
@KEY_OPTION
@COORDINATOR_OPTION
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the unsigned PSBT (base64) here, for the holders to sign.")  # fmt: skip
@json_option("the spend (PSBT, signers)")
def create(
    proposal_id: str, api_url: str | None, key_path: Path, out_path: Path, as_json: bool
) -> None:
    """Prepare the PSBT of accepted treasury proposal PROPOSAL_ID (maintainers, holders)."""
    spend = act(api_url, key_path, "psbt_create", proposal_id)["spend"]
    _write(out_path, spend["psbt"])
    render(spend, as_json, lambda: [f"PSBT of {proposal_id} written to {out_path}"])


@psbt.command("sign")
@click.argument("psbt_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A holder's secp256k1 key file (32 bytes hex, 0600): a software stand-in "
                   "for a hardware wallet, for devnets and tests.")  # fmt: skip
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the signed copy here.")  # fmt: skip
def sign(psbt_file: Path, key_path: Path, out_path: Path) -> None:
    """Sign PSBT_FILE with a software key (what a hardware wallet does with the file)."""
    from owm_adapters.treasury.wallet import public_key_of, sign_with_key

    secret = keystore.load_secret(key_path.expanduser())
    signed = sign_with_key(psbt_file.read_text(encoding="ascii").strip(), secret)
    _write(out_path, signed)
    click.echo(f"signed by {public_key_of(secret)}, written to {out_path}")


@psbt.command("combine")
@click.argument("proposal_id")
@click.argument("signed_files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))  # fmt: skip
@API_OPTION
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the combined PSBT here.")  # fmt: skip
@json_option("the spend after the last copy")
def combine(
    proposal_id: str, signed_files: tuple[Path, ...], api_url: str | None, out_path: Path | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Hand the signed copies SIGNED_FILES of PROPOSAL_ID's PSBT back to the coordinator."""
    url = v1_url(need_api(api_url), f"/treasury/psbts/{proposal_id}/signatures")
    spend: dict[str, Any] = {}
    for path in signed_files:
        body = {"psbt": path.read_text(encoding="ascii").strip()}
        spend = post_json(url, json.dumps(body).encode())["spend"]
    if out_path is not None:
        _write(out_path, spend["psbt"])
    render(spend, as_json,
           lambda: [f"{len(spend['signers'])} holders have signed {proposal_id}"])  # fmt: skip


@psbt.command("broadcast")
@click.argument("proposal_id")
@API_OPTION
@KEY_OPTION
@COORDINATOR_OPTION
@json_option("the receipt (proposal with its txid, log entry)")
def broadcast(proposal_id: str, api_url: str | None, key_path: Path, as_json: bool) -> None:
    """Finalise, broadcast and record PROPOSAL_ID's transaction (its execute statement)."""
    receipt = act(api_url, key_path, "execute", proposal_id)
    txid = receipt["proposal"]["txid"]
    render(receipt, as_json, lambda: [f"broadcast {txid}; {proposal_id} is executed"])
