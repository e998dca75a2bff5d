"""Name patterns shared by the domain and the API schemas, free of attrs.

Kept apart from :mod:`owm_core.fields` because the node's task worker parses task inputs with
these patterns and must not import attrs (a worker process stays small and quick to start).
"""

SLUG = r"[a-z0-9][a-z0-9._-]{0,63}"
"""A lower-case name of 1 to 64 characters: sub-models, datasets (the API's ``SLUG`` schema)."""
LN_PUBKEY = r"0[23][0-9a-f]{64}"
"""A Lightning node id: a compressed secp256k1 public key as 66 lower-case hex digits."""
