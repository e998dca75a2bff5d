"""The public HTTP API (SRS 4.8) on starlette: ``create_app(services)``; ``serve.ApiServer``."""
