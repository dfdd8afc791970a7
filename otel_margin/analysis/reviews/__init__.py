"""``otel-margin review weekly|quarterly``: the fixed-agenda margin reviews."""
