"""No secret reaches a log line (SRS-SEC-07): a flow with an API key created and used over
HTTP, a Lightning payment and its preimage presented as an L402 credential, an LND macaroon and
a CLN rune in play, logged at DEBUG through the handler the programs install, leaves none of
them in any line; payment hashes, which look like preimages but are public, stay readable."""

from __future__ import annotations

import base64
import io
import json
import logging
import os

from owm_adapters.bootstrap import logs
from owm_core.access import l402
from tests.server.http.world import World

READ = "/v1/stake/requirements"


def _lnd_macaroon_hex() -> str:
    """An LND-style admin macaroon (v2 binary, starts 02 01), hex as LND's REST API takes it."""
    return "0201036c6e6402f801030a10" + os.urandom(120).hex()


def _cln_rune() -> str:
    """A CLN rune: base64url of a 32-byte authcode followed by its restrictions."""
    return base64.urlsafe_b64encode(os.urandom(32) + b"=id=024b9a1fa8&method=listfunds").decode()


def test_no_secret_of_an_end_to_end_flow_appears_in_any_log_line(world: World) -> None:
    stream = io.StringIO()
    logs.configure("DEBUG", "json", stream=stream)
    macaroon, rune = _lnd_macaroon_hex(), _cln_rune()
    log = logging.getLogger("owm.lightning")
    log.debug("connecting to LND with macaroon %s", macaroon)
    log.debug("CLN commando call", extra={"rune": rune, "node_id": "02" + "cd" * 32})
    log.info("clnrest headers {'Rune': '%s'}", rune)

    headers = world.api_key()
    api_secret = headers["Authorization"].removeprefix("Bearer ")
    assert world.client.get(READ, headers=headers).status_code == 200
    assert world.client.get(READ, headers={"X-API-Key": api_secret}).status_code == 200
    logging.getLogger("owm.http").info("request with Authorization: %s", headers["Authorization"])
    logging.getLogger("owm.http").warning("api key %s refused", api_secret)

    challenge = world.client.get(READ)
    offer = l402.parse_challenge(challenge.headers["WWW-Authenticate"])
    payer = world.ledger.add_node("payer")
    world.ledger.open_channel(payer, world.treasury, 1_000_000)
    paid = world.ledger.lightning("payer").pay(offer.invoice, max_fee_msat=10_000, timeout_s=5)
    assert paid.preimage is not None
    credential = l402.format_authorization(
        l402.Credential(offer.macaroon, bytes.fromhex(paid.preimage)))
    assert world.client.get(READ, headers={"Authorization": credential}).status_code == 200
    payouts = logging.getLogger("owm.payouts")
    payouts.info("payment %s settled", paid.payment_hash,
                 extra={"preimage": paid.preimage, "amount_msat": 1000})
    payouts.debug("payment %s settled with preimage %s", paid.payment_hash, paid.preimage)
    payouts.debug("credential %s", credential)
    try:
        raise RuntimeError(f"LND refused macaroon={macaroon}")
    except RuntimeError:
        payouts.exception("lightning call failed")

    text = stream.getvalue()
    lines = text.splitlines()
    assert len(lines) >= 9
    entries = [json.loads(line) for line in lines]
    l402_macaroon = credential.split()[1].partition(":")[0]
    for secret in (macaroon, rune, api_secret, paid.preimage, l402_macaroon, credential):
        assert secret not in text
    assert paid.payment_hash in text, "payment hashes are public and stay readable"
    assert sum(logs.REDACTED in line for line in lines) >= 8
    assert entries[1]["rune"] == logs.REDACTED and entries[1]["node_id"] == "02" + "cd" * 32


def test_the_redaction_rule_masks_secrets_and_keeps_hashes() -> None:
    payment_hash = os.urandom(32).hex()
    node_id = "0201" + os.urandom(31).hex()
    kept = f"payment {payment_hash} to node {node_id}: payment preimage mismatch"
    assert logs.redact_text(kept) == kept
    for secret in (_lnd_macaroon_hex(), "0x" + _lnd_macaroon_hex(), _cln_rune(),
                   base64.urlsafe_b64encode(os.urandom(32)).decode(),
                   "owm_" + os.urandom(24).hex()):
        assert logs.redact_text(f"using {secret} now") == f"using {logs.REDACTED} now"
    assert logs.redact_text(f"preimage={payment_hash}") == f"preimage={logs.REDACTED}"
    assert logs.redact_value("api_key", "anything") == logs.REDACTED
    assert logs.redact_value("headers", {"Password": "hunter2"}) == {"Password": logs.REDACTED}
