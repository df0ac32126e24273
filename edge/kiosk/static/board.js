// The lane board: live lane cards (Server-Sent Events), officer actions with a reason, per-lane
// history, the status strip, declaration look-up and (for admins) users. No words live here:
// every text comes from the message catalogue through SGI18N.t.
// On the wall: every lane fits the screen (held lanes first), a truck waiting for an officer turns
// the title and the icon, its card blinks once and stays marked, its waiting time counts up, and
// a sound plays if the sound is switched on. A display (wall board) log-in never acts.
(function () {
  "use strict";
  const I = window.SGI18N;
  const t = I.t;
  const RANK = { display: 0, officer: 1, supervisor: 2, admin: 3 };
  const SUPERVISOR_ACTIONS = ["acknowledge_alarm", "manual_open", "manual_close"];
  const S = {
    me: null, csrf: null, mayAct: false, idleTimeout: 1800,
    lanes: new Map(), history: new Map(), status: null, recent: [], users: [], lookup: null,
    es: null, live: false, dialog: null, lastTouch: 0, timers: new Map(),
    display: false, offset: 0, openDetails: new Set(), alerted: new Set(), sound: false, audio: null, waiting: 0,
  };

  // ---------------------------------------------------------------- helpers

  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function tr(prefix, code, fallback) {
    const key = prefix + "." + code;
    return I.has(key) ? t(key) : (fallback || code);
  }

  function debounce(key, fn, ms) {
    clearTimeout(S.timers.get(key));
    S.timers.set(key, setTimeout(fn, ms));
  }

  class ApiError extends Error {
    constructor(status, message, code) { super(message); this.status = status; this.code = code; }
  }

  async function api(path, options) {
    const { method = "GET", body, background = false } = options || {};
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (method !== "GET" && S.csrf) headers["x-csrf-token"] = S.csrf;
    if (background) headers["x-sg-background"] = "1";
    let response;
    try {
      response = await fetch(path, {
        method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, t("error.network"), "network");
    }
    let data = null;
    try { data = await response.json(); } catch (e) { /* empty or not JSON */ }
    if (response.status === 401) {
      window.location.assign("/login");
      throw new ApiError(401, t("error.login_required"), "login_required");
    }
    if (!response.ok) {
      const detail = data && data.detail;
      const code = detail && detail.code;
      let message;
      if (code && I.has("error." + code)) message = t("error." + code);
      else if (response.status === 422) message = t("error.invalid");
      else if (detail && detail.message) message = detail.message;
      else message = t("error.generic", { status: response.status });
      if (code === "lane_refused" && detail.message) message += " (" + detail.message + ")";
      throw new ApiError(response.status, message, code);
    }
    return data;
  }

  function toast(message, kind) {
    const box = document.getElementById("toasts");
    const item = h("div", { class: "toast " + (kind || "info"), text: message });
    box.append(item);
    setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
  }

  function atLeast(role) { return Boolean(S.me) && RANK[S.me.role] >= RANK[role]; }

  // ---------------------------------------------------------------- lanes

  function tone(lane) {
    const tx = lane.transaction;
    if (lane.state === "FAULT") return "fault";
    if (!tx) return "idle";
    if (tx.manual && !(tx.plates || []).length) return "manual";
    if (tx.barrier_open_commanded || lane.state === "PASSING") return "release";
    const last = (tx.officer_actions || []).slice(-1)[0];
    if (last && last.action === "refuse") return "refuse";
    if (last && last.action === "inspect") return "inspect";
    if (!tx.decision) return "collecting";
    return tx.decision.outcome;
  }

  function headline(lane, kind) {
    const tx = lane.transaction || {};
    const last = (tx.officer_actions || []).slice(-1)[0] || {};
    switch (kind) {
      case "fault":
        return lane.faults && lane.faults.journal ? [t("headline.journal_fault"), t("headline.journal_fault_sub")]
          : [t("headline.fault"), t("headline.fault_sub")];
      case "idle": return [t("headline.idle"), lane.boom_open ? t("headline.boom_open_idle") : ""];
      case "collecting": return [t("headline.collecting"), t("headline.collecting_sub")];
      case "release":
        return [lane.state === "PASSING" ? t("headline.passing") : t("headline.released"),
          tx.released_by === "auto" ? t("headline.released_auto")
            : t("headline.released_by", { officer: tx.released_by || "" })];
      case "hold": return [t("headline.hold"), t("headline.hold_sub")];
      case "refuse":
        return [t("headline.refused"), last.action === "refuse"
          ? t("headline.refused_by", { officer: last.officer }) : t("headline.refused_rules")];
      case "inspect": return [t("headline.inspect"), t("headline.inspect_by", { officer: last.officer })];
      case "manual": {
        const opener = (tx.officer_actions || []).find((a) => a.action === "manual_open") || last;
        return [t("headline.manual"), t("headline.manual_by", { officer: opener.officer || tx.released_by || "" })];
      }
      default: return [kind, ""];
    }
  }

  function imageSource(value) {
    if (typeof value !== "string") return null;
    return value.startsWith("data:image/") || (value.startsWith("/") && !value.startsWith("//")) ? value : null;
  }

  function detailsBox(raw) {
    // The raw text (a device's error, the rules' detail) is for the technician: behind a toggle.
    if (!raw) return null;
    const box = h("details", { class: "raw", open: S.openDetails.has(raw) },
      h("summary", { text: t("details") }), h("code", { text: raw }));
    box.addEventListener("toggle", () => {
      if (box.open) S.openDetails.add(raw); else S.openDetails.delete(raw);
      if (box.closest("#banners")) layoutLanes();  // the lanes below keep to the screen
    });
    return box;
  }

  function laneName(lane) { return I.name(lane.name, lane.name_vi); }

  function row(labelKey, ...content) {
    return h("div", { class: "row" }, h("div", { class: "row-label", text: t(labelKey) }),
      h("div", { class: "row-value" }, ...content));
  }

  function plateRow(tx) {
    if (!tx.plates.length) return row("truck.plate", h("span", { class: "missing", text: t("truck.not_read") }));
    return row("truck.plate", tx.plates.map((p) => {
      const src = imageSource(p.image || p.image_url || p.crop || p.crop_url);
      return h("span", { class: "plate-chip" },
        src ? h("img", { class: "plate-crop", src, alt: t("truck.plate_image") }) : null,
        h("span", { class: "plate", text: p.plate }),
        h("span", { class: "conf" + (p.confidence < 0.7 ? " bad" : ""),
          text: t("truck.confidence", { pct: Math.round(p.confidence * 100) }) }));
    }));
  }

  function containersRow(tx, declaration) {
    if (!tx.containers.length) return row("truck.containers", h("span", { class: "muted", text: "—" }));
    return row("truck.containers", tx.containers.map((c) => {
      const declared = declaration && declaration.containers
        ? declaration.containers.includes(c.number) : null;
      return h("span", { class: "item" },
        h("span", { class: "mono", text: c.number }),
        h("span", { class: "tag " + (c.check_digit_ok ? "ok" : "bad"),
          text: c.check_digit_ok ? t("container.check_ok") : t("container.check_bad") }),
        declared === null ? null : h("span", { class: "tag " + (declared ? "ok" : "bad"),
          text: declared ? t("truck.declared") : t("truck.not_declared") }));
    }));
  }

  function sealsRow(tx, declaration) {
    if (!tx.seals.length) return row("truck.seals", h("span", { class: "muted", text: "—" }));
    return row("truck.seals", tx.seals.map((s) => {
      const declared = declaration && declaration.seals ? declaration.seals.includes(s.seal_id) : null;
      return h("span", { class: "item" },
        h("span", { class: "mono", text: s.seal_id }),
        h("span", { class: "tag " + (s.status === "intact" ? "ok" : "bad"), text: tr("seal", s.status) }),
        declared === null ? null : h("span", { class: "tag " + (declared ? "ok" : "bad"),
          text: declared ? t("truck.declared") : t("truck.not_declared") }));
    }));
  }

  function weightRow(tx, declaration, policy) {
    const measured = tx.weight_kg;
    const declared = declaration && declaration.gross_weight_kg;
    if ((measured === null || measured === undefined) && !declared) return null;
    const parts = [h("span", { class: "mono", text: measured === null || measured === undefined
      ? t("weight.not_weighed") : t("weight.kg", { kg: I.number(measured) }) })];
    if (declared) parts.push(h("span", { class: "muted", text: t("weight.declared", { kg: I.number(declared) }) }));
    if (declared && measured !== null && measured !== undefined) {
      const deviation = (measured - declared) / declared * 100;
      const within = Math.abs(deviation) <= policy.weight_tolerance_pct;
      parts.push(h("span", { class: "tag " + (within ? "ok" : "bad"), text: t("weight.deviation", {
        pct: (deviation >= 0 ? "+" : "") + I.number(deviation, 1), tol: I.number(policy.weight_tolerance_pct, 1) }) }));
    }
    return row("truck.weight", parts);
  }

  function scanRow(tx) {
    // The worst verdict seen for the truck (late ones included), never a later "clear" over it.
    const scan = tx.scan || tx.scanner;
    if (!scan) return null;
    const verdict = scan.verdict || "pending";
    const src = imageSource(scan.image || scan.image_url || scan.image_ref);
    const conflicts = scan.conflicts || [];
    const decided = scan.decided_verdict && scan.decided_verdict !== verdict ? scan.decided_verdict : null;
    return row("truck.scanner",
      h("span", { class: "tag " + ({ clear: "ok", suspect: "bad" }[verdict] || "warn"), text: tr("scan", verdict) }),
      conflicts.length ? h("span", { class: "tag bad conflict", title: conflicts.join("\n"), text: t("scan.conflict") })
        : null,
      decided ? h("span", { class: "muted", text: t("scan.decided_as", { verdict: tr("scan", decided) }) }) : null,
      scan.scan_id ? h("span", { class: "muted mono", text: scan.scan_id }) : null,
      src ? h("img", { class: "scan-image", src, alt: t("truck.scanner") }) : null);
  }

  function lateRow(tx) {
    const late = tx.late_readings || [];
    if (!late.length) return null;
    return row("truck.late_readings", late.slice(-5).map((r) => h("span", { class: "item late" },
      h("span", { class: "mono", text: r.said }), h("span", { class: "muted", text: r.device }))));
  }

  function journalBox(lane) {
    // The journal cannot write: said on every lane card, whatever the lane is doing.
    const reason = lane.faults && lane.faults.journal;
    if (!reason) return null;
    return h("div", { class: "lane-alarm", role: "alert", id: "journal-" + lane.lane },
      h("div", { text: t("headline.journal_fault") + ": " + t("headline.journal_fault_sub") }), detailsBox(reason));
  }

  function alarmBox(lane) {
    const alarm = lane.alarm;
    if (!alarm) return null;
    return h("div", { class: "lane-alarm", role: "alert" },
      h("div", { text: t("alarm.latched", { text: alarmText(alarm.code), n: alarm.openings }) }),
      detailsBox(alarm.text),
      lane.closing_unreleased_boom ? h("div", { class: "lane-alarm-sub", text: t("alarm.closing") }) : null);
  }

  function alarmText(code) { return I.has("alarm." + code) ? t("alarm." + code) : t("alarm.unknown"); }

  function faultText(fault) { return t("fault." + (I.has("fault." + fault) ? fault : "unknown")); }

  // A consolidated load: what its declarations declare together (containers, seals, summed weight).
  function declaredTogether(lane) {
    const list = (lane.declarations || []).filter((d) => d && !d.missing);
    if (list.length <= 1) return lane.declaration;
    const weights = list.map((d) => d.gross_weight_kg);
    return { containers: list.flatMap((d) => d.containers || []), seals: list.flatMap((d) => d.seals || []),
      gross_weight_kg: weights.every((w) => w) ? weights.reduce((a, b) => a + b, 0) : null };
  }

  function declarationRow(tx, declaration) {
    const decided = tx.decision;
    if (!declaration) {
      return row("truck.declaration", h("span", { class: "muted",
        text: decided ? t("declaration.none") : t("declaration.pending") }));
    }
    if (declaration.missing) {
      return row("truck.declaration", h("span", { class: "mono", text: declaration.number }),
        h("span", { class: "tag warn", text: t("declaration.not_in_cache") }));
    }
    return row("truck.declaration",
      h("span", { class: "mono strong", text: declaration.number }),
      h("span", { class: "tag channel-" + declaration.channel, text: tr("channel", declaration.channel) }),
      h("span", { class: "tag " + (declaration.status === "cleared" ? "ok" : "bad"),
        text: tr("decl_status", declaration.status) }),
      h("span", { class: "muted", text: tr("kind", declaration.kind) + " · " +
        t("declaration.valid_until", { when: I.time(Date.parse(declaration.valid_until) / 1000, true) }) }));
  }

  function redecidedNote(tx) {
    // The rules decided again on a held truck (a late X-ray verdict, a seal): say so, and what it was before.
    const last = (tx.redecisions || []).slice(-1)[0];
    if (!last) return null;
    return h("div", { class: "redecided" },
      h("span", { text: t("reasons.redecided", { was: tr("outcome", last.previous.outcome) }) }),
      detailsBox(last.changed));
  }

  function claimsRow(lane) {
    // Declarations used once per gate: who holds the claim (another lane, a truck before a restart) and
    // what is known of its passage ("unknown" after a restart: a supervisor checks and releases it).
    const claims = lane.claims || [];
    if (!claims.length) return null;
    return row("truck.claims", ...claims.map((c) => h("div", { class: "claim claim-" + c.passage,
      text: t(c.this_truck ? "claim.this_truck" : "claim.other", { number: c.number, tx: c.transaction,
        lane: c.lane, passage: tr("claim_passage", c.passage) }) })));
  }

  function reasonsBox(tx) {
    const d = tx.decision;
    if (!d) return null;
    if (!d.findings.length) {
      return h("div", { class: "reasons ok" }, h("div", { class: "reasons-title", text: t("reasons.none") }),
        redecidedNote(tx));
    }
    return h("div", { class: "reasons " + d.outcome },
      h("div", { class: "reasons-title", text: t("reasons.title") }), redecidedNote(tx),
      h("ul", {}, d.findings.map((f) => h("li", {},
        f.declaration ? h("span", { class: "mono reason-declaration", text: f.declaration }) : null,
        h("span", { class: "reason-text", text: I.has("reason." + f.code) ? t("reason." + f.code) : t("alarm.unknown") }),
        detailsBox(f.detail)))));
  }

  function actionButtons(lane) {
    if (S.display) return null;  // a wall board shows, never acts
    const available = lane.available_actions || [];
    const buttons = [];
    const officerActions = ["release", "refuse", "inspect"];
    for (const action of officerActions) {
      if (!available.includes(action)) continue;
      const override = action === "release" && lane.refused;
      const permitted = S.mayAct && (!override || atLeast("supervisor"));
      buttons.push(h("button", {
        type: "button", class: "act act-" + action, disabled: !permitted,
        dataset: { lane: lane.lane, action },
        title: permitted ? null : t(override ? "error.override_requires_supervisor" : "error.wrong_gate"),
        text: override ? t("action.release_override") : t("action." + action),
        onclick: () => openAction(lane.lane, action),
      }));
    }
    if (atLeast("supervisor")) {
      for (const action of SUPERVISOR_ACTIONS) {
        if (!available.includes(action)) continue;
        buttons.push(h("button", {
          type: "button", class: "act act-manual", disabled: !S.mayAct, dataset: { lane: lane.lane, action },
          text: t("action." + action), onclick: () => openAction(lane.lane, action),
        }));
      }
    }
    if (!buttons.length) return null;
    return h("div", { class: "actions" }, buttons);
  }

  function laneFooter(lane) {
    const loops = Object.entries(lane.loops || {}).map(([loop, occupied]) =>
      h("span", { class: "loop " + (occupied ? "on" : "off"), title: t(occupied ? "loop.occupied" : "loop.clear") },
        tr("loop", loop)));
    const devices = (lane.devices || []).map((d) => h("span", {
      class: "device " + (d.connected ? "ok" : "bad"), dataset: { device: d.device_id },
    }, tr("device_kind", d.kind, d.kind) + (d.connected ? "" : " — " + faultText(d.fault)),
    d.connected ? null : detailsBox(d.last_error)));
    return h("div", { class: "lane-foot" },
      h("span", { class: "boom " + (lane.boom_open ? "open" : "closed"),
        text: lane.boom_open ? t("boom.open") : t("boom.closed") }),
      h("span", { class: "loops" }, h("span", { class: "muted", text: t("loop.title") }), loops),
      h("span", { class: "devices" }, devices));
  }

  function historyLine(item) {
    let text;
    let note = null;
    let raw = null;
    switch (item.kind) {
      case "officer_action":
        text = t("history.officer_action", { officer: item.officer, action: tr("action", item.action) });
        note = item.reason;
        break;
      case "decision":
        text = t(item.redecision ? "history.redecision" : "history.decision", { outcome: tr("outcome", item.outcome) });
        note = (item.reasons || []).map((code) => tr("reason", code)).join("; ") || null;
        raw = item.changed || null;  // what made the lane decide again (a late reading, a feed update)
        break;
      case "barrier_command":
        text = item.command === "open"
          ? t("history.barrier_open", { by: item.released_by === "auto" ? t("history.auto") : (item.released_by || "") })
          : t("history.barrier_close");
        break;
      case "tx_closed":
        text = t("history.tx_closed", { plates: (item.plates || []).join(", ") || "—", result: tr("result", item.result) });
        break;
      case "alarm":
        text = t("history.alarm", { text: alarmText(item.code) });
        raw = item.text;
        break;
      case "device_fault":
        text = t("history.device_fault", { device: item.device });
        raw = item.error;
        break;
      case "device_recovered":
        text = t("history.device_recovered", { device: item.device });
        break;
      case "unauthorised_passage":
        text = t("history.unauthorised_passage", { plates: (item.plates || []).join(", ") || "—" });
        break;
      case "claim_released":
        text = t("history.claim_released", { number: item.declaration, by: item.by });
        note = item.reason;
        break;
      case "late_reading":
        text = t("history.late_reading", { said: item.plate || item.seal_id || item.container
          || (item.verdict ? tr("scan", item.verdict) : "") || (item.gross_kg ? item.gross_kg + " kg" : "") || "—" });
        break;
      default:
        text = item.kind;
    }
    return h("li", { class: "hist hist-" + item.kind },
      h("span", { class: "hist-time", text: I.time(item.at) }),
      h("span", { class: "hist-text", text }),
      note ? h("span", { class: "hist-note", text: note }) : null,
      raw ? h("span", { class: "hist-note" }, detailsBox(raw)) : null);
  }

  function historyBox(laneId) {
    const items = S.history.get(laneId);
    const list = h("ul", { class: "history-list" },
      items && items.length ? items.map(historyLine) : h("li", { class: "muted", text: t("history.empty") }));
    return h("div", { class: "history" }, h("div", { class: "history-title", text: t("history.title") }), list);
  }

  function renderLane(lane) {
    const container = document.getElementById("lanes");
    let card = document.getElementById("lane-" + lane.lane);
    if (!card) {
      card = h("article", { id: "lane-" + lane.lane, class: "lane-card", dataset: { lane: lane.lane } });
      container.append(card);
    }
    const kind = tone(lane);
    const [title, sub] = headline(lane, kind);
    const tx = lane.transaction;
    const scrolled = card.querySelector(".card-body");
    const scrollTop = scrolled ? scrolled.scrollTop : 0;
    card.className = "lane-card tone-" + kind + (lane.needs_officer ? " needs-officer" : "")
      + (card.classList.contains("flash") ? " flash" : "");
    card.dataset.state = lane.state;
    card.dataset.tone = kind;
    card.dataset.waiting = lane.needs_officer ? "1" : "0";
    const body = [];
    if (tx) {
      const declared = declaredTogether(lane);
      const several = (lane.declarations || []).length > 1;
      body.push(plateRow(tx), containersRow(tx, declared), sealsRow(tx, declared),
        weightRow(tx, declared, lane.policy), scanRow(tx), lateRow(tx),
        ...(several ? lane.declarations.map((d) => declarationRow(tx, d)) : [declarationRow(tx, lane.declaration)]),
        claimsRow(lane));
    }
    const waiting = lane.needs_officer && lane.waiting_since
      ? h("div", { class: "waiting", dataset: { since: lane.waiting_since } }) : null;
    const plates = tx && (tx.plates || []).length ? tx.plates.map((p) => p.plate).join(" · ") : null;
    card.replaceChildren(...[
      h("header", { class: "lane-head" },
        h("span", { class: "lane-id", text: lane.lane }),
        h("span", { class: "lane-name", text: laneName(lane) }),
        h("span", { class: "tag dir", text: tr("direction", lane.direction) }),
        h("span", { class: "state-badge", text: tr("state", lane.state) })),
      h("div", { class: "outcome-banner" },
        h("div", { class: "outcome-line" },
          h("div", { class: "outcome-title", text: title }),
          plates && kind !== "idle" ? h("span", { class: "banner-plate", text: plates }) : null),
        sub || waiting ? h("div", { class: "outcome-line" },
          sub ? h("div", { class: "outcome-sub", text: sub }) : null, waiting) : null),
      journalBox(lane),
      alarmBox(lane),
      actionButtons(lane),
      h("div", { class: "card-body" },
        tx ? h("div", { class: "truck" }, body) : null,
        tx ? reasonsBox(tx) : null,
        laneFooter(lane),
        historyBox(lane.lane))].filter(Boolean));
    card.querySelector(".card-body").scrollTop = scrollTop;
    updateWaiting(card);
  }

  // ---------------------------------------------------------------- the wall: layout and alerts

  function serverNow() { return Date.now() / 1000 + S.offset; }

  function waitText(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return t("unit.s", { n: s });
    if (s < 3600) return t("unit.min_s", { m: Math.floor(s / 60), s: String(s % 60).padStart(2, "0") });
    return I.duration(s);
  }

  function updateWaiting(root) {
    (root || document).querySelectorAll(".waiting[data-since]").forEach((el) => {
      el.textContent = t("alert.waiting", { time: waitText(serverNow() - Number(el.dataset.since)) });
    });
  }

  function laneOrder() {
    // Lanes with a truck waiting for an officer first (the longest waiting first), then the site's order.
    const lanes = [...S.lanes.values()];
    const index = new Map(lanes.map((lane, i) => [lane.lane, i]));
    return lanes.sort((a, b) => (b.needs_officer - a.needs_officer)
      || (a.needs_officer ? (a.waiting_since || 0) - (b.waiting_since || 0) : 0)
      || index.get(a.lane) - index.get(b.lane));
  }

  function layoutLanes() {
    // Every lane on one screen from 1280x720 up: a grid of n lanes in one or two rows that fills the
    // height below the strip; each card scrolls its details inside. Below 900 px wide: one column.
    const box = document.getElementById("lanes");
    const n = Math.max(1, S.lanes.size);
    const width = box.clientWidth;
    let rows = n <= 2 ? 1 : (n === 3 && width >= 1500 ? 1 : Math.ceil(n / 4) > 2 ? Math.ceil(n / 4) : 2);
    let cols = Math.ceil(n / rows);
    const narrow = width < 900;
    if (narrow) { cols = 1; rows = n; }
    box.style.setProperty("--cols", String(cols));
    box.style.setProperty("--rows", String(rows));
    box.classList.toggle("narrow", narrow);
    const top = box.getBoundingClientRect().top + window.scrollY;
    const available = window.innerHeight - top - 10;
    box.style.height = narrow ? "" : Math.max(available, rows * 230) + "px";
    // Beside the lanes (wide screens) the side panels scroll on their own: the page itself never does.
    const side = document.querySelector(".side");
    const beside = side.getBoundingClientRect().left > box.getBoundingClientRect().right;
    side.style.maxHeight = beside && !narrow ? Math.max(available, 300) + "px" : "";
    laneOrder().forEach((lane, i) => {
      const card = document.getElementById("lane-" + lane.lane);
      if (card) card.style.order = String(i);
    });
  }

  function favicon(alert, dim) {
    const colour = alert ? (dim ? "#7f1d1d" : "#ef4444") : "#16a34a";
    const mark = alert ? "<text x='16' y='23' font-size='20' font-weight='bold' text-anchor='middle' fill='#fff'>!</text>" : "";
    const svg = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><circle cx='16' cy='16' r='15' fill='"
      + colour + "'/>" + mark + "</svg>";
    document.getElementById("favicon").href = "data:image/svg+xml," + encodeURIComponent(svg);
  }

  function pageTitle() {
    const gate = document.getElementById("gate-name").textContent;
    document.title = S.waiting
      ? "(" + S.waiting + ") " + t("alert.title", { n: S.waiting }) + " · " + gate
      : t("app.title") + " · " + gate;
  }

  function beep() {
    try {
      S.audio = S.audio || new (window.AudioContext || window.webkitAudioContext)();
      const ctx = S.audio;
      const now = ctx.currentTime;
      for (const delay of [0, 0.35, 0.7]) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.0001, now + delay);
        gain.gain.exponentialRampToValueAtTime(0.4, now + delay + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, now + delay + 0.28);
        osc.connect(gain).connect(ctx.destination);
        osc.start(now + delay);
        osc.stop(now + delay + 0.3);
      }
    } catch (e) { /* no audio on this machine: the board still shows it */ }
  }

  function updateAlerts() {
    const waiting = [...S.lanes.values()].filter((lane) => lane.needs_officer);
    S.waiting = waiting.length;
    let fresh = false;
    for (const lane of waiting) {
      const key = lane.lane + ":" + ((lane.transaction && lane.transaction.id) || "");
      if (S.alerted.has(key)) continue;
      S.alerted.add(key);
      fresh = true;
      const card = document.getElementById("lane-" + lane.lane);
      if (card) {  // blinks, then stays marked while the truck waits
        card.classList.remove("flash");
        void card.offsetWidth;
        card.classList.add("flash");
        setTimeout(() => card.classList.remove("flash"), 2600);
      }
    }
    if (fresh && S.sound) beep();
    document.body.classList.toggle("has-waiting", S.waiting > 0);
    favicon(S.waiting > 0, false);
    pageTitle();
    layoutLanes();
  }

  function setupSound() {
    const button = document.getElementById("sound-toggle");
    const show = () => {
      button.textContent = t(S.sound ? "alert.sound_on" : "alert.sound_off");
      button.setAttribute("aria-pressed", String(S.sound));
      button.classList.toggle("on", S.sound);
    };
    try { S.sound = window.localStorage.getItem("sg_sound") === "1"; } catch (e) { S.sound = false; }
    button.addEventListener("click", () => {
      S.sound = !S.sound;
      try { window.localStorage.setItem("sg_sound", S.sound ? "1" : "0"); } catch (e) { /* private mode */ }
      if (S.sound) beep();  // a click allows the browser to play sound, and tells the officer what it sounds like
      show();
    });
    I.onChange(show);
    show();
  }

  function renderAllLanes() { for (const lane of S.lanes.values()) renderLane(lane); }

  async function loadHistory(laneId) {
    try {
      S.history.set(laneId, await api("/api/lanes/" + encodeURIComponent(laneId) + "/history?limit=30",
        { background: true }));
      const lane = S.lanes.get(laneId);
      if (lane) renderLane(lane);
    } catch (e) { /* shown on the next update */ }
  }

  // ---------------------------------------------------------------- actions

  function openAction(laneId, action) {
    const lane = S.lanes.get(laneId);
    const tx = lane && lane.transaction;
    S.dialog = { laneId, action };
    document.getElementById("action-title").textContent =
      t("action.dialog_title", { action: t("action." + action), lane: laneId });
    document.getElementById("action-truck").textContent = tx && tx.plates.length
      ? t("action.dialog_truck", { plates: tx.plates.map((p) => p.plate).join(", ") }) : t("action.dialog_no_truck");
    document.getElementById("action-reason").value = "";
    document.getElementById("action-error").textContent = "";
    const dialog = document.getElementById("action-dialog");
    dialog.dataset.action = action;
    dialog.showModal();
    document.getElementById("action-reason").focus();
  }

  async function submitAction(laneId, action, reason) {
    try {
      const result = await api("/api/lanes/" + encodeURIComponent(laneId) + "/actions",
        { method: "POST", body: { action, reason } });
      if (result && result.lane) { S.lanes.set(result.lane.lane, result.lane); renderLane(result.lane); updateAlerts(); }
      toast(t("toast.action_done", { action: t("action." + action), lane: laneId }), "ok");
      return { ok: true, status: 200 };
    } catch (e) {
      toast(e.message, "error");
      return { ok: false, status: e.status, code: e.code, message: e.message };
    }
  }

  function setupDialog() {
    const dialog = document.getElementById("action-dialog");
    document.getElementById("action-cancel").addEventListener("click", () => dialog.close());
    document.getElementById("action-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const reason = document.getElementById("action-reason").value.trim();
      const error = document.getElementById("action-error");
      if (reason.length < 3) { error.textContent = t("action.reason_required"); return; }
      const { laneId, action } = S.dialog;
      const confirm = document.getElementById("action-confirm");
      confirm.disabled = true;
      const result = await submitAction(laneId, action, reason);
      confirm.disabled = false;
      if (result.ok) dialog.close();
      else error.textContent = result.message;
    });
  }

  // ---------------------------------------------------------------- status strip

  function setItem(id, text, level, title) {
    const item = document.getElementById(id);
    item.dataset.level = level || "neutral";
    item.querySelector(".value").textContent = text;
    if (title) item.title = title; else item.removeAttribute("title");
  }

  function renderStatus() {
    const s = S.status;
    if (!s) return;
    const faulty = s.devices.faulty || [];
    if (typeof s.now === "number") S.offset = s.now - Date.now() / 1000;
    setItem("st-devices", faulty.length ? t("status.devices_faulty", { n: faulty.length, total: s.devices.total })
      : t("status.devices_ok", { n: s.devices.ok, total: s.devices.total }), faulty.length ? "bad" : "ok");
    const link = s.link || {};
    const state = linkState(link);
    if (state === "not_configured") setItem("st-link", t("status.link_not_configured"), "neutral");
    else if (state === "up") setItem("st-link", t("status.link_up", { since: I.time(link.since) }), "ok");
    else if (state === "degraded") setItem("st-link", t("status.link_degraded", { since: I.time(link.since) }), "warn");
    else if (state === "unknown") setItem("st-link", t("status.link_unknown"), "warn");
    else setItem("st-link", t("status.link_down", { since: I.time(link.since) }), "bad");
    const cache = s.cache;
    if (cache.age_s === null) setItem("st-cache", t("status.cache_never"), "bad");
    else setItem("st-cache", t("status.cache_age", { age: I.duration(cache.age_s) }), cache.stale ? "bad" : "ok",
      t("status.cache_limit", { max: I.duration(cache.max_age_s) }));
    setItem("st-outbox", s.outbox_backlog === null || s.outbox_backlog === undefined ? "—"
      : t("status.outbox_items", { n: I.number(s.outbox_backlog) }), s.outbox_backlog > 0 ? "warn" : "neutral");
    const journal = s.journal || { ok: true };
    setItem("st-journal", journal.ok ? t("status.journal_ok") : t("status.journal_down", { since: I.time(journal.since) }),
      journal.ok ? "ok" : "bad", journal.ok ? null : journal.reason);
    renderBanners();
  }

  function linkState(link) {
    if (!link.configured) return "not_configured";
    if (link.state) return link.state;
    return link.up ? "up" : (link.up === false ? "down" : "unknown");
  }

  function banner(level, id, text, raw) {
    return h("div", { class: "banner " + level, id }, h("span", { text }), detailsBox(raw));
  }

  function renderBanners() {
    const banners = [];
    if (!S.live) banners.push(h("div", { class: "banner bad", text: t("banner.offline") }));
    if (S.status && S.status.mqtt_insecure) {
      banners.push(h("div", { class: "banner bad", id: "banner-insecure", text: t("banner.mqtt_insecure") }));
    }
    const cache = S.status && S.status.cache;
    if (cache && cache.stale) {
      banners.push(h("div", { class: "banner warn", id: "banner-cache",
        text: cache.age_s === null ? t("banner.cache_never")
          : t("banner.cache_stale", { age: I.duration(cache.age_s), max: I.duration(cache.max_age_s) }) }));
    }
    const s = S.status;
    if (s && s.journal && !s.journal.ok) {
      const j = s.journal;
      banners.push(banner("bad", "banner-journal", t("banner.journal_down", { since: I.time(j.since),
        held: I.number(j.held_rows) }) + (j.dropped_rows ? " " + t("banner.journal_dropped", { n: I.number(j.dropped_rows) })
        : ""), j.reason));
    }
    if (s) {
      const link = s.link || {};
      const state = linkState(link);
      if (state === "down" || state === "degraded") {
        banners.push(banner(state === "down" ? "bad" : "warn", "banner-link",
          state === "down" ? t("banner.link_down", { since: I.time(link.since) })
            : t("banner.link_degraded", { since: I.time(link.since) }), link.last_error || link.error));
      }
      for (const d of (s.devices && s.devices.faulty) || []) {
        banners.push(banner("bad fault", "banner-fault-" + d.device_id, t("banner.device_fault", {
          lane: d.lane || s.gate, device: tr("device_kind", d.kind, d.kind), fault: faultText(d.fault) }), d.last_error));
      }
      const recent = serverNow() - 30 * 60;
      for (const alarm of (s.gate_alarms || []).filter((a) => a.at >= recent).slice(0, 3)) {
        banners.push(banner("bad", "banner-alarm-" + alarm.seq, t("banner.gate_alarm", {
          time: I.time(alarm.at), text: alarmText(alarm.code) }), alarm.text));
      }
    }
    document.getElementById("banners").replaceChildren(...banners);
    if (S.lanes.size) layoutLanes();
  }

  function setLive(up) {
    S.live = up;
    setItem("st-live", up ? t("status.live_on") : t("status.live_off"), up ? "ok" : "bad");
    document.getElementById("st-live").dataset.state = up ? "up" : "down";
    renderBanners();
  }

  // ---------------------------------------------------------------- side panels

  function renderRecent() {
    const box = document.getElementById("recent");
    if (!S.recent.length) { box.replaceChildren(h("p", { class: "muted", text: t("recent.empty") })); return; }
    box.replaceChildren(h("table", { class: "recent-table" },
      h("thead", {}, h("tr", {}, ["recent.time", "recent.lane", "recent.plates", "recent.outcome"]
        .map((key) => h("th", { text: t(key) })))),
      h("tbody", {}, S.recent.map((r) => {
        const final = r.final || { code: "held" };
        return h("tr", { dataset: { final: final.code } },
          h("td", { text: I.time(r.closed_at || r.at) }),
          h("td", { text: r.lane }),
          h("td", { class: "mono", text: (r.plates || []).join(", ") || "—" }),
          h("td", {}, h("span", { class: "final final-" + final.code,
            text: t("final." + final.code, { by: final.by_name || final.by || "" }) }),
          final.code === "manual_open" ? null : h("span", { class: "muted", text: " · " + tr("result", r.result) })));
      }))));
  }

  async function loadRecent() {
    try {
      S.recent = await api("/api/transactions?limit=10", { background: true });
      renderRecent();
    } catch (e) { /* next time */ }
  }

  function renderLookup() {
    const box = document.getElementById("lookup-results");
    if (!S.lookup) { box.replaceChildren(); return; }
    if (S.lookup.error) { box.replaceChildren(h("p", { class: "form-error", text: S.lookup.error })); return; }
    if (!S.lookup.results.length) {
      box.replaceChildren(h("p", { class: "muted", text: t("lookup.none", { q: S.lookup.query }) }));
      return;
    }
    box.replaceChildren(...S.lookup.results.map((d) => h("div", { class: "decl-card" },
      h("div", { class: "decl-head" }, h("span", { class: "mono strong", text: d.number }),
        h("span", { class: "tag channel-" + d.channel, text: tr("channel", d.channel) }),
        h("span", { class: "tag " + (d.status === "cleared" ? "ok" : "bad"), text: tr("decl_status", d.status) }),
        h("span", { class: "muted", text: tr("kind", d.kind) + " · " + d.gate })),
      h("dl", {},
        h("dt", { text: t("truck.plate") }), h("dd", { class: "mono", text: d.plates.join(", ") || "—" }),
        h("dt", { text: t("truck.containers") }), h("dd", { class: "mono", text: d.containers.join(", ") || "—" }),
        h("dt", { text: t("truck.seals") }), h("dd", { class: "mono", text: d.seals.join(", ") || "—" }),
        h("dt", { text: t("truck.weight") }), h("dd", { text: d.gross_weight_kg
          ? t("weight.kg", { kg: I.number(d.gross_weight_kg) }) : "—" }),
        h("dt", { text: t("lookup.valid") }), h("dd", { text: I.time(Date.parse(d.valid_from) / 1000, true) +
          " → " + I.time(Date.parse(d.valid_until) / 1000, true) })))));
  }

  function setupLookup() {
    document.getElementById("lookup-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const q = document.getElementById("lookup-q").value.trim();
      if (q.length < 2) return;
      try {
        S.lookup = await api("/api/declarations?q=" + encodeURIComponent(q));
      } catch (e) {
        S.lookup = { query: q, results: [], error: e.message };
      }
      renderLookup();
    });
  }

  function renderUsers() {
    const box = document.getElementById("users-list");
    box.replaceChildren(h("table", { class: "users-table" },
      h("thead", {}, h("tr", {}, ["users.username", "users.role", "users.gate", "users.state"]
        .map((key) => h("th", { text: t(key) })))),
      h("tbody", {}, S.users.map((u) => h("tr", { class: u.disabled ? "disabled" : "" },
        h("td", {}, h("span", { class: "strong", text: u.username }), u.display_name !== u.username
          ? h("span", { class: "muted", text: " " + u.display_name }) : null),
        h("td", { text: tr("role", u.role) }),
        h("td", { text: u.gate }),
        h("td", {}, h("div", { text: u.disabled ? t("users.disabled") : t("users.active") }),
          u.username === S.me.username ? null : h("button", {  // under the state: the side column is narrow
            type: "button", class: "ghost small", text: u.disabled ? t("users.enable") : t("users.disable"),
            onclick: () => toggleUser(u),
          })))))));
  }

  async function loadUsers() {
    try { S.users = await api("/api/users", { background: true }); renderUsers(); } catch (e) { /* not admin */ }
  }

  async function toggleUser(user) {
    try {
      await api("/api/users/" + encodeURIComponent(user.username) + (user.disabled ? "/enable" : "/disable"),
        { method: "POST" });
      toast(t(user.disabled ? "users.enabled_toast" : "users.disabled_toast", { user: user.username }), "ok");
    } catch (e) { toast(e.message, "error"); }
    loadUsers();
  }

  function setupUsers() {
    document.getElementById("users-panel").classList.remove("hidden");
    document.getElementById("user-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.target;
      try {
        await api("/api/users", { method: "POST", body: {
          username: form.username.value.trim(), display_name: form.display_name.value.trim(),
          role: form.role.value, password: form.password.value } });
        toast(t("users.added_toast", { user: form.username.value.trim() }), "ok");
        form.reset();
      } catch (e) { toast(e.message, "error"); }
      loadUsers();
    });
    loadUsers();
  }

  // ---------------------------------------------------------------- live stream

  function connect() {
    if (S.es) S.es.close();
    const es = new EventSource("/api/events");
    S.es = es;
    es.addEventListener("open", () => setLive(true));
    es.addEventListener("error", () => {
      setLive(false);
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (session ended?) or went away: check, then reconnect.
        setTimeout(async () => {
          try { await api("/api/session", { background: true }); connect(); } catch (e) { setTimeout(connect, 3000); }
        }, 2000);
      }
    });
    es.addEventListener("lane", (event) => {
      const lane = JSON.parse(event.data);
      const first = !S.lanes.has(lane.lane);
      S.lanes.set(lane.lane, lane);
      if (typeof lane.updated_at === "number") S.offset = lane.updated_at - Date.now() / 1000;
      renderLane(lane);
      updateAlerts();
      if (first) loadHistory(lane.lane);
    });
    es.addEventListener("alarm", (event) => {
      const alarm = JSON.parse(event.data);
      toast(t("alarm.toast", { lane: alarm.lane, text: alarmText(alarm.code) }), "error");
    });
    es.addEventListener("status", (event) => { S.status = JSON.parse(event.data); renderStatus(); });
    es.addEventListener("history", (event) => {
      const data = JSON.parse(event.data);
      debounce("history-" + data.lane, () => loadHistory(data.lane), 100);
      if (data.kind === "tx_closed") debounce("recent", loadRecent, 200);
    });
    es.addEventListener("logout", () => { es.close(); window.location.assign("/login"); });
  }

  // ---------------------------------------------------------------- session

  function renderUser() {
    document.getElementById("user-name").textContent = S.me.display_name || S.me.username;
    document.getElementById("user-role").textContent = S.display ? t("display.badge") : tr("role", S.me.role);
  }

  function trackActivity() {
    // The officer's own input keeps the session alive; the page's background requests do not.
    const touch = () => {
      const now = Date.now();
      if (now - S.lastTouch < 60000) return;
      S.lastTouch = now;
      api("/api/session").catch(() => {});
    };
    ["pointerdown", "keydown", "wheel", "touchstart"].forEach((name) =>
      document.addEventListener(name, touch, { passive: true }));
  }

  async function logout() {
    try { await api("/api/logout", { method: "POST" }); } catch (e) { /* gone anyway */ }
    window.location.assign("/login");
  }

  function tick() {
    document.getElementById("clock").textContent = I.time(Date.now() / 1000, true);
    updateWaiting();
    if (S.waiting) favicon(true, Math.floor(Date.now() / 1000) % 2 === 1);  // the tab's icon blinks
  }

  async function init() {
    const session = await api("/api/session");
    S.me = session.user;
    S.csrf = session.csrf;
    S.mayAct = session.may_act;
    S.idleTimeout = session.idle_timeout_s;
    S.display = Boolean(session.display);
    S.lastTouch = Date.now();
    document.body.classList.toggle("display-mode", S.display);
    renderUser();
    setLive(false);
    setupDialog();
    setupSound();
    favicon(false);
    pageTitle();
    if (S.display) document.getElementById("lookup-panel").classList.add("hidden");
    else setupLookup();
    if (atLeast("admin")) setupUsers();
    document.getElementById("logout").addEventListener("click", logout);
    if (!S.display) trackActivity();  // a wall board's session has no idle limit
    window.addEventListener("resize", () => debounce("layout", layoutLanes, 100));
    tick();
    setInterval(tick, 1000);
    connect();
    loadRecent();
    I.onChange(() => {
      renderUser(); renderAllLanes(); renderStatus(); setLive(S.live); renderRecent(); renderLookup(); pageTitle();
      if (atLeast("admin")) renderUsers();
      tick();
    });
  }

  window.SGBoard = { state: S, submitAction, openAction };
  init().catch((e) => toast(e.message, "error"));
})();
