"""``otel-margin review weekly|quarterly``: the fixed-agenda margin reviews (docs/reviews.md).

:mod:`.periods` (ISO weeks, quarters), :mod:`.data` (the ``review_*_query.sql`` reads),
:mod:`.trends` (stable / improving / degrading), :mod:`.backlog` (the improvement backlog's four
estimates), :mod:`.upcoming` (price changes, expiring exceptions), :mod:`.weekly` and
:mod:`.quarterly` (the agendas), :mod:`.render` (the document and its Markdown), :mod:`.html`
(the page with its charts), :mod:`.settings` (``[reviews]`` in the policy file).
"""
