// Stacked bar charts drawn as inline SVG by the page itself (no chart library, nothing from another site).
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(value) {
    if (value <= 4) return 4;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
    return 10 * step;
  }

  // series: [{key, label, color}]; rows: [{label, <key>: n}]. Returns an <svg role="img"> with a title
  // and a description that a screen reader reads; the caller adds a table of the same figures.
  function stackedBars(rows, series, options) {
    const width = options.width || 720, height = options.height || 220;
    const left = 34, right = 8, top = 10, bottom = 28;
    const plotW = width - left - right, plotH = height - top - bottom;
    const totals = rows.map((row) => series.reduce((sum, s) => sum + (row[s.key] || 0), 0));
    const max = niceMax(Math.max(0, ...totals));
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart",
                            "aria-labelledby": options.id + "-title " + options.id + "-desc" });
    svg.appendChild(el("title", { id: options.id + "-title" }, options.title));
    svg.appendChild(el("desc", { id: options.id + "-desc" }, options.description || ""));
    for (let i = 0; i <= 4; i++) {
      const y = top + plotH - (plotH * i) / 4;
      svg.appendChild(el("line", { x1: left, x2: width - right, y1: y, y2: y, class: "grid" }));
      svg.appendChild(el("text", { x: left - 4, y: y + 4, class: "axis", "text-anchor": "end" },
                         window.SGI18N.number((max * i) / 4)));
    }
    const slot = plotW / Math.max(rows.length, 1);
    const barW = Math.max(2, slot * 0.7);
    rows.forEach((row, index) => {
      let y = top + plotH;
      const x = left + index * slot + (slot - barW) / 2;
      for (const s of series) {
        const value = row[s.key] || 0;
        if (!value) continue;
        const h = (plotH * value) / max;
        y -= h;
        const rect = el("rect", { x: x.toFixed(1), y: y.toFixed(1), width: barW.toFixed(1), height: h.toFixed(1),
                                  fill: s.color, class: "bar bar-" + s.key });
        rect.appendChild(el("title", {}, `${row.label}: ${value} ${s.label}`));
        svg.appendChild(rect);
      }
      if (index % (options.labelEvery || 3) === 0) {
        svg.appendChild(el("text", { x: (x + barW / 2).toFixed(1), y: height - 10, class: "axis",
                                     "text-anchor": "middle" }, row.label));
      }
    });
    svg.appendChild(el("line", { x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, class: "base" }));
    return svg;
  }

  window.SGChart = { stackedBars };
})();
