"""The chain a program checks OpenTimestamps proofs against: a node's ``[chain]``, or the
coordinator's ``[provenance]`` chain source (SRS-NODE-10).

Bitcoin Core / Knots over JSON-RPC (``bitcoin_rpc`` with a cookie or user/password; the network
asked from the node unless given), or a devnet's embedded chain file (``local_chain``, regtest
rules). Either way the headers come from a source the operator runs, never from the party
whose proof is checked.
"""

from __future__ import annotations

from pathlib import Path

from owm_adapters.bootstrap.settings import ConfigError, NodeChain
from owm_core.errors import DomainError
from owm_core.ports.chain import Chain
from owm_core.provenance.versions import Network


def chain_source_of(chain: NodeChain, where: str = "chain") -> tuple[Chain, Network] | None:
    """The chain port and network rules ``chain`` names; None when it names none.

    ConfigError (naming ``where``) for a missing chain file or an unusable RPC setting.
    """
    try:
        if chain.local_chain:
            from owm_adapters.chain.local_chain import LocalChain

            path = Path(chain.local_chain).expanduser()
            if not path.exists():
                raise ConfigError(f"{where}.local_chain: {path} does not exist")
            return LocalChain(path), Network.from_name(chain.network or "regtest")
        if chain.bitcoin_rpc:
            from owm_adapters.chain.bitcoin_rpc import BitcoinRpc

            rpc = BitcoinRpc(
                chain.bitcoin_rpc, user=chain.rpc_user or None,
                password=chain.rpc_password or None,
                cookie_file=Path(chain.rpc_cookie).expanduser() if chain.rpc_cookie else None,
            )
            return rpc, Network.from_name(chain.network) if chain.network else rpc.network()
    except DomainError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc.message}") from None
    return None
