"""Protocol-level test peers: local servers speaking real wire protocols, backed by embedded twins.

They are test infrastructure, not product code: adapters' contract suites run against them to
prove the adapters speak the real protocols (LND gRPC over TLS with macaroons, CLN JSON-RPC over
a unix socket) without installing a Lightning node.
"""
