"""Simulations: applications that drive the real ``owm_core`` rules over simulated time.

Each simulator takes its clock (simulated POSIX seconds) and its random source (a seeded
``random.Random``) as arguments, so a run is reproducible from its configuration alone.
"""
