"""Network-facing helpers shared by node and coordinator adapters: URL splitting and name
resolution for the no-SSRF rules (SRS-SEC-06)."""
