"""A review as one self-contained HTML page, its charts drawn by plotly.js inlined in the page.

No CDN and no network: ``plotly.offline.get_plotlyjs()`` (from the installed ``plotly`` package,
a dependency) is written into the page once, each chart is a ``<div>`` with its figure as
JSON, and no element loads anything from elsewhere (no ``src``/``href`` to another host, no
fonts, no map tiles). Text from outside (feature, customer and model names) is HTML-escaped; a
figure's JSON is embedded so that ``</script>`` in a name cannot end its script.
"""

from __future__ import annotations

import functools
import html
import json
from typing import Any

from otel_margin.analysis.reviews.render import Chart, Review, Section, Table

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       color: #1d1d1f; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #d0d0d5; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f6; }
.chart { width: 100%; height: 360px; }
"""


class PlotlyMissing(RuntimeError):
    """The ``plotly`` package is not installed: the HTML page cannot draw its charts."""


def render_html(review: Review) -> str:
    """The review as a standalone HTML document (charts included, nothing fetched)."""
    plotly_js = _plotly_js()
    body = [f"<h1>{_text(review.title)}</h1>"] + [f"<p>{_text(line)}</p>" for line in review.summary]
    charts = []
    for number, section in enumerate(review.sections, 1):
        body += _section(number, section)
        if section.chart is not None:
            charts.append((f"chart-{number}", _figure(section.chart)))
            body.append(f'<div class="chart" id="chart-{number}"></div>')
    script = "\n".join(
        f"Plotly.newPlot({json.dumps(div)}, {_script_json(figure['data'])}, {_script_json(figure['layout'])}, "
        f"{_script_json(_CONFIG)});"
        for div, figure in charts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_text(review.title)}</title><style>{_STYLE}</style>"
        f"<script>{plotly_js}</script></head>\n<body>\n" + "\n".join(body)
        + f"\n<script>{script}</script>\n</body></html>\n"
    )


_CONFIG = {"displaylogo": False, "responsive": True, "showLink": False, "showSendToCloud": False}


def _section(number: int, section: Section) -> list[str]:
    out = [f"<h2>{number}. {_text(section.title)}</h2>"]
    out += [f"<p>{_text(line)}</p>" for line in section.text]
    if section.table is not None:
        out.append(_table(section.table))
    if section.notes:
        out.append("<ul>" + "".join(f"<li>{_text(note)}</li>" for note in section.notes) + "</ul>")
    return out


def _table(table: Table) -> str:
    if not table.rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{_text(h)}</th>" for h in table.headers)
    rows = "".join("<tr>" + "".join(f"<td>{_text(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _figure(chart: Chart) -> dict[str, Any]:
    kind = "scatter" if chart.kind == "line" else "bar"
    data = [{"type": kind, "name": name, "x": list(chart.x), "y": list(values),
             **({"mode": "lines+markers", "connectgaps": False} if kind == "scatter" else {})}
            for name, values in chart.series]
    layout = {"title": {"text": chart.title}, "yaxis": {"title": {"text": chart.y_title}},
              "xaxis": {"type": "category"}, "barmode": "group", "margin": {"t": 48},
              "font": {"family": "system-ui, sans-serif"}}
    return {"data": data, "layout": layout}


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script>``: ``<``, ``>`` and ``&`` escaped so no name can close the script."""
    return (json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _text(value: str) -> str:
    return html.escape(value, quote=True)


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as error:
        raise PlotlyMissing(
            "the HTML review draws its charts with plotly, which is not installed; "
            "pip install plotly (a dependency of otel-margin), or leave out --html"
        ) from error
    return get_plotlyjs()
