"""Ports: what the domain needs from the world, as ``typing.Protocol`` interfaces.

One port a module, each method with a one-line docstring. Adapters in ``owm_adapters``
implement them; use cases take them as parameters; tests pass embedded twins or fakes.
"""
