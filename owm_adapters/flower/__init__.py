"""Flower adapter: OWM's FL rules on Flower 1.41's message API (SRS-COORD-03, SRS-SEC-05).

* :mod:`.strategy` — :class:`OwmStrategy`, a ``flwr.serverapp`` strategy that selects by OWM's
  rules, checks each reply's Ed25519 signature and aggregates with ``owm_core.fl.aggregation``;
* :mod:`.clientapp` — the ClientApp (trains :class:`~.model.TinyNet` on local synthetic data);
* :mod:`.serverapp` — the ServerApp the deployment engine runs (``app/pyproject.toml``);
* :mod:`.grid` — :class:`InProcessGrid`, the Ray-free in-process engine (the embedded twin);
* :mod:`.simulation` — ``owm sim fl``'s engine with a colluding Byzantine adversary;
* :mod:`.deployment` — start ``flower-superlink``/``flower-supernode`` and ``flwr run`` locally.
"""
