"""OWM's adapters, in layers: ``bootstrap`` (the only place that builds things, from the TOML
configuration), ``services`` (the coordinator's use cases with their I/O), ``node`` (the node
daemon), ``control_plane``, then one package per outside system (``lightning``, ``storage``,
``chain``, ``provenance``, ``pool``, ...). The dependency rule is checked by the import contracts
in pyproject.toml (docs/architecture.md)."""
