"""Generated gRPC code (scripts/gen-protos); do not edit."""
