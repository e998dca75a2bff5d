"""The gRPC control plane of the coordinator (SRS-COORD-02): servicer, status mapping, server."""
