"""The read side: everything that reads the warehouse.

The write path (``otel_margin`` beside this package, ``otel_margin.plugins``,
``otel_margin.exporters``) records calls; this package analyses them: the margin queries
(:mod:`.margin`), the revenue and period-cost imports (:mod:`.revenue`, :mod:`.period_costs`),
with their SQL beside them in ``sql/``.
"""
