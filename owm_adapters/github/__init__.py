"""GitHub: the App's credentials and installation tokens, its REST client, and a local stand-in.

* :mod:`~owm_adapters.github.app_auth` — the App JWT (RS256, PyJWT) and the in-memory cache of
  installation access tokens (SRS-SEC-08);
* :mod:`~owm_adapters.github.rest` — :class:`GitHubRest`, the :class:`owm_core.ports.github.
  GitHub` port over GitHub's REST API (or anything speaking its shapes);
* :mod:`~owm_adapters.github.standin` — :class:`GitHubStandIn`, a local HTTP server speaking
  the REST shapes the App calls, which checks every JWT and token it is sent (tests, devnets).
"""
