"""OWM's server shells: the coordinator's gRPC control plane (``owm_server.grpc``) and public
HTTP API (``owm_server.http``). They parse, call one service and render (problems as RFC 7807,
failures as gRPC statuses); they hold no rules (docs/architecture.md)."""
