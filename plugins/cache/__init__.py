"""The response cache guardrail: exact and semantic hits scoped to a tenant.

One idea a module: :mod:`.key` (the tenant namespace and the canonical request digest),
:mod:`.stores` (in-process, host-shared and Redis entries, failing open), :mod:`.plugin` (the
hooks and settings); the semantic layer: :mod:`.embedder` (text → vector), :mod:`.guard` (the
facts two requests must share), :mod:`.journal` (semantic entries shared through the store),
:mod:`.index` (a usearch index per tenant namespace, saved and reloaded) and :mod:`.semantic`.
"""
