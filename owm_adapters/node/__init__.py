"""The node daemon (SRS 4.1): one process from ``owm-node start`` to earning.

* :mod:`.daemon` — :class:`NodeDaemon`: registration, signed manifests every 60 s, the task
  feed, execution, signed proofs, stake guidance, graceful shutdown (SRS-NODE-01/04/09/11/12).
* :mod:`.control_plane` — the :class:`ControlPlane` the daemon talks to, its in-process twin
  and the SOCKS5 route for control-plane traffic (SRS-NET-02). The gRPC client lives with the
  other gRPC code in :mod:`owm_adapters.control_plane.grpc_client` (generated stubs sit in
  ``owm_server``).
* :mod:`.task_runner` / :mod:`.task_worker` / :mod:`.task_exec` — isolated subprocesses with a
  timeout, a memory limit and CUDA MPS limits (SRS-NODE-05).
* :mod:`.task_log` — the SQLite task log (SRS-NODE-06).
* :mod:`.health` — ``GET /health`` on 127.0.0.1 (SRS-NODE-08).
* :mod:`.weights` — weights load only after their OpenTimestamps proof verifies; clearnet-only
  transfers (SRS-NODE-10, SRS-NET-04).
"""
