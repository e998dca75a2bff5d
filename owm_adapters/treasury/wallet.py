"""The treasury wallet: a 3-of-5 ``wsh(sortedmulti(…))`` descriptor and its PSBTs, with embit.

Hardware wallets (Coldcard, Trezor) sign PSBT files (BIP-174), so the coordinator never holds a
treasury key (SRS-SEC-12): it builds the unsigned PSBT of an accepted proposal
(:meth:`MultisigWallet.create_psbt`, with each input's witness UTXO, witness script and, for
holders configured with a key origin, the BIP-32 derivation a hardware wallet looks for),
takes back each holder's signed copy (:meth:`MultisigWallet.merge`: the same unsigned
transaction, and only signatures that verify against a holder key over that input's BIP-143
sighash), and once enough holders signed (SRS-LN-09) extracts the final transaction
(:meth:`MultisigWallet.finalise`). :func:`sign_with_key` is the software signer the tests and
the devnet use in place of a hardware wallet.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from embit import script
from embit.descriptor import Descriptor
from embit.ec import PrivateKey, PublicKey, Signature
from embit.finalizer import finalize_psbt
from embit.networks import NETWORKS
from embit.psbt import PSBT, DerivationPath
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from owm_core.errors import InvalidValue, PolicyViolation
from owm_core.governance.proposals import MULTISIG_QUORUM
from owm_core.governance.roles import Holder
from owm_core.governance.treasury import SpendPlan

SIGHASH_ALL = 1
NETWORK_NAMES = {"main": "main", "mainnet": "main", "test": "test", "testnet": "test",
                 "signet": "signet", "regtest": "regtest"}  # fmt: skip
MAX_PSBT_BYTES = 1_000_000


def _origin(origin: str) -> DerivationPath | None:
    """``[0a1b2c3d/48h/1h/0h/2h]`` as embit's derivation path, or None for no origin."""
    if not origin:
        return None
    fingerprint, *steps = origin.strip("[]").split("/")
    path = [int(s.rstrip("h'")) + (0x80000000 if s[-1] in "h'" else 0) for s in steps]
    return DerivationPath(bytes.fromhex(fingerprint), path)


def parse_psbt(text: str, field: str = "psbt") -> PSBT:
    """A base64 PSBT, parsed by embit; InvalidValue naming ``field`` if it is not one."""
    if not isinstance(text, str) or len(text) > MAX_PSBT_BYTES * 4 // 3 + 4:
        raise InvalidValue(field, "must be a base64 PSBT of at most 1 MB")
    try:
        return PSBT.parse(base64.b64decode(text.strip(), validate=True))
    except (binascii.Error, ValueError, IndexError, TypeError, EOFError) as exc:
        raise InvalidValue(field, f"is not a PSBT: {exc}") from None
    except Exception as exc:  # embit raises its own and bare exceptions on malformed input
        raise InvalidValue(field, f"is not a PSBT: {type(exc).__name__}") from None


class MultisigWallet:
    """The treasury's ``wsh(sortedmulti(3, …5 keys))`` wallet on one network (module docstring)."""

    def __init__(self, holders: Sequence[Holder], network: str = "regtest",
                 quorum: int = MULTISIG_QUORUM) -> None:  # fmt: skip
        if network not in NETWORK_NAMES:
            raise InvalidValue("network", f"must be one of {', '.join(sorted(NETWORK_NAMES))}")
        self._network = NETWORKS[NETWORK_NAMES[network]]
        self._holders = tuple(holders)
        self.quorum = quorum
        keys = ",".join(f"{h.origin}{h.multisig_key}" for h in self._holders)
        self.descriptor = f"wsh(sortedmulti({quorum},{keys}))"
        self._descriptor = Descriptor.from_string(self.descriptor)
        self._witness_script = self._descriptor.witness_script()
        self.script_pubkey: bytes = self._descriptor.script_pubkey().data

    @property
    def address(self) -> str:
        """The wallet's receiving address (one address: the keys are not ranged)."""
        return str(self._descriptor.address(self._network))

    def payout_script(self, address: str, field: str = "payout_address") -> bytes:
        """The output script paying ``address``; InvalidValue unless it is an address of
        this wallet's network."""
        try:
            spk = script.address_to_scriptpubkey(address)
            valid = spk.address(self._network) == address
        except Exception:  # embit raises bare exceptions for foreign or broken addresses
            valid = False
        if not valid:
            raise InvalidValue(field, f"is not a Bitcoin address on {self._network['name']}")
        return bytes(spk.data)

    def create_psbt(self, plan: SpendPlan, payee_address: str) -> str:
        """The unsigned PSBT (base64) paying ``plan.amount_sat`` to ``payee_address`` from
        ``plan.inputs``, the change (if any) back to the wallet."""
        vin = [TransactionInput(bytes.fromhex(u.txid), u.vout) for u in plan.inputs]
        vout = [
            TransactionOutput(plan.amount_sat, script.Script(self.payout_script(payee_address)))
        ]
        if plan.change_sat:
            vout.append(TransactionOutput(plan.change_sat, script.Script(self.script_pubkey)))
        psbt = PSBT(Transaction(vin=vin, vout=vout))
        for scope, utxo in zip(psbt.inputs, plan.inputs, strict=True):
            scope.witness_utxo = TransactionOutput(
                utxo.amount_sat, script.Script(self.script_pubkey)
            )
            scope.witness_script = self._witness_script
            for holder in self._holders:
                origin = _origin(holder.origin)
                if origin is not None:
                    scope.bip32_derivations[PublicKey.parse(bytes.fromhex(holder.multisig_key))] = (
                        origin
                    )
        if plan.change_sat:
            psbt.outputs[-1].witness_script = self._witness_script
        return str(psbt.to_base64())

    def _valid_signers(self, psbt: PSBT, field: str) -> list[set[str]]:
        """Per input, the holder keys with a valid SIGHASH_ALL signature; InvalidValue for a
        signature that does not verify or a key that is no holder's."""
        holders = {h.multisig_key for h in self._holders}
        found: list[set[str]] = []
        for i, scope in enumerate(psbt.inputs):
            if (
                scope.witness_utxo is None
                or scope.witness_utxo.script_pubkey.data != self.script_pubkey
            ):
                raise InvalidValue(f"{field}.inputs[{i}]", "does not spend the treasury wallet")
            keys: set[str] = set()
            for pub, sig in scope.partial_sigs.items():
                key = pub.sec().hex()
                if key not in holders:
                    raise InvalidValue(f"{field}.inputs[{i}]", f"signed by a non-holder key {key}")
                if not sig or sig[-1] != SIGHASH_ALL:
                    raise InvalidValue(f"{field}.inputs[{i}]", "signature is not SIGHASH_ALL")
                try:
                    ok = pub.verify(Signature.parse(sig[:-1]), psbt.sighash(i, SIGHASH_ALL))
                except Exception:  # a malformed DER signature
                    ok = False
                if not ok:
                    raise InvalidValue(
                        f"{field}.inputs[{i}]", f"signature of {key} does not verify"
                    )
                keys.add(key)
            found.append(keys)
        return found

    def signers(self, psbt_text: str) -> frozenset[str]:
        """The holder keys that signed every input of the PSBT (checked, not trusted)."""
        per_input = self._valid_signers(parse_psbt(psbt_text), "psbt")
        return frozenset(set.intersection(*per_input)) if per_input else frozenset()

    def merge(self, current_text: str, signed_text: str) -> tuple[str, frozenset[str]]:
        """``current`` with the verified signatures of ``signed`` added, and the holders who
        have now signed every input. The signed copy must carry the same unsigned
        transaction: a holder cannot swap the payee, the amount or the coins."""
        current, signed = parse_psbt(current_text), parse_psbt(signed_text, "signed_psbt")
        if signed.tx.txid() != current.tx.txid():
            raise InvalidValue("signed_psbt", "is not a copy of this proposal's PSBT")
        for mine, theirs in zip(current.inputs, signed.inputs, strict=True):
            theirs.witness_utxo = mine.witness_utxo  # the amounts signed are ours, not theirs
        self._valid_signers(signed, "signed_psbt")
        for mine, theirs in zip(current.inputs, signed.inputs, strict=True):
            mine.partial_sigs.update(theirs.partial_sigs)
        merged = str(current.to_base64())
        return merged, self.signers(merged)

    def finalise(self, psbt_text: str) -> tuple[bytes, str]:
        """The signed transaction and its txid, once ``quorum`` holders signed every input
        (SRS-LN-09)."""
        psbt = parse_psbt(psbt_text)
        signed = self.signers(psbt_text)
        if len(signed) < self.quorum:
            raise PolicyViolation(
                f"the PSBT carries {len(signed)} of the {self.quorum} holder signatures needed"
            )
        final = finalize_psbt(psbt)
        if final is None:
            raise PolicyViolation("the PSBT cannot be finalised")
        return bytes(final.serialize()), str(final.txid().hex())

    def payments(self, psbt_text: str) -> list[tuple[bytes, int]]:
        """The PSBT's outputs as (script, amount sat), in order."""
        psbt = parse_psbt(psbt_text)
        return [(bytes(o.script_pubkey.data), int(o.value)) for o in psbt.tx.vout]


def sign_with_key(psbt_text: str, private_key: bytes) -> str:
    """``psbt`` signed (SIGHASH_ALL, every input) with one software secp256k1 key: what a
    holder's hardware wallet does, for tests and the devnet. InvalidValue if it signs
    nothing (not a holder key of this PSBT)."""
    psbt = parse_psbt(psbt_text)
    if len(private_key) != 32:
        raise InvalidValue("key", "must be a 32-byte secp256k1 secret")
    if psbt.sign_with(PrivateKey(private_key)) == 0:
        raise InvalidValue("key", "is not one of the keys this PSBT's inputs need")
    return str(psbt.to_base64())


def public_key_of(private_key: bytes) -> str:
    """The compressed public key (66 hex) of a 32-byte secp256k1 secret."""
    return str(PrivateKey(private_key).get_public_key().sec().hex())
