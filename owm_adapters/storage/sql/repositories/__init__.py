"""The SQL repositories, one module per context; :mod:`owm_adapters.storage.sql.store` bundles
them into ``SqlRepositories``."""
