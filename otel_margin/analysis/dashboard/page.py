"""The dashboard's HTML: the live page (its data fetched from the server) and the snapshot
(plotly, the script and the data inlined, so it opens with no network).

Nothing from outside is put into the HTML as markup: the data goes in as JSON inside a
``<script type="application/json">`` element with ``<``, ``>`` and ``&`` escaped (so a name such
as ``</script>`` cannot end it), and the page's script writes names into the document as text.
The snapshot carries a Content-Security-Policy that allows no request at all.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template
from typing import Any

from otel_margin.analysis.dashboard.data import to_json

SNAPSHOT_CSP = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; "
                "font-src data:\">")
"""A snapshot may load nothing: every byte it needs is in the file."""


def live_page(*, refresh_seconds: int) -> str:
    """The page the live server serves; its script fetches ``data.json`` every ``refresh_seconds``."""
    scripts = '<script src="plotly.js"></script>\n<script src="dashboard.js"></script>'
    return _page(csp="", refresh=str(refresh_seconds), scripts=scripts)


def snapshot(document: dict[str, Any]) -> str:
    """A self-contained HTML page of ``document``: opens offline, from a file, anywhere."""
    scripts = "\n".join((
        f'<script type="application/json" id="dashboard-data">{script_json(to_json(document))}</script>',
        f"<script>{script_text(plotly_js())}</script>",
        f"<script>{script_text(asset('dashboard.js'))}</script>",
    ))
    return _page(csp=SNAPSHOT_CSP, refresh="0", scripts=scripts)


def script_json(text: str) -> str:
    """JSON text safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` survives literally
    (JSON reads the ``\\u`` escapes back), nor the line separators old parsers choke on."""
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def script_text(code: str) -> str:
    """JavaScript safe inside a ``<script>`` element (a literal ``</script`` would end it)."""
    return code.replace("</script", "<\\/script")


def asset(name: str) -> str:
    """A file shipped beside this module (``dashboard.js``, ``page.html``)."""
    return resources.files(__package__).joinpath(name).read_text("utf-8")


@cache
def plotly_js() -> str:
    """plotly.js from the installed ``plotly`` package (no CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _page(**parts: str) -> str:
    return Template(asset("page.html")).substitute(**parts)
