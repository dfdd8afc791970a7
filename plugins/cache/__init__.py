"""The response cache guardrail: exact (and, later, semantic) hits scoped to a tenant.

This package holds the cache's parts, one idea a module: :mod:`.key` (the tenant namespace and
the canonical request digest) and :mod:`.stores` (in-process, host-shared and Redis entries,
failing open). The plugin that answers ``margin_cache_lookup`` from them is not built yet.
"""
