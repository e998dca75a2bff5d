"""A whole OWM network on one machine: processes, traffic, status.

``owm devnet`` (:mod:`owm_cli.devnet`) is the shell; :mod:`owm_adapters.bootstrap.devnet`
provisions the network (fresh identities — the code paths of ``owm-coordinator init`` and
``owm-node init`` —, the generated ``coordinator.toml`` and ``owm.toml`` files, the stake and
payout channels in the embedded Lightning ledger, an API key for the devnet's own clients) and
builds the frozen ``Devnet`` that lists its processes; this package owns what runs them:

* :mod:`.layout` — where everything lives in the data directory, and the state file that
  remembers the identities, ports and API key of the network between commands;
* :mod:`.network` — starting what ``build_devnet`` lists, in order, waiting for each;
* :mod:`.processes` — the coordinator, the node daemons and the traffic loop as real
  background processes (own sessions, logs, pid files), readiness, a clean stop;
* :mod:`.traffic` — the loop that keeps the network busy without input: sample inference
  tasks and a sample query, so that rewards flow;
* :mod:`.probe` — what ``owm devnet status`` reports, read from the running network.
"""
