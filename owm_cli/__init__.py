"""Command-line shells: ``owm``, ``owm-node`` and ``owm-coordinator``.

Shells parse arguments, call the application services built by the composition root, and render
results. Errors are rendered in one place, :mod:`owm_cli.errors`.
"""
