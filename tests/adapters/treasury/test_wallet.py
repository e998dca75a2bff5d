"""The treasury wallet over embit: PSBTs that embit parses back, and refusals of tampering."""

from __future__ import annotations

from pathlib import Path

import pytest
from embit.psbt import PSBT
from embit.transaction import Transaction

from owm_adapters.chain.local_ledger import LocalLedger
from owm_adapters.treasury.wallet import MultisigWallet, parse_psbt, sign_with_key
from owm_core.errors import InvalidValue, PolicyViolation, TransactionRejected
from owm_core.governance.roles import Holder
from owm_core.governance.treasury import plan_spend
from tests.governance_keys import HOLDER_SECRETS, HOLDERS

PAYEE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


@pytest.fixture
def wallet() -> MultisigWallet:
    return MultisigWallet(HOLDERS, "regtest")


@pytest.fixture
def ledger(tmp_path: Path) -> LocalLedger:
    return LocalLedger(tmp_path / "ledger.sqlite3")


def unsigned(wallet: MultisigWallet, ledger: LocalLedger, amount: int = 20_000_000) -> str:
    ledger.fund(wallet.script_pubkey, 50_000_000)
    return wallet.create_psbt(plan_spend(ledger.unspent(wallet.script_pubkey), amount, 2), PAYEE)


def test_the_descriptor_is_a_3_of_5_sorted_multisig_and_embit_parses_the_psbt(
    wallet: MultisigWallet, ledger: LocalLedger
) -> None:
    assert wallet.descriptor.startswith("wsh(sortedmulti(3,")
    assert wallet.address.startswith("bcrt1q")
    psbt = PSBT.from_base64(unsigned(wallet, ledger))
    assert psbt.inputs[0].witness_script is not None
    assert psbt.inputs[0].witness_utxo.value == 50_000_000
    assert next(o.value for o in psbt.tx.vout) == 20_000_000
    assert psbt.fee() > 0


def test_three_holders_signing_separately_finalise_a_transaction_the_ledger_accepts(
    wallet: MultisigWallet, ledger: LocalLedger
) -> None:
    base = unsigned(wallet, ledger)
    merged = base
    for secret in HOLDER_SECRETS[:3]:
        merged, signers = wallet.merge(merged, sign_with_key(base, secret))
    assert len(signers) == 3
    raw, txid = wallet.finalise(merged)
    assert Transaction.parse(raw).txid().hex() == txid
    assert ledger.broadcast(raw) == txid
    change = ledger.unspent(wallet.script_pubkey)
    assert len(change) == 1 and change[0].txid == txid
    with pytest.raises(TransactionRejected, match="already"):
        ledger.broadcast(raw)


def test_two_signatures_do_not_finalise(wallet: MultisigWallet, ledger: LocalLedger) -> None:
    base = unsigned(wallet, ledger)
    merged = base
    for secret in HOLDER_SECRETS[:2]:
        merged, _ = wallet.merge(merged, sign_with_key(base, secret))
    with pytest.raises(PolicyViolation, match="2 of the 3"):
        wallet.finalise(merged)


def test_a_signed_copy_that_pays_someone_else_is_refused(
    wallet: MultisigWallet, ledger: LocalLedger
) -> None:
    base = unsigned(wallet, ledger)
    other = wallet.create_psbt(
        plan_spend(ledger.unspent(wallet.script_pubkey), 20_000_000, 2),
        "bcrt1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qzf4jry",
    )
    with pytest.raises(InvalidValue) as refused:
        wallet.merge(base, sign_with_key(other, HOLDER_SECRETS[0]))
    assert refused.value.field == "signed_psbt"
    assert wallet.signers(base) == frozenset()


def test_a_forged_signature_and_a_non_holder_key_are_refused(
    wallet: MultisigWallet, ledger: LocalLedger
) -> None:
    base = unsigned(wallet, ledger)
    signed = parse_psbt(sign_with_key(base, HOLDER_SECRETS[0]))
    key = next(iter(signed.inputs[0].partial_sigs))
    sig = bytearray(signed.inputs[0].partial_sigs[key])
    sig[10] ^= 1
    signed.inputs[0].partial_sigs[key] = bytes(sig)
    with pytest.raises(InvalidValue, match=r"does not verify|not a PSBT"):
        wallet.merge(base, signed.to_base64())
    with pytest.raises(InvalidValue, match="key"):
        sign_with_key(base, b"\x01" * 32)


def test_the_ledger_refuses_a_transaction_whose_witness_was_altered(
    wallet: MultisigWallet, ledger: LocalLedger
) -> None:
    base = unsigned(wallet, ledger)
    merged = base
    for secret in HOLDER_SECRETS[2:]:
        merged, _ = wallet.merge(merged, sign_with_key(base, secret))
    raw, _ = wallet.finalise(merged)
    tx = Transaction.parse(raw)
    tx.vout[0].value += 1  # pays more than the holders signed for
    with pytest.raises(TransactionRejected, match="does not verify"):
        ledger.broadcast(tx.serialize())
    assert len(ledger.unspent(wallet.script_pubkey)) == 1


def test_an_address_of_another_network_is_refused(wallet: MultisigWallet) -> None:
    with pytest.raises(InvalidValue) as refused:
        wallet.payout_script("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")
    assert refused.value.field == "payout_address"


def test_holders_with_key_origins_get_bip32_derivations_for_hardware_wallets(
    ledger: LocalLedger,
) -> None:
    """Treasury holders sign on hardware wallets (SRS-SEC-12), which find their key in a PSBT by its
    BIP-32 origin: every input carries the five holders' derivations (BIP-48 paths). No hardware
    wallet signs here; sign_with_key stands in for one in the other tests."""
    holders = [
        Holder(h.statement_key, h.multisig_key, f"[0000000{i}/48h/1h/0h/2h]")
        for i, h in enumerate(HOLDERS)
    ]
    wallet = MultisigWallet(holders, "regtest")
    psbt = PSBT.from_base64(unsigned(wallet, ledger))
    paths = psbt.inputs[0].bip32_derivations
    assert len(paths) == 5
    assert {p.fingerprint.hex() for p in paths.values()} == {f"0000000{i}" for i in range(5)}
    assert all(p.derivation[0] == 48 + 0x80000000 for p in paths.values())
