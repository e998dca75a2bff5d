"""The treasury desk: an accepted treasury proposal's PSBT, from creation to broadcast.

The file-based flow hardware wallets need (SRS-LN-09, SRS-SEC-12, SRS-GOV-06):
:meth:`TreasuryDesk.prepare` chooses the wallet's coins
(:func:`~owm_core.governance.treasury.plan_spend`) and keeps the unsigned PSBT of the
proposal; holders export it, sign it on their devices and hand their copies back
(:meth:`TreasuryDesk.add_signatures` keeps only signatures that verify);
:meth:`TreasuryDesk.finalise` extracts the transaction once the quorum signed and
:meth:`TreasuryDesk.broadcast` sends it through the wallet-chain port. The governance service
decides *whether* each step may happen and logs it; this desk only does it.
"""

from __future__ import annotations

import attrs

from owm_core.errors import Conflict, PolicyViolation, must_exist
from owm_core.governance.proposals import Proposal
from owm_core.governance.treasury import TreasurySpend, Utxo, plan_spend
from owm_core.ports.chain import WalletChain
from owm_core.ports.repositories import Repositories
from owm_core.ports.treasury import TreasuryWallet

DEFAULT_FEE_RATE_SAT_VB = 2


@attrs.frozen
class Finalised:
    """A spend ready to go out: the raw transaction, its txid and the holders who signed."""

    raw_tx: bytes
    txid: str
    signers: frozenset[str]


@attrs.define(eq=False)
class TreasuryDesk:
    """PSBTs of treasury proposals over a wallet and a chain (see the module docstring)."""

    wallet: TreasuryWallet
    _chain: WalletChain
    _store: Repositories
    _fee_rate: int = attrs.field(default=DEFAULT_FEE_RATE_SAT_VB, alias="fee_rate_sat_vb")

    def coins(self) -> list[Utxo]:
        """The wallet's unspent coins, as the chain reports them."""
        return self._chain.unspent(self.wallet.script_pubkey)

    def prepare(self, proposal: Proposal, now: int) -> TreasurySpend:
        """Store (and return) the unsigned PSBT paying ``proposal``; a PSBT prepared before
        and not broadcast is replaced, with its signatures."""
        if not proposal.payout_address:
            raise PolicyViolation(f"proposal {proposal.proposal_id} names no payout address")
        self.wallet.payout_script(proposal.payout_address)
        plan = plan_spend(self.coins(), proposal.requested_sat, self._fee_rate)
        psbt = self.wallet.create_psbt(plan, proposal.payout_address)
        spend = TreasurySpend(proposal_id=proposal.proposal_id, psbt=psbt, created_at=now)
        self._store.treasury_spends.save(spend)
        return spend

    def spend(self, proposal_id: str) -> TreasurySpend:
        """The spend of ``proposal_id``; NotFound if no PSBT was prepared."""
        return must_exist(
            self._store.treasury_spends.get(proposal_id),
            f"no PSBT has been prepared for proposal {proposal_id}",
        )

    def add_signatures(self, proposal_id: str, signed_psbt: str) -> tuple[TreasurySpend, set[str]]:
        """Merge a holder's signed copy; the spend and the holder keys it added."""
        spend = self.spend(proposal_id)
        if spend.broadcast:
            raise Conflict(f"the transaction of {proposal_id} was broadcast already")
        merged, signers = self.wallet.merge(spend.psbt, signed_psbt)
        updated = attrs.evolve(spend, psbt=merged, signers=signers)
        self._store.treasury_spends.save(updated)
        return updated, set(signers - spend.signers)

    def finalise(self, proposal: Proposal) -> Finalised:
        """The signed transaction of ``proposal``, checked to pay what it asked, to where it
        asked; PolicyViolation before the quorum signed."""
        spend = self.spend(proposal.proposal_id)
        if spend.broadcast:
            raise Conflict(f"the transaction of {proposal.proposal_id} was broadcast already")
        payee = self.wallet.payout_script(proposal.payout_address)
        if (payee, proposal.requested_sat) not in self.wallet.payments(spend.psbt):
            raise PolicyViolation("the PSBT does not pay the proposal's amount to its address")
        raw, txid = self.wallet.finalise(spend.psbt)
        return Finalised(raw, txid, self.wallet.signers(spend.psbt))

    def broadcast(self, proposal_id: str, finalised: Finalised) -> None:
        """Send the transaction and record its txid (SRS-GOV-06)."""
        txid = self._chain.broadcast(finalised.raw_tx)
        if txid != finalised.txid:
            raise PolicyViolation(f"the chain reports txid {txid}, expected {finalised.txid}")
        spend = self.spend(proposal_id)
        self._store.treasury_spends.save(attrs.evolve(spend, txid=txid))
