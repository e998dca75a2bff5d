"""The node daemon (SRS 4.1): one process from ``owm-node start`` to earning.

* :mod:`.daemon` — :class:`NodeDaemon`: run, drain and ``/health``; its threads live in
  :mod:`.registration` (stake guidance, SRS-NODE-11), :mod:`.heartbeat` (signed manifests every
  60 s, SRS-NODE-04), :mod:`.feed` (accept / validate / reject / resume, SRS-NODE-06/07),
  :mod:`.prover` (execute, seal and report proofs, deliver FL updates) and :mod:`.watchers`
  (stake capacity, payments; SRS-NODE-12), sharing one :class:`~.context.NodeContext`.
* The daemon talks to the coordinator through the ``ControlPlane`` port; its gRPC client, its
  in-process twin and the SOCKS5 route (SRS-NET-02) live in :mod:`owm_adapters.control_plane`.
* :mod:`.task_runner` / :mod:`.task_worker` / :mod:`.task_exec` — isolated subprocesses with a
  timeout, a memory limit and CUDA MPS limits (SRS-NODE-05); the model they run is
  :mod:`owm_adapters.models.tinynet`, shared with the coordinator.
* :mod:`.task_log` — the SQLite task log (SRS-NODE-06).
* :mod:`.health` — ``GET /health`` on 127.0.0.1 (SRS-NODE-08).
* :mod:`.weights` — weights load only after their OpenTimestamps proof verifies; clearnet-only
  transfers (SRS-NODE-10, SRS-NET-04).
"""
