// Central's monitoring page: every gate at a glance (live, by SSE), one gate in detail, alarms, search.
// Every visible word comes from the catalogues (SGI18N); times are shown as local times.
(function () {
  "use strict";
  const I = window.SGI18N;
  const { t } = I;
  const $ = (id) => document.getElementById(id);
  const state = { me: null, overview: null, offset: 0, gate: null, detail: null, alarms: [], counts: null,
                  filter: "active", search: null };

  // ------------------------------------------------------------ helpers

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function now() { return Date.now() / 1000 - state.offset; }  // central's clock, as far as we know it
  function when(epoch) {
    if (epoch === null || epoch === undefined) return "—";
    const today = new Date().toDateString() === new Date(epoch * 1000).toDateString();
    return I.time(epoch, !today);
  }
  function age(epoch) { return epoch ? I.duration(now() - epoch) : "—"; }
  // An element whose text is a duration since `epoch`, kept current by the one-second tick.
  function ageSpan(epoch, key) {
    return h("span", { class: "age", "data-since": epoch, "data-key": key || "" }, ageText(epoch, key));
  }
  function ageText(epoch, key) { return key ? t(key, { age: age(epoch) }) : age(epoch); }
  function list(values) { return (values || []).filter(Boolean).join(", ") || "—"; }
  function stateLabel(value) { return value ? (I.has("state." + value) ? t("state." + value) : value) : "—"; }

  function toast(text, level) {
    const node = h("div", { class: "toast " + (level || "ok") }, text);
    $("toasts").appendChild(node);
    window.setTimeout(() => node.remove(), 4000);
  }

  async function api(path, options) {
    const init = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    if (init.method && init.method !== "GET") init.headers["x-csrf-token"] = state.me ? state.me.csrf : "";
    const response = await fetch(path, init);
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("logged out");
    }
    if (!response.ok) {
      let detail = {};
      try { detail = (await response.json()).detail || {}; } catch (e) { /* not JSON */ }
      const key = "error." + (detail.code || "");
      throw new Error(I.has(key) ? t(key) : t("error.generic", { status: response.status }));
    }
    return response.json();
  }

  // ------------------------------------------------------------ gates at a glance

  function levelOf(gate) {
    if (gate.online.value === false) return "bad";
    if (gate.held.length || gate.cache.stale || gate.link.up === false || gate.devices.faulty) return "warn";
    return gate.online.value ? "ok" : "unknown";
  }

  function onlineLine(gate) {
    const value = gate.online.value;
    const key = value === true ? "gate.online" : value === false ? "gate.offline" : "gate.unknown";
    return h("span", { class: "badge " + (value === true ? "ok" : value === false ? "bad" : "unknown") }, t(key),
             gate.online.at ? " · " + t("gate.since", { time: when(gate.online.at) }) : "");
  }

  function linkText(gate) {
    if (gate.link.up === true) return t("gate.link_up", { time: when(gate.link.since) });
    if (gate.link.up === false) return t("gate.link_down", { time: when(gate.link.since) });
    return t("gate.link_unknown");
  }

  function cacheNode(gate) {
    const c = gate.cache;
    if (!c.refreshed_at) return h("span", { class: "muted" }, t("gate.cache_unknown"));
    const max = c.max_age_s ? I.duration(c.max_age_s) : "—";
    const span = h("span", { class: c.stale ? "bad-text" : "", "data-since": c.refreshed_at,
                             "data-key": c.stale ? "gate.cache_stale" : "gate.cache_value", "data-max": max });
    span.textContent = t(span.dataset.key, { age: age(c.refreshed_at), max });
    return span;
  }

  function fact(label, value) {
    return h("div", { class: "fact" }, h("dt", {}, label), h("dd", {}, value));
  }

  function heldLine(truck) {
    return h("li", { class: "held-truck" },
      h("span", { class: "chip " + truck.outcome }, t("outcome." + truck.outcome)), " ",
      h("strong", { class: "mono" }, list(truck.plates)), " · ", truck.lane, " · ",
      ageSpan(truck.since, "gate.waiting"),
      h("div", { class: "reasons mono" }, list(truck.reasons)));
  }

  function gateCard(gate) {
    const selected = state.gate === gate.gate;
    const lanes = h("ul", { class: "lane-chips", "aria-label": t("gate.lanes") },
      gate.lanes.map((lane) => h("li", { class: "lane-chip " + (lane.held ? "held" : lane.faulty ? "fault" :
                                                             (lane.state || "unknown").toLowerCase()) },
        h("span", { class: "mono" }, lane.lane), " ", stateLabel(lane.state))));
    const backlog = gate.backlog.value === null ? "—" : t("gate.backlog_value", { n: I.number(gate.backlog.value) });
    return h("article", { class: "gate-card", "data-level": levelOf(gate), "data-gate": gate.gate,
                          "aria-current": selected ? "true" : null },
      h("header", { class: "gate-head" },
        h("h3", {}, h("a", { href: "#gate=" + encodeURIComponent(gate.gate), class: "gate-link",
                             "aria-label": t("gate.open", { gate: gate.gate }) }, gate.gate)),
        onlineLine(gate)),
      h("dl", { class: "facts" },
        fact(t("gate.link"), h("span", { class: gate.link.up === false ? "bad-text" : "" }, linkText(gate))),
        fact(t("gate.last_contact"), gate.last_contact
          ? h("span", { class: gate.silent ? "bad-text" : "" }, when(gate.last_contact), " · ",
              ageSpan(gate.last_contact, gate.silent ? "gate.silent" : "")) : "—"),
        fact(t("gate.cache"), cacheNode(gate)),
        fact(t("gate.backlog"), h("span", { title: gate.backlog.at ? t("gate.backlog_at", { time: when(gate.backlog.at) })
                                                              : null }, backlog)),
        fact(t("gate.devices"), h("span", { class: gate.devices.faulty ? "bad-text" : "" },
                                  t("gate.devices_value", { ok: gate.devices.total - gate.devices.faulty,
                                                            total: gate.devices.total })))),
      lanes,
      h("div", { class: "held" }, h("h4", {}, t("gate.held"), " (", String(gate.held.length), ")"),
        gate.held.length ? h("ul", { class: "held-list" }, gate.held.map(heldLine))
                         : h("p", { class: "muted" }, t("gate.held_none"))));
  }

  function renderGates() {
    const root = $("gates");
    const data = state.overview;
    if (!data) return;
    // What needs a person first: offline gates, then gates with a held truck or a fault, then the rest, by name.
    const rank = { bad: 0, warn: 1, unknown: 2, ok: 3 };
    const gates = [...data.gates].sort((a, b) => (rank[levelOf(a)] - rank[levelOf(b)]) || a.gate.localeCompare(b.gate));
    root.replaceChildren(...(gates.length ? gates.map(gateCard)
                                               : [h("p", { class: "muted" }, t("gates.none"))]));
  }

  // ------------------------------------------------------------ one gate

  function table(caption, head, rows, empty) {
    if (!rows.length) return h("p", { class: "muted" }, empty || "—");
    return h("table", { class: "grid-table" },
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h("thead", {}, h("tr", {}, head.map((label) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) =>
        i === 0 ? h("th", { scope: "row" }, cell) : h("td", {}, cell))))));
  }

  function truckResult(truck) {
    const by = truck.released_by === "auto" ? t("released.auto")
      : truck.released_by ? t("released.by", { name: truck.released_by }) : "";
    const result = truck.result ? (I.has("result." + truck.result) ? t("result." + truck.result) : truck.result) : "—";
    return by ? `${result} (${by})` : result;
  }

  function outcomeChip(outcome) {
    return outcome ? h("span", { class: "chip " + outcome }, t("outcome." + outcome)) : "—";
  }

  function throughputChart(detail) {
    const series = [{ key: "release", label: t("outcome.release"), color: "#15803d" },
                    { key: "hold", label: t("outcome.hold"), color: "#d97706" },
                    { key: "refuse", label: t("outcome.refuse"), color: "#b91c1c" }];
    const rows = detail.throughput.map((b) => ({ label: I.time(b.hour).slice(0, 5), release: b.release,
                                                 hold: b.hold, refuse: b.refuse }));
    const totals = { release: 0, hold: 0, refuse: 0 };
    detail.throughput.forEach((b) => { for (const k in totals) totals[k] += b[k]; });
    const summary = t("detail.throughput_total", totals);
    const chart = window.SGChart.stackedBars(rows, series, { id: "tp-" + detail.gate, title: t("detail.throughput"),
                                                            description: summary, labelEvery: 3 });
    const legend = h("ul", { class: "legend", "aria-hidden": "true" },
      series.map((s) => h("li", {}, h("span", { class: "swatch", style: null, "data-color": s.key }), s.label)));
    const busy = detail.throughput.filter((b) => b.release + b.hold + b.refuse > 0);
    const data = h("details", { class: "chart-data" }, h("summary", {}, summary),
      table(t("detail.throughput"), [t("col.hour"), t("outcome.release"), t("outcome.hold"), t("outcome.refuse")],
            busy.map((b) => [when(b.hour), String(b.release), String(b.hold), String(b.refuse)])));
    return h("figure", { class: "chart-box" }, chart, legend, data);
  }

  function renderDetail() {
    const detail = state.detail;
    $("detail-close").classList.toggle("hidden", !state.gate);
    if (!state.gate || !detail) {
      $("detail-title").textContent = t("detail.pick");
      $("detail").replaceChildren();
      return;
    }
    $("detail-title").textContent = t("detail.title", { gate: detail.gate });
    const lanes = table(t("detail.lanes"), [t("col.lane"), t("col.state"), t("col.held"), t("col.reasons")],
      detail.lanes.map((lane) => [h("span", { class: "mono" }, lane.lane),
        h("span", { class: lane.faulty ? "bad-text" : "" }, stateLabel(lane.state)),
        lane.held ? h("span", {}, outcomeChip(lane.held.outcome), " ", h("span", { class: "mono" },
                                  list(lane.held.plates)), " · ", ageSpan(lane.held.since, "gate.waiting")) : "—",
        lane.held ? h("span", { class: "mono" }, list(lane.held.reasons)) : "—"]));
    const devices = table(t("detail.devices"), [t("col.device"), t("col.kind"), t("col.lane"), t("col.health"),
                                               t("col.last_error")],
      detail.device_list.map((d) => [h("span", { class: "mono" }, d.device_id), d.kind || "—", d.lane || "—",
        h("span", { class: "chip " + (d.connected ? "ok" : "fault") }, t(d.connected ? "device.ok" : "device.fault")),
        d.last_error || "—"]));
    const recent = table(t("detail.recent"), [t("col.time"), t("col.lane"), t("col.plate"), t("col.container"),
                                             t("col.outcome"), t("col.result"), t("col.declaration")],
      detail.recent.map((tr) => [when(tr.at), tr.lane || "—", h("span", { class: "mono" }, list(tr.plates)),
        h("span", { class: "mono" }, list(tr.containers)), outcomeChip(tr.outcome), truckResult(tr),
        h("span", { class: "mono" }, tr.declaration || "—")]), t("detail.recent_none"));
    $("detail").replaceChildren(
      h("div", { class: "detail-grid" },
        h("section", {}, h("h3", {}, t("detail.lanes")), lanes),
        h("section", {}, h("h3", {}, t("detail.throughput")), throughputChart(detail))),
      h("section", {}, h("h3", {}, t("detail.devices")), devices),
      h("section", {}, h("h3", {}, t("detail.recent")), recent));
  }

  let detailTimer = null;
  async function loadDetail() {
    if (!state.gate) { state.detail = null; renderDetail(); return; }
    try {
      state.detail = await api("/api/v1/monitor/gates/" + encodeURIComponent(state.gate));
    } catch (e) {
      state.detail = null;
      toast(e.message, "bad");
    }
    renderDetail();
  }
  function loadDetailSoon() {
    window.clearTimeout(detailTimer);
    detailTimer = window.setTimeout(loadDetail, 300);
  }

  function selectFromHash() {
    const match = /^#gate=([A-Z0-9_-]+)$/.exec(window.location.hash);
    state.gate = match ? match[1] : null;
    renderGates();
    loadDetail().then(() => { if (state.gate) $("detail-panel").focus(); });
  }

  // ------------------------------------------------------------ alarms

  function alarmItem(alarm) {
    const mayAck = state.me && state.me.may_ack;
    const where = [alarm.gate, alarm.lane].filter(Boolean).join(" · ");
    const buttons = [];
    if (mayAck && !alarm.cleared_at) {
      if (!alarm.acked_at) {
        buttons.push(h("button", { type: "button", class: "small", "data-action": "ack",
                                   "aria-label": t("alarm.ack") + ": " + alarm.code + " " + where,
                                   onclick: () => changeAlarm(alarm.id, "ack") }, t("alarm.ack")));
      }
      buttons.push(h("button", { type: "button", class: "small ghost", "data-action": "clear",
                                 "aria-label": t("alarm.clear") + ": " + alarm.code + " " + where,
                                 onclick: () => changeAlarm(alarm.id, "clear") }, t("alarm.clear")));
    }
    return h("li", { class: "alarm " + alarm.severity + (alarm.acked_at ? " acked" : "") + (alarm.cleared_at ? " cleared" : ""),
                     "data-alarm": alarm.id },
      h("div", { class: "alarm-head" },
        h("span", { class: "sev " + alarm.severity }, t("severity." + alarm.severity)),
        h("strong", { class: "mono" }, alarm.code),
        h("span", { class: "muted" }, where || t("source." + alarm.source))),
      h("div", { class: "alarm-msg" }, alarm.message || ""),
      h("div", { class: "alarm-meta muted" }, when(alarm.at), " · ", t("source." + alarm.source)),
      alarm.acked_at ? h("div", { class: "alarm-audit" }, t("alarm.acked_by", { name: alarm.acked_by,
                                                                              time: when(alarm.acked_at) })) : null,
      alarm.cleared_at ? h("div", { class: "alarm-audit" }, t("alarm.cleared_by", { name: alarm.cleared_by,
                                                                                  time: when(alarm.cleared_at) })) : null,
      buttons.length ? h("div", { class: "alarm-buttons" }, buttons) : null);
  }

  function renderAlarms() {
    $("alarms").replaceChildren(...(state.alarms.length ? state.alarms.map(alarmItem)
                                                        : [h("li", { class: "muted" }, t("alarm.none"))]));
    $("alarm-readonly").classList.toggle("hidden", !state.me || state.me.may_ack);
    renderCounts();
  }

  function renderCounts() {
    const c = state.counts;
    const item = $("st-alarms");
    if (!c) return;
    $("st-alarms-value").textContent = t("alarms.summary_value", { active: c.active, unacked: c.unacked });
    item.dataset.level = c.critical && c.unacked ? "bad" : c.active ? "warn" : "ok";
  }

  async function loadAlarms() {
    try {
      const data = await api("/api/v1/monitor/alarms?state=" + encodeURIComponent(state.filter));
      state.alarms = data.alarms;
      state.counts = data.counts;
    } catch (e) {
      toast(e.message, "bad");
    }
    renderAlarms();
  }

  async function changeAlarm(id, what) {
    try {
      await api(`/api/v1/monitor/alarms/${encodeURIComponent(id)}/${what}`, { method: "POST" });
      toast(t(what === "ack" ? "alarm.done_ack" : "alarm.done_clear"));
    } catch (e) {
      toast(e.message, "bad");
    }
    await loadAlarms();
    const next = $("alarms").querySelector("button");
    (next || $("alarms-panel")).focus();
  }

  // ------------------------------------------------------------ search

  function renderSearch() {
    const s = state.search;
    if (!s) { $("search-results").replaceChildren(); return; }
    if (s.short) { $("search-results").replaceChildren(h("p", { class: "muted" }, t("search.short"))); return; }
    const head = h("p", { class: "muted" }, s.trucks.length ? t("search.count", { n: s.trucks.length, q: s.query })
                                                            : t("search.none", { q: s.query }));
    // One card per truck: the side panel is too narrow for an eight-column table.
    const items = s.trucks.map((tr) => h("li", { class: "found-truck" },
      h("div", { class: "found-head" }, outcomeChip(tr.outcome), " ", h("strong", { class: "mono" }, list(tr.plates)),
        h("span", { class: "muted" }, " · ", tr.gate, " · ", tr.lane || "—", " · ", when(tr.at))),
      h("dl", { class: "facts" },
        fact(t("col.container"), h("span", { class: "mono" }, list(tr.containers))),
        fact(t("col.seal"), h("span", { class: "mono" }, list(tr.seals))),
        fact(t("col.declaration"), h("span", { class: "mono" }, tr.declaration || "—")),
        fact(t("col.result"), truckResult(tr)),
        tr.reasons && tr.reasons.length ? fact(t("col.reasons"), h("span", { class: "mono" }, list(tr.reasons))) : null)));
    $("search-results").replaceChildren(head, items.length ? h("ul", { class: "found-list" }, items) : "");
  }

  async function runSearch(query) {
    const folded = query.replace(/[^\p{L}\p{N}]/gu, "");
    if (folded.length < 3) { state.search = { short: true }; renderSearch(); return; }
    try {
      state.search = await api("/api/v1/monitor/search?q=" + encodeURIComponent(query));
    } catch (e) {
      toast(e.message, "bad");
    }
    renderSearch();
  }

  // ------------------------------------------------------------ live

  function setLive(up) {
    $("st-live").dataset.level = up ? "ok" : "warn";
    $("st-live-value").dataset.i18n = up ? "live.on" : "live.off";
    $("st-live-value").textContent = t(up ? "live.on" : "live.off");
  }

  function applyOverview(data) {
    state.offset = Date.now() / 1000 - data.now;
    state.overview = data;
    renderGates();
    if (state.gate) loadDetailSoon();
  }

  function connect() {
    const source = new EventSource("/api/v1/monitor/live");
    source.onopen = () => setLive(true);
    source.onerror = () => setLive(false);
    source.addEventListener("overview", (event) => applyOverview(JSON.parse(event.data)));
    source.addEventListener("alarms", (event) => {
      state.counts = JSON.parse(event.data);
      renderCounts();
      loadAlarms();
    });
    source.addEventListener("logout", () => { source.close(); window.location.assign("/login"); });
  }

  function tick() {
    $("clock").textContent = I.time(Date.now() / 1000, true);
    document.querySelectorAll("[data-since]").forEach((node) => {
      const since = Number(node.dataset.since);
      if (node.dataset.max !== undefined) {
        node.textContent = t(node.dataset.key, { age: age(since), max: node.dataset.max });
      } else {
        node.textContent = ageText(since, node.dataset.key);
      }
    });
  }

  // ------------------------------------------------------------ start

  async function start() {
    try {
      state.me = await api("/api/v1/session");
    } catch (e) {
      return;
    }
    $("user-name").textContent = state.me.name;
    $("user-role").textContent = t("role." + state.me.role);
    $("logout").addEventListener("click", async () => {
      try { await api("/api/v1/session", { method: "DELETE" }); } catch (e) { /* gone already */ }
      window.location.assign("/login");
    });
    $("alarm-filter").addEventListener("change", (event) => { state.filter = event.target.value; loadAlarms(); });
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      runSearch($("search-q").value.trim());
    });
    $("detail-close").addEventListener("click", () => { window.location.hash = ""; });
    window.addEventListener("hashchange", selectFromHash);
    I.onChange(() => {
      $("user-role").textContent = t("role." + state.me.role);
      renderGates(); renderDetail(); renderAlarms(); renderSearch(); tick();
    });
    applyOverview(await api("/api/v1/monitor/overview"));
    selectFromHash();
    loadAlarms();
    connect();
    tick();
    window.setInterval(tick, 1000);
  }

  start();
})();
