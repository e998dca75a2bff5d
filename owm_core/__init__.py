"""OWM's domain: the rules of the network as pure functions and frozen values, one subpackage per
bounded context (identity, nodes, coordination, market, stake, payments, fl, knowledge, provenance,
pool, governance, access), and the ports (``owm_core.ports``) the adapters implement. No I/O of any
kind: time is passed in, money is integer sat/msat (docs/architecture.md)."""
