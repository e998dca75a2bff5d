"""``owm sim economy``: the whole incentive system under a seeded random world.

Nodes register with stake, send heartbeats, take tasks from clients with budgets, are paid,
verified and slashed; FL rounds raise anomaly signals; the pool credits FPPS shares; the
treasury funds work and grants — each through the real ``owm_core`` rule or the
coordinator's own service over the in-memory store, with invariants checked after every day.
See docs/simulation.md for the model and its simplifications.
"""
