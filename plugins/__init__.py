"""Built-in guardrail plugins (cache, routing, limits), installed as ``otel_margin.plugins``.

Each is an ordinary pluggy plugin module, registered exactly as a third-party plugin
registered through the ``otel_margin`` entry-point group would be.
"""

DEFAULT_PLUGINS: list[str] = []
"""Module names of the built-in plugins; the built-in guardrails arrive in a later issue."""
