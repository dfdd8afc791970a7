"""``otel-margin dashboard``: the live margin dashboard and its self-contained HTML snapshot."""
