// layerscope charts: a cell grid (lens tokens, patching heatmap) and line charts, with hover
// tooltips. Plain DOM + SVG, no dependency: the explore app and the demo's HTML report both use it.
"use strict";
(function (global) {
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, parent, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  // one shared tooltip; its content is set with textContent only (model tokens are untrusted text)
  let tip = null;
  function tooltip() {
    if (!tip) {
      tip = el("div", { class: "ls-tooltip", role: "tooltip" }, document.body);
      tip.style.display = "none";
    }
    return tip;
  }
  function showTip(event, lines) {
    const t = tooltip();
    t.replaceChildren();
    lines.forEach((line, i) => el("div", i === 0 ? { class: "ls-tip-head" } : {}, t, line));
    t.style.display = "block";
    const x = Math.min(event.pageX + 14, window.scrollX + document.documentElement.clientWidth - t.offsetWidth - 8);
    t.style.left = x + "px";
    t.style.top = event.pageY + 14 + "px";
  }
  function hideTip() { if (tip) tip.style.display = "none"; }

  // colours: sequential (0..1, white -> blue) and diverging (-m..m, red - white - blue)
  function sequential(v) {
    const t = Math.max(0, Math.min(1, v));
    const r = Math.round(255 - 215 * t), g = Math.round(255 - 155 * t), b = Math.round(255 - 60 * t);
    return `rgb(${r},${g},${b})`;
  }
  function diverging(v, m) {
    const t = Math.max(-1, Math.min(1, m ? v / m : 0));
    if (t >= 0) return `rgb(${Math.round(255 - 200 * t)},${Math.round(255 - 130 * t)},255)`;
    return `rgb(255,${Math.round(255 + 150 * t)},${Math.round(255 + 180 * t)})`;
  }
  function darkText(colour) {
    const [r, g, b] = colour.match(/\d+/g).map(Number);
    return 0.299 * r + 0.587 * g + 0.114 * b > 140;
  }
  // a token as shown: spaces visible, newlines as \n
  // (byte-level BPE pieces, as some rows carry them, shown as text: "Ġ" space, "Ċ" newline)
  function showToken(s) {
    const text = String(s).replace(/\u0120/g, " ").replace(/\u010a/g, "\n").replace(/\n/g, "\\n");
    return text.trim() === "" && text !== "" ? "\u00b7".repeat(text.length) : text.replace(/ /g, "\u00a0");
  }

  // grid(container, spec): spec.rows / spec.cols: labels (rows drawn top to bottom as given);
  // spec.cell(r, c) -> {text, value, tip: [lines]} or null; spec.scale: "sequential" | "diverging";
  // spec.onClick(r, c) optional. Cells carry data-row / data-col for tests and links.
  function grid(container, spec) {
    container.replaceChildren();
    const values = [];
    spec.rows.forEach((_, r) => spec.cols.forEach((_, c) => {
      const cell = spec.cell(r, c); if (cell && Number.isFinite(cell.value)) values.push(cell.value);
    }));
    const maxAbs = Math.max(1e-9, ...values.map(Math.abs));
    const table = el("table", { class: "ls-grid" + (spec.onClick ? " ls-clickable" : "") }, container);
    if (spec.title) el("caption", {}, table, spec.title);
    const head = el("tr", {}, el("thead", {}, table));
    el("th", { class: "ls-corner" }, head, spec.corner || "");
    spec.cols.forEach((label) => el("th", { class: "ls-col" }, head, showToken(label)));
    const body = el("tbody", {}, table);
    spec.rows.forEach((rowLabel, r) => {
      const tr = el("tr", {}, body);
      el("th", { class: "ls-row" }, tr, rowLabel);
      spec.cols.forEach((_, c) => {
        const cell = spec.cell(r, c);
        const td = el("td", { "data-row": r, "data-col": c, class: "ls-cell" }, tr);
        if (!cell) return;
        const colour = spec.scale === "diverging" ? diverging(cell.value, maxAbs) : sequential(cell.value);
        td.style.background = colour;
        td.style.color = darkText(colour) ? "#111" : "#fff";
        if (cell.text !== undefined) td.textContent = showToken(cell.text);
        td.addEventListener("mousemove", (e) => showTip(e, cell.tip || [String(cell.value)]));
        td.addEventListener("mouseleave", hideTip);
        if (spec.onClick) td.addEventListener("click", () => {
          table.querySelectorAll(".ls-selected").forEach((n) => n.classList.remove("ls-selected"));
          td.classList.add("ls-selected");
          spec.onClick(r, c);
        });
      });
    });
    if (spec.legend) el("div", { class: "ls-legend" }, container, spec.legend);
    return table;
  }

  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

  // lines(container, spec): spec.series = [{name, points: [[x, y], ...]}]; spec.xLabel, spec.yLabel;
  // spec.marks = [{x, label}] (vertical dashed lines); hover a point for its values.
  function lines(container, spec) {
    container.replaceChildren();
    // the legend sits right of the plot, so that it never covers a curve
    const W = spec.width || 640, H = spec.height || 300, L = 56, R = 140, T = 24, B = 42;
    const all = spec.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[1]));
    if (!all.length) { el("p", { class: "ls-empty" }, container, "no values"); return null; }
    let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
    if (spec.yMin !== undefined) y0 = Math.min(y0, spec.yMin);
    if (spec.yMax !== undefined) y1 = Math.max(y1, spec.yMax);
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y1 = y0 + 1; }
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "ls-lines" }, container);
    if (spec.title) el("svg:text", { x: L, y: 14, class: "ls-title" }, svg, spec.title);
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      const x = spec.xInteger ? Math.round(x0 + ((x1 - x0) * i) / 4) : x0 + ((x1 - x0) * i) / 4;
      el("svg:line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: "ls-gridline" }, svg);
      el("svg:text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end", class: "ls-tick" }, svg, fmt(y));
      el("svg:text", { x: sx(x), y: H - B + 16, "text-anchor": "middle", class: "ls-tick" }, svg, fmt(x));
    }
    el("svg:text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "ls-axis" }, svg, spec.xLabel || "");
    el("svg:text", { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`,
      "text-anchor": "middle", class: "ls-axis" }, svg, spec.yLabel || "");
    (spec.marks || []).forEach((m) => {
      el("svg:line", { x1: sx(m.x), x2: sx(m.x), y1: T, y2: H - B, class: "ls-mark" }, svg);
      el("svg:text", { x: sx(m.x) - 4, y: H - B - 6, "text-anchor": "end", class: "ls-mark-label" }, svg, m.label);
    });
    spec.series.forEach((s, i) => {
      const colour = s.colour || PALETTE[i % PALETTE.length];
      const pts = s.points.filter((p) => Number.isFinite(p[1]));
      el("svg:path", { d: pts.map((p, j) => `${j ? "L" : "M"}${sx(p[0])},${sy(p[1])}`).join(""),
        fill: "none", stroke: colour, "stroke-width": 2 }, svg);
      pts.forEach((p) => {
        const dot = el("svg:circle", { cx: sx(p[0]), cy: sy(p[1]), r: 4, fill: colour, class: "ls-point" }, svg);
        dot.addEventListener("mousemove", (e) => showTip(e, [s.name, `${spec.xLabel || "x"} ${fmt(p[0])}`,
          `${spec.yLabel || "y"} ${fmt(p[1])}`, ...(p[2] ? [p[2]] : [])]));
        dot.addEventListener("mouseleave", hideTip);
      });
      el("svg:rect", { x: W - R + 12, y: T + 4 + 16 * i, width: 10, height: 10, fill: colour }, svg);
      el("svg:text", { x: W - R + 26, y: T + 13 + 16 * i, class: "ls-legend-text" }, svg, s.name);
    });
    return svg;
  }

  function fmt(v) {
    if (!Number.isFinite(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 0.01 || a >= 1e4) ? v.toExponential(2) : String(+v.toFixed(a < 1 ? 3 : 2));
  }

  // the demo report: every <script type="application/json" class="ls-chart"> becomes a chart
  function renderAll(root) {
    (root || document).querySelectorAll("script.ls-chart").forEach((node) => {
      const spec = JSON.parse(node.textContent);
      const holder = document.createElement("div");
      holder.className = "ls-chart-holder";
      node.after(holder);
      if (spec.kind === "lines") lines(holder, spec);
      else grid(holder, fromCells(spec));
    });
  }
  // a serialisable grid: {rows, cols, cells: [[r, c, value, text, tipLines]], scale}
  function fromCells(spec) {
    const index = new Map(spec.cells.map((x) => [x[0] + "," + x[1], x]));
    return Object.assign({}, spec, { cell: (r, c) => {
      const x = index.get(r + "," + c);
      return x ? { value: x[2], text: x[3] === null ? undefined : x[3], tip: x[4] } : null;
    } });
  }

  global.LayerscopeCharts = { grid, lines, renderAll, fromCells, fmt, showToken, sequential, diverging };
})(window);
