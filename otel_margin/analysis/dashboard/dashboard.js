// The otel-margin dashboard: draws the data document (otel_margin/analysis/dashboard/data.py)
// with plotly. Live, it fetches data.json with the filters and again every data-refresh
// seconds; as a snapshot, the document is embedded in the page and the filters are fixed.
//
// Names (features, customers, tiers) come from outside: the DOM gets them only through
// textContent, and plotly (which reads a few HTML tags in its strings) only through esc().
"use strict";

(function () {
  const PERIODS = [1, 7, 30, 90, 365];
  const LABEL = 40; // characters of a name shown on a chart; the full name is in the hover
  const ZONE_COLORS = {green: "#2e7d32", yellow: "#f9a825", red: "#c62828", none: "#bdbdbd"};
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                   "#7f7f7f", "#bcbd22", "#17becf"];
  const body = document.body;
  const embedded = document.getElementById("dashboard-data");
  const live = !embedded;

  // --- text ---------------------------------------------------------------------------------

  function esc(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function short(text) {
    const value = text === "" ? "(none)" : String(text);
    return value.length > LABEL ? value.slice(0, LABEL - 1) + "\u2026" : value;
  }
  function label(text) { return esc(short(text)); }
  function num(value) { return value === null || value === undefined ? null : Number(value); }
  function usd(value) {
    if (value === null || value === undefined) return "-";
    const n = Number(value);
    const sign = n < 0 ? "-" : "";
    if (n !== 0 && Math.abs(n) < 1) return sign + "$" + Math.abs(n).toPrecision(3);
    return sign + "$" + Math.abs(n).toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
  }
  function pct(value) { return value === null || value === undefined ? "-" : Number(value).toFixed(1) + " %"; }
  function share(value) { return value === null || value === undefined ? "-" : (Number(value) * 100).toFixed(1) + " %"; }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }
  function color(index) { return PALETTE[index % PALETTE.length]; }

  // --- sections -------------------------------------------------------------------------------

  function slot(id) {
    const node = document.getElementById(id);
    node.replaceChildren();
    return node;
  }
  function note(id, text, kind) {
    const node = document.getElementById(id + "-note");
    node.textContent = text || "";
    node.className = "note" + (kind ? " " + kind : "");
  }
  function nothing(id, text) {
    const node = slot(id);
    if (window.Plotly) Plotly.purge(node);
    node.append(el("p", {class: "empty"}, text));
  }
  function plot(id, traces, layout) {
    const node = slot(id);
    const base = {margin: {l: 60, r: 20, t: 10, b: 50}, height: 320, legend: {orientation: "h", y: -0.2},
                  hovermode: "closest", font: {size: 12}};
    Plotly.react(node, traces, Object.assign(base, layout || {}), {displaylogo: false, responsive: true});
  }
  // names: how many leading columns hold names (they wrap; figures do not).
  function table(id, headers, rows, names) {
    const node = slot(id);
    if (!rows.length) return;
    const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
    node.append(el("table", {}, el("thead", {}, head),
      el("tbody", {}, ...rows.map((row) => el("tr", {}, ...row.map((cell, i) => el("td", i < names ? {class: "name"} : {}, cell)))))));
  }

  function render(doc) {
    renderFilters(doc);
    renderTotals(doc);
    const views = doc.views || {};
    const noData = doc.no_data ? "No data yet." : null;
    document.getElementById("no-data").textContent = doc.no_data ? "No data yet: " + doc.no_data : "";
    const sections = {
      realtime: renderRealtime, daily: renderDaily, weekly: renderWeekly, monthly: renderMonthly,
      customers: renderCustomers, cost_map: renderCostMap, waterfall: renderWaterfall,
      guardrails: renderGuardrails, alerts: renderAlerts,
    };
    for (const [name, draw] of Object.entries(sections)) {
      if (noData) {
        for (const id of CHARTS[name]) nothing(id, noData);
        continue;
      }
      draw(views[name], doc);
    }
    body.dataset.generatedAt = doc.generated_at;
    body.dataset.renders = String(Number(body.dataset.renders || 0) + 1);
  }

  const CHARTS = {
    realtime: ["chart-realtime"], daily: ["chart-daily"], weekly: ["chart-weekly-tier", "chart-weekly-cohort"],
    monthly: ["chart-monthly", "table-monthly"], customers: ["chart-customers", "table-customers"],
    cost_map: ["chart-cost-map", "table-unit-costs"], waterfall: ["chart-waterfall"], guardrails: ["chart-guardrails", "table-guardrails"],
    alerts: ["table-alerts"],
  };

  function renderTotals(doc) {
    const t = doc.totals;
    const f = doc.filters;
    const cells = [
      ["period", f.start + " .. " + f.end], ["calls", String(t.calls)], ["revenue", usd(t.revenue_usd)],
      ["cost of goods", usd(t.cost_usd)], ["margin", usd(t.margin_usd)], ["margin %", pct(t.margin_pct)],
      ["unpriced calls", t.unpriced_calls + " (" + share(t.unpriced_share) + ")"],
      ["unattributed calls", t.unattributed_calls + " (" + share(t.unattributed_share) + ")"],
      ["calls without a customer", t.anonymous_calls + " (" + share(t.anonymous_share) + ")"],
      ["failed calls", String(t.error_calls)],
    ];
    const node = slot("totals");
    for (const [name, value] of cells) node.append(el("div", {class: "total"}, el("span", {class: "name"}, name), el("span", {class: "value"}, value)));
    const warn = document.getElementById("totals-warning");
    warn.textContent = t.unpriced_calls > 0
      ? t.unpriced_calls + " calls are unpriced: their cost is not in these sums, so every margin shown is an upper bound. Add their models' prices to the policy file."
      : "";
    document.getElementById("generated").textContent = "data as of " + doc.generated_at + (live ? " (refreshes every " + body.dataset.refresh + " s)" : " (snapshot)");
  }

  function renderRealtime(view) {
    if (!view.series.length) {
      nothing("chart-realtime", "No calls in the last 24 hours (since " + view.since + ").");
      return;
    }
    const traces = [];
    view.series.forEach((s, i) => {
      const name = label(s.feature);
      const hover = s.hour.map((_, j) => esc(s.feature) + "<br>" + s.calls[j] + " calls, " + s.unpriced_calls[j] + " unpriced");
      traces.push({type: "scatter", mode: "lines+markers", name: name + " cost/request", x: s.hour,
                   y: s.cost_per_request.map(num), text: hover, line: {color: color(i)}});
      traces.push({type: "scatter", mode: "lines+markers", name: name + " revenue/request", x: s.hour,
                   y: s.revenue_per_request.map(num), text: hover, line: {color: color(i), dash: "dot"}});
    });
    plot("chart-realtime", traces, {yaxis: {title: {text: "USD per request"}}, xaxis: {type: "date"}});
  }

  function renderDaily(view) {
    const excepted = view.series.filter((s) => s.exception);
    note("chart-daily", excepted.map((s) => short(s.feature) + ": " + s.exception).join("; "));
    if (!view.series.length) { nothing("chart-daily", "No calls in this period."); return; }
    const traces = view.series.map((s, i) => ({
      type: "scatter", mode: "lines+markers", name: label(s.feature), x: s.day, y: s.margin_pct.map(num),
      hovertext: s.day.map((day, j) => esc(s.feature) + "<br>" + day + ": margin " + pct(s.margin_pct[j]) + ", " +
                           usd(s.margin_usd[j]) + "<br>zone " + (s.zone[j] || "none (no revenue)") + "; floor " +
                           pct(s.floor_pct) + ", yellow band " + Number(s.band_pts) + " pts (" + esc(s.floor_source) + ")"),
      hoverinfo: "text", line: {color: color(i)},
      marker: {size: 10, line: {width: 1, color: "#333"}, color: s.zone.map((z) => z ? ZONE_COLORS[z] : ZONE_COLORS.none)},
    }));
    plot("chart-daily", traces, {yaxis: {title: {text: "margin %"}}, xaxis: {type: "date"}});
  }

  function renderWeekly(view) {
    for (const level of ["tier", "cohort"]) {
      const id = "chart-weekly-" + level;
      const series = view[level].series;
      if (!series.length) { nothing(id, "No calls in this period."); continue; }
      const traces = [];
      series.forEach((s, i) => {
        traces.push({type: "scatter", mode: "lines+markers", name: label(s.key) + " weekly", x: s.week,
                     y: s.margin_usd.map(num), text: s.margin_pct.map((p) => esc(s.key) + "<br>margin " + pct(p)),
                     line: {color: color(i)}});
        traces.push({type: "scatter", mode: "lines", name: label(s.key) + " 4-week avg", x: s.week,
                     y: s.margin_4w_avg_usd.map(num), text: s.margin_4w_pct.map((p) => esc(s.key) + "<br>4 weeks pooled " + pct(p)),
                     line: {color: color(i), dash: "dash"}});
      });
      plot(id, traces, {yaxis: {title: {text: "margin USD"}}, xaxis: {type: "date"}});
    }
  }

  function renderMonthly(view) {
    const rows = view.rows;
    if (!rows.length) { nothing("chart-monthly", "No calls in this period."); slot("table-monthly"); return; }
    const months = [...new Set(rows.map((r) => r.month))];
    const traces = [];
    months.forEach((month, i) => {
      const mine = rows.filter((r) => r.month === month);
      const x = mine.map((r) => label(r.feature));
      const name = month.slice(0, 7);
      traces.push({type: "bar", name: name + " margin $", x, y: mine.map((r) => num(r.margin_usd)), marker: {color: color(i)},
                   offsetgroup: name, yaxis: "y"});
      traces.push({type: "scatter", mode: "markers", name: name + " margin %", x, y: mine.map((r) => num(r.margin_pct)),
                   marker: {color: color(i), symbol: "diamond", size: 10}, yaxis: "y2"});
      traces.push({type: "bar", name: name + " calls", x, y: mine.map((r) => r.calls), marker: {color: color(i), opacity: 0.5},
                   offsetgroup: name, xaxis: "x2", yaxis: "y3", showlegend: false});
    });
    plot("chart-monthly", traces, {
      height: 420, barmode: "group",
      yaxis: {title: {text: "margin USD"}, domain: [0.4, 1]}, xaxis: {anchor: "y", type: "category"},
      yaxis2: {title: {text: "margin %"}, overlaying: "y", side: "right"},
      xaxis2: {anchor: "y3", matches: "x", type: "category"}, yaxis3: {title: {text: "calls"}, domain: [0, 0.28]},
    });
    table("table-monthly", ["feature", "month", "calls", "unpriced", "revenue", "cost", "margin $", "margin %"],
      rows.map((r) => [r.feature || "(none)", r.month.slice(0, 7), r.calls, r.unpriced_calls, usd(r.revenue_usd),
                       usd(r.cost_usd), usd(r.margin_usd), pct(r.margin_pct)]), 1);
  }

  function renderCustomers(view) {
    const points = view.points;
    const shown = points.length + view.without_revenue.length;
    note("chart-customers", view.customers_total > shown
      ? "The " + shown + " customers with the most revenue of " + view.customers_total + " are shown." : "");
    if (!points.length) {
      nothing("chart-customers", "No customer with revenue in this period" + (view.without_revenue.length ? " (those with cost only are listed below)." : "."));
    } else {
      const trace = {type: "scatter", mode: "markers+text", name: "customers", x: points.map((p) => num(p.revenue_usd)),
                     y: points.map((p) => num(p.margin_pct)), text: points.map((p) => label(p.customer)),
                     textposition: "top center", marker: {size: 10, color: "#1f77b4"},
                     hovertext: points.map((p) => esc(p.customer) + " (" + esc(p.tier) + ")<br>revenue " + usd(p.revenue_usd) +
                                                  "<br>margin " + usd(p.margin_usd) + ", " + pct(p.margin_pct)),
                     hoverinfo: "text"};
      const layout = {xaxis: {title: {text: "revenue USD"}}, yaxis: {title: {text: "margin %"}}, shapes: [], annotations: []};
      const q = view.quadrant;
      if (q) {
        layout.shapes.push({type: "rect", xref: "x", yref: "y", x0: num(q.revenue_usd), x1: Math.max(...trace.x) * 1.05 + 1e-9,
                            y0: Math.min(...trace.y, num(q.margin_pct)) - 5, y1: num(q.margin_pct),
                            fillcolor: "rgba(198,40,40,0.12)", line: {width: 0}, layer: "below"});
        layout.annotations.push({x: num(q.revenue_usd), y: num(q.margin_pct), xref: "x", yref: "y", xanchor: "left",
                                 yanchor: "top", showarrow: false, text: "high revenue, low margin"});
      }
      plot("chart-customers", [trace], layout);
    }
    table("table-customers", ["customer without revenue", "tier", "calls", "cost"],
      view.without_revenue.map((p) => [p.customer || "(none)", p.tier, p.calls, usd(p.cost_usd)]), 2);
  }

  const COMPONENTS = [["input", "avg_input_usd"], ["cache read", "avg_cache_read_usd"], ["cache write", "avg_cache_write_usd"],
                      ["output", "avg_output_usd"], ["other", "avg_other_usd"]];

  function renderCostMap(view) {
    const rows = view.rows;
    note("chart-cost-map", view.unfiltered.length
      ? "Per feature over every " + view.unfiltered.join(" and ") + ": the cost rollup has no " + view.unfiltered.join(" or ") + "." : "");
    if (view.units.length) {
      table("table-unit-costs", ["unit kind", "feature", "units", "calls", "avg $ per unit", "P50", "P95", "max"],
        view.units.map((u) => [u.unit_kind, u.feature, u.units, u.calls, usd(u.avg_cost_usd), usd(u.p50_cost_usd),
                               usd(u.p95_cost_usd), usd(u.max_cost_usd)]), 2);
    } else {
      nothing("table-unit-costs", "No units of work in this period: otel_margin.unit(kind) groups the calls of one " +
              "priced thing (a ticket, a document); the per-request map above covers every call.");
    }
    if (!rows.length) { nothing("chart-cost-map", "No calls in this period."); return; }
    if (!rows.some((r) => r.priced_calls > 0)) {
      nothing("chart-cost-map", "No priced calls in this period: " + rows.reduce((n, r) => n + r.unpriced_calls, 0) +
              " unpriced calls have no cost to map. Add their models' prices to the policy file.");
      return;
    }
    const x = rows.map((r) => label(r.feature));
    const traces = COMPONENTS.map(([name, key], i) => ({
      type: "bar", name: "avg " + name, x, y: rows.map((r) => num(r[key])), marker: {color: color(i)},
      hovertext: rows.map((r) => esc(r.feature) + "<br>avg " + name + " " + usd(r[key]) + "<br>" + r.priced_calls +
                          " priced, " + r.unpriced_calls + " unpriced"),
      hoverinfo: "text",
    }));
    traces.push({type: "scatter", mode: "markers", name: "P95 per request", x, y: rows.map((r) => num(r.p95_cost_usd)),
                 marker: {symbol: "line-ew-open", size: 24, color: "#000"}});
    plot("chart-cost-map", traces, {barmode: "stack", yaxis: {title: {text: "USD per priced request"}}, xaxis: {type: "category"}});
  }

  function renderWaterfall(view) {
    if (view.missing) { nothing("chart-waterfall", view.missing); return; }
    const steps = view.steps.filter((s) => num(s.amount_usd) !== 0);
    if (!steps.length) { nothing("chart-waterfall", "No revenue and no cost in this period."); return; }
    plot("chart-waterfall", [{
      type: "waterfall", name: "margin", orientation: "v",
      x: steps.map((s) => s.name).concat(["margin"]),
      y: steps.map((s) => num(s.amount_usd)).concat([num(view.margin_usd)]),
      measure: steps.map(() => "relative").concat(["total"]),
      text: steps.map((s) => usd(s.amount_usd)).concat([usd(view.margin_usd)]), textposition: "outside",
    }], {yaxis: {title: {text: "USD"}}, showlegend: false});
  }

  function renderGuardrails(view) {
    const rows = view.rows;
    if (!rows.length) {
      nothing("chart-guardrails", "No guardrail has reported yet in this period: the cache, routing and limits report here once they are configured (docs/plugins.md).");
      slot("table-guardrails");
      return;
    }
    const x = rows.map((r) => label(r.feature));
    plot("chart-guardrails", [
      {type: "bar", name: "cache: $ avoided net of its cost", x, y: rows.map((r) => num(r.cache_net_saved_usd))},
      {type: "bar", name: "routing: $ saved", x, y: rows.map((r) => num(r.route_saved_usd))},
    ], {barmode: "group", yaxis: {title: {text: "USD"}}, xaxis: {type: "category"}});
    table("table-guardrails", ["feature", "cache lookups", "hit rate", "cache $ avoided", "cache's own cost",
                               "routed", "routing share", "routing $ saved", "capped", "blocked", "hint"],
      rows.map((r) => [r.feature, r.cache_lookups, r.hit_rate === null ? "-" : share(r.hit_rate), usd(r.cache_saved_usd),
                       usd(r.cache_cost_usd), r.routed_calls, share(r.calls ? r.routed_calls / r.calls : null),
                       usd(r.route_saved_usd), r.capped_calls, r.blocked_calls, r.cache_hint]), 1);
  }

  function renderAlerts(view) {
    note("table-alerts", view.unfiltered && view.unfiltered.length ? "Alerts have no tier: every tier's are listed." : "");
    if (view.missing) { nothing("table-alerts", view.missing); return; }
    if (!view.rows.length) { nothing("table-alerts", "No alert fired in this period."); return; }
    table("table-alerts", ["rule", "feature", "customer", "fired", "severity", "value", "threshold", "driver", "status", "sent"],
      view.rows.map((r) => [r.rule, r.feature || "-", r.customer || "-", r.fired_at.slice(0, 16).replace("T", " "), r.severity,
                            Number(r.value).toPrecision(4), Number(r.threshold).toPrecision(4), r.driver || "-", r.status,
                            r.delivered_to + " of " + r.due_to]), 3);
  }

  // --- filters --------------------------------------------------------------------------------

  function renderFilters(doc) {
    const f = doc.filters;
    const period = document.getElementById("filter-days");
    const days = PERIODS.includes(f.days) ? PERIODS : PERIODS.concat([f.days]).sort((a, b) => a - b);
    period.replaceChildren(...days.map((d) => el("option", {value: String(d)}, d === 1 ? "today" : "last " + d + " days")));
    period.value = String(f.days);
    for (const name of ["feature", "tier"]) {
      const select = document.getElementById("filter-" + name);
      const values = doc.options[name].includes(f[name]) || !f[name] ? doc.options[name] : doc.options[name].concat([f[name]]);
      select.replaceChildren(el("option", {value: ""}, "all"), ...values.map((v) => el("option", {value: v}, short(v))));
      select.value = f[name];
    }
    const customer = document.getElementById("filter-customer");
    customer.value = f.customer;
    document.getElementById("customers").replaceChildren(...doc.options.customer.map((v) => el("option", {value: v})));
    for (const node of document.querySelectorAll("#filters select, #filters input")) node.disabled = !live;
    document.getElementById("filters-mode").textContent = live ? "" : "Snapshot: filters fixed when it was written.";
  }

  function currentFilters() {
    const params = new URLSearchParams();
    params.set("days", document.getElementById("filter-days").value);
    for (const name of ["feature", "tier", "customer"]) {
      const value = document.getElementById("filter-" + name).value;
      if (value) params.set(name, value);
    }
    return params;
  }

  // --- live -----------------------------------------------------------------------------------

  // A poll waits for the answer before it asks again; a new filter cancels the old question.
  let pending = null;
  async function refresh(params, poll) {
    if (pending && poll) return;
    if (pending) pending.abort();
    const mine = pending = new AbortController();
    const status = document.getElementById("status");
    try {
      const response = await fetch("data.json?" + params.toString(), {signal: mine.signal, cache: "no-store"});
      const doc = await response.json();
      if (!response.ok) { status.textContent = doc.error || ("HTTP " + response.status); return; }
      status.textContent = "";
      render(doc);
    } catch (error) {
      if (error.name !== "AbortError") status.textContent = "Could not load the data: " + error.message;
    } finally {
      if (pending === mine) pending = null;
    }
  }

  document.getElementById("filters").addEventListener("submit", (event) => event.preventDefault());
  if (live) {
    let params = new URLSearchParams(window.location.search);
    document.getElementById("filters").addEventListener("change", () => {
      params = currentFilters();
      history.replaceState(null, "", "?" + params.toString());
      refresh(params);
    });
    refresh(params);
    setInterval(() => refresh(params, true), Number(body.dataset.refresh) * 1000);
  } else {
    render(JSON.parse(embedded.textContent));
  }
})();
