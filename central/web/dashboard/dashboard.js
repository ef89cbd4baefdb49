// Tillpoint head-office dashboard. No libraries: the page must work with no internet.
//
// Safety rules this file keeps (the page's CSP enforces the first with Trusted Types):
// - data goes into the page only as text (textContent, createTextNode, attribute values),
//   never as HTML;
// - the staff token lives in sessionStorage and leaves only as an Authorization header to
//   this central's own /api/ (never in a URL, never in a cookie).
// Money is in kopecks and shares in basis points, integers from the API; they are
// formatted with integer arithmetic, never through floats.
"use strict";

(() => {
  const TOKEN_KEY = "tillpoint.staff-token";
  const DAY_BUCKETS = 62; // more days than this: ask for months
  const MONTH_BUCKETS = 120;
  const PARALLEL = 4; // requests at once: the central serves tills first
  const $ = (id) => document.getElementById(id);
  let role = "";
  let generation = 0; // a newer "Show" wins over answers still arriving for an older one

  // ---- elements, as text only ----

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    return fill(node, attrs, children);
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    return fill(node, attrs, children);
  }

  function fill(node, attrs, children) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function show(node, message) {
    node.textContent = message;
    node.hidden = !message;
  }

  // ---- numbers (integers in, text out) ----

  function grouped(n) {
    const digits = String(Math.abs(n));
    const parts = [];
    for (let end = digits.length; end > 0; end -= 3) {
      parts.unshift(digits.slice(Math.max(0, end - 3), end));
    }
    return (n < 0 ? "−" : "") + parts.join(" ");
  }

  function fixed(n, scale, places) {
    // n / scale shown with `places` digits after the point, cut (not rounded) as the API's
    // integer division cuts.
    const whole = Math.trunc(Math.abs(n) / scale);
    const rest = Math.abs(n) % scale;
    const frac = String(Math.trunc(rest * 10 ** places / scale)).padStart(places, "0");
    return (n < 0 ? "−" : "") + grouped(whole) + "." + frac;
  }

  const FORMATS = {
    money: (k) => fixed(k, 100, 2) + " ₽",
    bp: (b) => fixed(b, 100, 2) + " %",
    count: (n) => grouped(n),
    points: (n) => grouped(n) + " pts",
    milli: (m) => fixed(m, 1000, 2),
  };

  function format(kind, value) {
    return value === null || value === undefined ? "—" : FORMATS[kind](value);
  }

  // ---- the API ----

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, { query, body, token } = {}) {
    const url = new URL(path, window.location.origin);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
    }
    const headers = {
      Accept: "application/json",
      Authorization: "Bearer " + (token || sessionStorage.getItem(TOKEN_KEY) || ""),
    };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", redirect: "error",
    });
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
    if (!resp.ok) {
      const said = data && typeof data.error === "string" ? data.error : resp.statusText;
      if (resp.status === 401 && !token) signedOut("The central refused your token"
        + " (expired or revoked): sign in again.");
      throw new ApiError(resp.status, said);
    }
    return data;
  }

  async function inTurn(items, work) {
    // `work` on every item, PARALLEL at a time; results in the items' order.
    const out = new Array(items.length);
    let next = 0;
    async function worker() {
      while (next < items.length) {
        const i = next++;
        out[i] = await work(items[i], i);
      }
    }
    await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
    return out;
  }

  function refusal(section, err) {
    // A section the role may not read (403), or that failed: said in the section itself.
    const note = section.querySelector(".denied");
    if (err.status === 403) {
      show(note, `Your role (${role}) may not read this: ${err.message}`);
    } else {
      show(note, `Could not load this (${err.status || "network"}): ${err.message}`);
    }
    section.dataset.loaded = "error";
  }

  // ---- sign-in ----

  function signedOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("board").hidden = true;
    $("who").hidden = true;
    $("sign-in").hidden = false;
    show($("sign-in-error"), message || "");
    document.body.dataset.state = "signed-out";
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    input.value = "";
    if (!token) {
      show($("sign-in-error"), "Give your staff token.");
      return;
    }
    try {
      const me = await api("GET", "/api/v1/dashboard", { token });
      sessionStorage.setItem(TOKEN_KEY, token);
      start(me);
    } catch (err) {
      if (err.status === 401) {
        show($("sign-in-error"), "That token was refused: wrong, expired or revoked.");
      } else if (err.status === 429) {
        show($("sign-in-error"), "Too many failed sign-ins from here; try again later.");
      } else {
        show($("sign-in-error"), `Sign-in failed: ${err.message}`);
      }
    }
  }

  function start(me) {
    role = me.account.role;
    $("who-name").textContent = me.account.name || me.account.id;
    $("who-role").textContent = role;
    $("who").hidden = false;
    $("sign-in").hidden = true;
    show($("sign-in-error"), "");
    $("board").hidden = false;
    for (const section of document.querySelectorAll("[data-section]")) {
      section.hidden = !me.sections[section.dataset.section];
    }
    document.body.dataset.state = "signed-in";
    if (me.sections.kpis) loadKpis();
    if (me.sections.campaigns) loadCampaigns(false);
    if (me.sections.alerts) loadAlerts(false);
    if (me.sections.fraud_hits) loadFraud(false);
  }

  // ---- periods ----

  function isoDay(d) {
    return d.toISOString().slice(0, 10);
  }

  function buckets(from, to, by) {
    // The period cut into days or calendar months (clipped to the period).
    const out = [];
    const end = new Date(to + "T00:00:00Z");
    let d = new Date(from + "T00:00:00Z");
    if (by === "day") {
      for (; d <= end; d.setUTCDate(d.getUTCDate() + 1)) {
        const day = isoDay(d);
        out.push({ label: day, from: day, to: day });
        if (out.length > DAY_BUCKETS) return null;
      }
      return out;
    }
    while (d <= end) {
      const last = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0));
      const stop = last < end ? last : end;
      out.push({ label: isoDay(d).slice(0, 7), from: isoDay(d), to: isoDay(stop) });
      if (out.length > MONTH_BUCKETS) return null;
      d = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1));
    }
    return out;
  }

  // ---- KPIs ----

  function get(obj, path) {
    return path.split(".").reduce((o, k) => (o === null || o === undefined ? o : o[k]), obj);
  }

  function figure(report, path, kind) {
    return el("span", { class: "value", "data-figure": path }, format(kind, get(report, path)));
  }

  function card(name, title, report, rows, definition) {
    return el("article", { class: "card", "data-card": name },
      el("h4", {}, title),
      el("dl", {}, ...rows.flatMap(([label, path, kind]) => [
        el("dt", {}, label), el("dd", {}, figure(report, path, kind))])),
      el("p", { class: "definition" }, definition));
  }

  function renderCards(r) {
    const cards = $("kpi-cards");
    clear(cards);
    cards.append(
      card("participation", "Participation", r, [
        ["of receipts", "participation.receipts_bp", "bp"],
        ["of revenue", "participation.revenue_bp", "bp"],
      ], r.participation.definition),
      card("average-receipt", "Average receipt", r, [
        ["members", "average_receipt.members_kopecks", "money"],
        ["non-members", "average_receipt.others_kopecks", "money"],
      ], r.average_receipt.definition),
      card("points", "Points on receipts", r, [
        ["issued (earned)", "points_flow.earned", "points"],
        ["redeemed", "points_flow.redeemed", "points"],
        ["clawed back", "points_flow.clawback", "points"],
        ["refunded", "points_flow.refund", "points"],
      ], r.points_flow.definition),
      card("expired", "Points expired", r, [
        ["expired", "points_expired.points", "points"],
      ], r.points_expired.definition),
      card("members", "Members", r, [
        ["buying", "members.buying", "count"],
        [`active (${r.members.active_days} days)`, "members.active", "count"],
      ], r.members.definition),
      card("frequency", "Frequency", r, [
        ["receipts per member", "frequency.receipts_per_member_milli", "milli"],
      ], r.frequency.definition),
      card("churn", "Churn", r, [
        ["churn", "churn.churn_bp", "bp"],
        ["churned", "churn.churned", "count"],
        ["bought the period before", "churn.previous_buying", "count"],
      ], r.churn.definition),
      card("ltv", "Lifetime value", r, [
        ["per member", "ltv.per_member_kopecks", "money"],
        ["members", "ltv.members", "count"],
      ], r.ltv.definition),
      card("liability", "Liability", r, [
        ["in money", "liability.kopecks", "money"],
        ["points outstanding", "liability.outstanding", "points"],
        ["breakage", "liability.breakage_bp", "bp"],
      ], r.liability.definition),
    );
  }

  function renderVersus(r) {
    const body = $("versus").tBodies[0];
    clear(body);
    const rows = [
      ["sales receipts", "receipts.members.sales", "receipts.others.sales", "count"],
      ["revenue", "receipts.members.revenue", "receipts.others.revenue", "money"],
      ["average receipt", "average_receipt.members_kopecks", "average_receipt.others_kopecks",
        "money"],
      ["returns", "receipts.members.returns", "receipts.others.returns", "count"],
      ["returned", "receipts.members.returned", "receipts.others.returned", "money"],
    ];
    for (const [label, members, others, kind] of rows) {
      body.append(el("tr", {}, el("th", {}, label),
        el("td", {}, figure(r, members, kind)), el("td", {}, figure(r, others, kind))));
    }
    $("versus-definition").textContent = r.receipts.definition + ". "
      + r.average_receipt.definition + ".";
  }

  function renderCohorts(r) {
    const body = $("cohorts").tBodies[0];
    clear(body);
    const cohorts = Object.entries(r.cohorts.by_cohort);
    for (const [cohort, c] of cohorts) {
      const months = Object.entries(c.months).map(([month, m]) =>
        el("span", { class: "cohort-month", "data-month": month },
          `${month}: ${grouped(m.buying)} (${format("bp", m.retention_bp)})`));
      body.append(el("tr", { "data-cohort": cohort }, el("th", {}, cohort),
        el("td", { "data-field": "size" }, grouped(c.size)),
        el("td", { "data-field": "months" }, ...months)));
    }
    if (!cohorts.length) {
      body.append(el("tr", { class: "empty" },
        el("td", { colspan: 3 }, "No member made a first purchase in the period.")));
    }
    $("cohorts-definition").textContent = r.cohorts.definition;
  }

  // ---- charts: our own SVG ----

  const W = 560, H = 220, LEFT = 72, RIGHT = 12, TOP = 12, BOTTOM = 36;

  function roundUp(v) {
    // The axis's top: the value rounded up to 1, 2 or 5 times a power of ten.
    const p = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 5, 10].map((m) => m * p).find((t) => t >= v);
  }

  function frame(name, title, definition, series, labels, kind) {
    const values = series.flatMap((s) => s.values).filter((v) => v !== null);
    const top = roundUp(Math.max(1, ...values));
    const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
    const y = (v) => TOP + plotH - (v / top) * plotH;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title,
      class: "chart-svg" });
    root.append(svg("title", {}, title));
    for (const v of [0, top / 2, top]) {
      const tick = kind === "count" || kind === "points" ? Math.round(v) : Math.trunc(v);
      root.append(
        svg("line", { class: "grid", x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v) }),
        svg("text", { class: "tick", x: LEFT - 6, y: y(v) + 4, "text-anchor": "end" },
          format(kind, tick)));
    }
    const step = plotW / labels.length;
    const every = Math.ceil(labels.length / 8); // at most about eight labels fit
    labels.forEach((label, i) => {
      if (i % every === 0) {
        root.append(svg("text", { class: "tick", x: LEFT + step * (i + 0.5), y: H - BOTTOM + 16,
          "text-anchor": "middle" }, label.length === 10 ? label.slice(5) : label));
      }
    });
    const legend = el("ul", { class: "legend" }, ...series.map((s, i) =>
      el("li", { class: `s${i}` }, s.name)));
    const fig = el("figure", { class: "chart", "data-chart": name },
      el("figcaption", {}, title), root, legend, el("p", { class: "definition" }, definition));
    return { fig, root, y, step };
  }

  function barChart(name, title, definition, labels, series, kind) {
    const { fig, root, y, step } = frame(name, title, definition, series, labels, kind);
    const width = (step * 0.8) / series.length;
    series.forEach((s, si) => {
      const g = svg("g", { class: `series s${si}`, "data-series": s.name });
      s.values.forEach((v, i) => {
        const value = v || 0;
        const x = LEFT + step * i + step * 0.1 + width * si;
        g.append(svg("rect", { class: "bar", x, y: y(value), width,
          height: y(0) - y(value), "data-label": labels[i], "data-value": value },
        svg("title", {}, `${labels[i]} · ${s.name}: ${format(kind, value)}`)));
      });
      root.append(g);
    });
    return fig;
  }

  function lineChart(name, title, definition, labels, series, kind) {
    // A point for each bucket with a value; a bucket without one (no receipts: no share,
    // no average) breaks the line instead of drawing a made-up zero.
    const { fig, root, y, step } = frame(name, title, definition, series, labels, kind);
    series.forEach((s, si) => {
      const g = svg("g", { class: `series s${si}`, "data-series": s.name });
      let d = "", pen = "M";
      s.values.forEach((v, i) => {
        if (v === null) {
          pen = "M";
          return;
        }
        const x = LEFT + step * (i + 0.5);
        d += `${pen}${x.toFixed(1)} ${y(v).toFixed(1)} `;
        pen = "L";
        g.append(svg("circle", { class: "point", cx: x, cy: y(v), r: 3.5,
          "data-label": labels[i], "data-value": v },
        svg("title", {}, `${labels[i]} · ${s.name}: ${format(kind, v)}`)));
      });
      if (d) g.prepend(svg("path", { class: "line", d: d.trim() }));
      root.append(g);
    });
    return fig;
  }

  function renderCharts(reports, parts) {
    const labels = parts.map((p) => p.label);
    const pick = (path) => reports.map((r) => get(r, path));
    const r0 = reports[0];
    const charts = $("charts");
    clear(charts);
    charts.append(
      barChart("receipts", "Sales receipts", r0.receipts.definition, labels, [
        { name: "members", values: pick("receipts.members.sales") },
        { name: "non-members", values: pick("receipts.others.sales") },
      ], "count"),
      lineChart("participation", "Participation", r0.participation.definition, labels, [
        { name: "of receipts", values: pick("participation.receipts_bp") },
        { name: "of revenue", values: pick("participation.revenue_bp") },
      ], "bp"),
      lineChart("average-receipt", "Average receipt", r0.average_receipt.definition, labels, [
        { name: "members", values: pick("average_receipt.members_kopecks") },
        { name: "non-members", values: pick("average_receipt.others_kopecks") },
      ], "money"),
      barChart("points", "Points issued and redeemed", r0.points_flow.definition, labels, [
        { name: "issued", values: pick("points_flow.earned") },
        { name: "redeemed", values: pick("points_flow.redeemed") },
      ], "points"),
    );
  }

  async function loadKpis(event) {
    if (event) event.preventDefault();
    const section = $("kpis");
    const mine = ++generation;
    const from = $("from").value, to = $("to").value, by = $("by").value;
    show($("period-error"), "");
    if (!from || !to) {
      show($("period-error"), "Give the period: 'from' and 'to'.");
      return;
    }
    if (to < from) {
      show($("period-error"), "'to' is before 'from'.");
      return;
    }
    const parts = buckets(from, to, by);
    if (parts === null) {
      show($("period-error"), by === "day"
        ? `More than ${DAY_BUCKETS} days: show it by month.`
        : `More than ${MONTH_BUCKETS} months: choose a shorter period.`);
      return;
    }
    const where = { store: $("store").value.trim(), region: $("region").value.trim() };
    section.dataset.loaded = "loading";
    try {
      const whole = await api("GET", "/api/v1/kpis", { query: { from, to, ...where } });
      const reports = await inTurn(parts, (p) =>
        api("GET", "/api/v1/kpis", { query: { from: p.from, to: p.to, ...where } }));
      if (mine !== generation) return;
      $("kpi-period").textContent = `${from} to ${to}`
        + (where.store ? `, store ${where.store}` : "")
        + (where.region ? `, region ${where.region}` : "");
      renderCards(whole);
      renderVersus(whole);
      renderCohorts(whole);
      renderCharts(reports, parts);
      show(section.querySelector(".denied"), "");
      section.dataset.loaded = "true";
    } catch (err) {
      if (mine !== generation) return;
      if (err.status === 400) {
        show($("period-error"), err.message); // names the field, e.g. 'region'
        section.dataset.loaded = "error";
      } else {
        refusal(section, err);
      }
    }
  }

  // ---- campaigns ----

  let campaignCursor = null;

  async function loadCampaigns(more) {
    const section = $("campaigns");
    const body = $("campaign-table").tBodies[0];
    if (!more) {
      clear(body);
      campaignCursor = null;
    }
    section.dataset.loaded = "loading";
    try {
      const page = await api("GET", "/api/v1/campaigns",
        { query: { limit: 50, cursor: campaignCursor } });
      const figures = await inTurn(page.campaigns, (c) =>
        api("GET", `/api/v1/campaigns/${encodeURIComponent(c.id)}/figures`));
      page.campaigns.forEach((c, i) => body.append(campaignRow(c, figures[i])));
      campaignCursor = page.next_cursor;
      $("campaigns-more").hidden = !campaignCursor;
      show(section.querySelector(".denied"), "");
      section.dataset.loaded = "true";
    } catch (err) {
      refusal(section, err);
    }
  }

  function campaignRow(c, f) {
    const budget = f.budget;
    const left = budget && budget.total !== null
      ? `${grouped(budget.left)} of ${grouped(budget.total)} pts` : "no budget";
    return el("tr", { "data-campaign": c.id },
      el("td", {}, el("span", { class: "name" }, c.name || c.id),
        el("span", { class: "muted" }, ` ${c.id}`)),
      el("td", { "data-field": "status" }, c.state || c.status),
      el("td", { "data-field": "receipts" }, format("count", f.receipts)),
      el("td", { "data-field": "points" }, format("points", f.points)),
      el("td", { "data-field": "discount" }, format("money", f.discount)),
      el("td", { "data-field": "budget" }, left),
      el("td", { "data-field": "roi", class: "muted" }, "ROI: not available (no cost feed)"));
  }

  // ---- alerts and fraud hits: pages, newest first ----

  function pager(sectionId, tableId, moreId, path, key, row) {
    let before = null;
    return async function load(more) {
      const section = $(sectionId);
      const body = $(tableId).tBodies[0];
      if (!more) {
        clear(body);
        before = null;
      }
      section.dataset.loaded = "loading";
      try {
        const page = await api("GET", path, { query: { limit: 20, before } });
        for (const item of page[key]) body.append(row(item));
        before = page.next_before;
        $(moreId).hidden = before === null || before === undefined;
        if (!body.rows.length) {
          body.append(el("tr", { class: "empty" }, el("td", { colspan: 6 }, "None.")));
        }
        show(section.querySelector(".denied"), "");
        section.dataset.loaded = "true";
      } catch (err) {
        refusal(section, err);
      }
    };
  }

  const loadAlerts = pager("alerts", "alert-table", "alerts-more", "/api/v1/alerts", "alerts",
    (a) => el("tr", { "data-alert": a.id },
      el("td", {}, a.at), el("td", {}, a.kind), el("td", {}, a.severity),
      el("td", {}, a.till_id || ""), el("td", {}, a.message),
      el("td", {}, a.acked_at ? `${a.acked_at} by ${a.acked_by}` : "no")));

  const loadFraud = pager("fraud", "fraud-table", "fraud-more", "/api/v1/fraud-hits", "hits",
    (h) => el("tr", { "data-hit": h.id },
      el("td", {}, h.at), el("td", {}, h.rule), el("td", {}, h.subject),
      el("td", { class: "evidence" }, JSON.stringify(h.evidence).slice(0, 300)),
      el("td", {}, h.verdict || "not reviewed")));

  // ---- customer lookup ----

  async function lookup(event) {
    event.preventDefault();
    const card = $("lookup-card").value.replace(/\s+/g, "");
    const id = $("lookup-id").value.trim();
    const out = $("customer");
    out.hidden = true;
    clear(out);
    show($("lookup-error"), "");
    if (!card === !id) {
      show($("lookup-error"), "Give a card number or a customer id (one of them).");
      return;
    }
    try {
      // The card number goes in the body, never in a URL (logs keep URLs).
      const c = card
        ? await api("POST", "/api/v1/customers/lookup", { body: { card_number: card } })
        : await api("GET", `/api/v1/customers/${encodeURIComponent(id)}`);
      $("lookup-card").value = "";
      const rows = [
        ["id", c.id], ["name", c.name], ["tier", c.tier || "—"],
        ["segments", (c.segments || []).join(", ") || "—"],
        ["cards", (c.cards || []).join(", ") || "—"],
        ["points available", format("points", c.balance.available)],
        ["points pending", format("points", c.balance.pending)],
        ["points owed", format("points", c.balance.debt)],
        ["purchases", format("count", c.purchases)],
      ];
      for (const [k, v] of rows) out.append(el("dt", {}, k), el("dd", { "data-field": k }, v));
      out.hidden = false;
    } catch (err) {
      const said = err.status === 404 ? "No such customer."
        : err.status === 403 ? `Your role (${role}) may not look up customers.`
          : err.message;
      show($("lookup-error"), said);
    }
  }

  // ---- start ----

  function init() {
    const today = new Date();
    const twoWeeks = new Date(today.getTime() - 13 * 86400000);
    $("to").value = isoDay(new Date(Date.UTC(today.getFullYear(), today.getMonth(),
      today.getDate())));
    $("from").value = isoDay(new Date(Date.UTC(twoWeeks.getFullYear(), twoWeeks.getMonth(),
      twoWeeks.getDate())));
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => {
      // What the last account saw goes with it: the next one may hold another role.
      for (const id of ["kpi-cards", "charts", "customer"]) clear($(id));
      for (const t of document.querySelectorAll("#board tbody")) clear(t);
      generation++;
      signedOut("Signed out.");
    });
    $("period").addEventListener("submit", loadKpis);
    $("lookup").addEventListener("submit", lookup);
    $("campaigns-more").addEventListener("click", () => loadCampaigns(true));
    $("alerts-more").addEventListener("click", () => loadAlerts(true));
    $("fraud-more").addEventListener("click", () => loadFraud(true));
    if (!sessionStorage.getItem(TOKEN_KEY)) {
      signedOut("");
      return;
    }
    api("GET", "/api/v1/dashboard").then(start).catch((err) => {
      if (err.status !== 401) signedOut(`Sign-in failed: ${err.message}`);
    });
  }

  init();
})();
