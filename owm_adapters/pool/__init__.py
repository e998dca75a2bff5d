"""The mining pool's network side: Stratum V2 over Noise on TCP sockets (SRS-POOL-01)."""
