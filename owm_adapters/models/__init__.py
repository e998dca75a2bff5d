"""The small models that nodes and the coordinator share (weights layout, genesis, inference)."""
