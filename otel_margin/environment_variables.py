"""Every environment variable otel-margin reads, named once, each with what it does.

A bad value is logged and replaced by the default; it never stops the application.
"""

OTEL_MARGIN_POLICY = "OTEL_MARGIN_POLICY"
"""Path of the policy file (TOML). Default: ``./otel-margin.toml`` when it exists."""

OTEL_MARGIN_PLUGINS = "OTEL_MARGIN_PLUGINS"
"""Comma-separated allow-list of guardrail plugin names to load. Unset: all installed."""

OTEL_MARGIN_DISABLE_PLUGINS = "OTEL_MARGIN_DISABLE_PLUGINS"
"""Comma-separated block-list of guardrail plugin names; ``*`` disables entry-point autoload
(the model is ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``)."""

OTEL_MARGIN_OPENAI_INCLUDE_USAGE = "OTEL_MARGIN_OPENAI_INCLUDE_USAGE"
"""``true`` (default) injects ``stream_options.include_usage`` into OpenAI chat streams so
usage is exact, and hides the extra usage-only chunk from callers that did not ask for it."""

OTEL_MARGIN_MAX_TOKENS_PER_CALL = "OTEL_MARGIN_MAX_TOKENS_PER_CALL"
"""Input plus output tokens one call can use, at most. Default 10000000. A reply claiming more is
recorded with cost status ``invalid`` and no cost, warned about once per model and counted."""

OTEL_MARGIN_HANDLE_SIGTERM = "OTEL_MARGIN_HANDLE_SIGTERM"
"""``true`` (default): on SIGTERM, write pending calls and spans (at most 5 s), then hand the signal
to the handler that was there before (docs/reliability.md). ``false``: leave SIGTERM alone."""

OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""``true`` (or ``SPAN_ONLY`` / ``SPAN_AND_EVENT``) records system instructions, input and output
messages on chat spans (``gen_ai.system_instructions``, ``gen_ai.input.messages``,
``gen_ai.output.messages``, JSON as the GenAI conventions shape them). Default: off
(``false`` / ``NO_CONTENT``); ``EVENT_ONLY`` records none (otel-margin emits no events)."""

OTEL_MARGIN_CAPTURE_MESSAGE_MAX_BYTES = "OTEL_MARGIN_CAPTURE_MESSAGE_MAX_BYTES"
"""Cap of each captured content attribute, in UTF-8 bytes. Default 32768, at least 64. Longer
content has its longest strings cut (ending ``...[truncated]``), the JSON kept valid, and
``margin.content.truncated`` names the attributes cut."""

# --- ClickHouse exporter (issue 3) ---------------------------------------------------------
OTEL_EXPORTER_CLICKHOUSE_ENDPOINT = "OTEL_EXPORTER_CLICKHOUSE_ENDPOINT"
"""``chdb:///path`` (embedded, the default ``chdb://./.otel-margin/chdb``) or ``http(s)://host:port``."""

OTEL_EXPORTER_CLICKHOUSE_DATABASE = "OTEL_EXPORTER_CLICKHOUSE_DATABASE"
"""Database name. Default ``otel_margin``."""

OTEL_EXPORTER_CLICKHOUSE_USERNAME = "OTEL_EXPORTER_CLICKHOUSE_USERNAME"
"""User for a ClickHouse server. Default ``default``."""

OTEL_EXPORTER_CLICKHOUSE_PASSWORD = "OTEL_EXPORTER_CLICKHOUSE_PASSWORD"
"""Password for a ClickHouse server. Default empty."""

OTEL_EXPORTER_CLICKHOUSE_TTL_DAYS = "OTEL_EXPORTER_CLICKHOUSE_TTL_DAYS"
"""Days raw ``llm_calls`` rows are kept. Default 180; ``0`` keeps them forever."""

OTEL_EXPORTER_CLICKHOUSE_TIMEOUT = "OTEL_EXPORTER_CLICKHOUSE_TIMEOUT"
"""Deadline in seconds of one request, of a drain and of ``shutdown()``. Default 10. Over HTTP,
``export()`` retries a direct insert for at most 2 s of it, then spools the batch for the drainer."""

OTEL_EXPORTER_CLICKHOUSE_SPOOL_DIR = "OTEL_EXPORTER_CLICKHOUSE_SPOOL_DIR"
"""Local directory for the durable spool of batches not yet written. Default ``./.otel-margin/spool``."""

OTEL_EXPORTER_CLICKHOUSE_SPOOL_MAX_MB = "OTEL_EXPORTER_CLICKHOUSE_SPOOL_MAX_MB"
"""Upper bound of the spool directory in MiB; batches beyond it are dropped and counted. Default 256."""

OTEL_EXPORTER_CLICKHOUSE_DRAIN_INTERVAL = "OTEL_EXPORTER_CLICKHOUSE_DRAIN_INTERVAL"
"""Seconds between the exporter's looks at its spool. Default 5. Embedded chDB: a look inserts
once 256 KiB of rows wait or the oldest waited 12 intervals (an insert's CPU is mostly fixed);
longer costs less CPU and rows reach the table later. A server: how often an outage's spool is
replayed."""
