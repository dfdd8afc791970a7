"""The ClickHouse span exporter and its storage client (installs as ``otel_margin.exporters``)."""
