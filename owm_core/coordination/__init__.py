"""The coordinator's control plane: its rules as pure use cases (SRS-COORD-01/02, spec 4.12.2).

One module a concern, each a set of pure functions over the ports (the narrow stores of
:mod:`owm_core.ports.stores`, and :mod:`owm_core.ports.lightning`), with time (``now``, int
POSIX seconds) and randomness (nonce and seed bytes) passed in:

* :mod:`~owm_core.coordination.challenges` — challenge–response authentication (SRS-SEC-03);
* :mod:`~owm_core.coordination.wire` — opening signed envelopes as received;
* :mod:`~owm_core.coordination.registration` — registering and leaving (SRS-SEC-04,
  SRS-STAKE-07/08), and a node's public status;
* :mod:`~owm_core.coordination.stakes` — stake terms and (re-)verification over Lightning
  (SRS-NODE-11, SRS-STAKE-01/02/03);
* :mod:`~owm_core.coordination.heartbeats` — verifying and admitting heartbeats (SRS-NODE-04,
  SRS-PERF-04);
* :mod:`~owm_core.coordination.tasks` — the task market: submission, dispatch, proofs,
  time-outs, settlement;
* :mod:`~owm_core.coordination.rejections` — a node refusing an invalid replica (SRS-NODE-07);
* :mod:`~owm_core.coordination.network` — network statistics for the public API.

Import from those modules; this package re-exports nothing.
"""
