// layerscope explore: forms -> /api/run -> poll the job -> draw its rows with LayerscopeCharts.
// Every view's state is its form: the reproduce link is the form as a query string, and opening
// a link fills the form and runs it.
"use strict";
(function () {
  const C = window.LayerscopeCharts;
  const page = new URL(window.location.href);
  const token = page.searchParams.get("token");
  const state = { info: null, model: null, running: {}, lensRows: null, lensParams: null };
  const POLL_MS = 150;

  function api(path, body) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers["X-Layerscope-Token"] = token;
    const init = body === undefined ? { headers } : { method: "POST", headers, body: JSON.stringify(body) };
    return fetch(path, init).then(async (r) => {
      const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
      if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
      return data;
    });
  }
  const $ = (sel, root) => (root || document).querySelector(sel);
  function el(tag, attrs, parent, text) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    if (parent) parent.appendChild(n);
    return n;
  }

  function formParams(view) {
    const form = $(`form[data-view="${view}"]`);
    const out = {};
    for (const [k, v] of new FormData(form).entries()) out[k] = v;
    return out;
  }
  function fillForm(view, params) {
    const form = $(`form[data-view="${view}"]`);
    for (const [k, v] of Object.entries(params)) if (form.elements[k]) form.elements[k].value = v;
  }
  function link(view, params) {
    const url = new URL(window.location.origin + window.location.pathname);
    url.searchParams.set("view", view);
    if (state.model !== state.info.default) url.searchParams.set("model", state.model);
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== undefined) url.searchParams.set(k, v);
    if (token) url.searchParams.set("token", token);
    return url.toString();
  }

  function showView(view) {
    document.querySelectorAll(".view").forEach((s) => (s.hidden = s.id !== `view-${view}`));
    document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
  }

  // run a view: queue it, show its progress (or its place in the queue), draw its rows
  async function run(view, params) {
    const box = $(`.job[data-view="${view}"]`);
    box.replaceChildren();
    const prior = state.running[view];
    if (prior) api(`/api/jobs/${prior}/cancel`, {}).catch(() => {});
    let job;
    try {
      job = await api("/api/run", { view, model: state.model, params });
    } catch (e) { el("span", { class: "error" }, box, e.message); return null; }
    state.running[view] = job.job;
    const bar = el("progress", { max: 1, value: 0 }, box);
    const note = el("span", {}, box, "starting");
    const cancel = el("button", { type: "button", class: "cancel" }, box, "Cancel");
    cancel.addEventListener("click", () => api(`/api/jobs/${job.job}/cancel`, {}).catch(() => {}));
    const started = performance.now();
    for (;;) {
      try { job = await api(`/api/jobs/${job.job}`); } catch (e) { note.textContent = e.message; note.className = "error"; break; }
      if (job.state === "queued") {
        note.className = "queued";
        note.textContent = `queued: ${job.ahead} computation(s) ahead on ${job.model} (one runs at a time per model)`;
      } else if (job.state === "running") {
        note.className = "";
        bar.max = Math.max(1, job.total); bar.value = job.done;
        note.textContent = `running ${job.done} / ${job.total}`;
      } else break;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    cancel.remove();
    if (state.running[view] === job.job) delete state.running[view];
    if (job.state === "done") {
      bar.remove();
      note.textContent = `done in ${((performance.now() - started) / 1000).toFixed(2)} s (${job.rows.length} rows)`;
      note.className = "done";
      return job;
    }
    bar.remove();
    note.className = job.state === "cancelled" ? "queued" : "error";
    note.textContent = job.state === "cancelled" ? "cancelled" : (job.message || job.state);
    return null;
  }

  // the link, the downloads and the command line of a finished view
  function repro(out, view, job) {
    const box = el("div", { class: "repro" }, out);
    const line = el("div", {}, box, "reproduce: ");
    el("a", { href: link(view, job.params), class: "repro-link" }, line, "link to this view");
    const t = token ? `?token=${encodeURIComponent(token)}` : "";
    line.append("  rows: ");
    el("a", { href: `/api/jobs/${job.job}/rows.json${t}`, download: "", class: "dl-json" }, line, "JSON");
    line.append(" · ");
    el("a", { href: `/api/jobs/${job.job}/rows.csv${t}`, download: "", class: "dl-csv" }, line, "CSV");
    const cmd = el("div", {}, box, "command line: ");
    el("code", { class: "command" }, cmd, job.command);
  }

  // ---- lens ----
  function drawLens(job) {
    const out = $("#out-lens");
    out.replaceChildren();
    const rows = job.rows, top = rows.filter((r) => r.rank === 0);
    const layers = [...new Set(top.map((r) => r.layer))].sort((a, b) => b - a);
    const positions = [...new Set(top.map((r) => r.position))].sort((a, b) => a - b);
    const tokens = positions.map((p) => top.find((r) => r.position === p).token);
    const by = new Map();
    rows.forEach((r) => { const k = r.layer + "," + r.position; (by.get(k) || by.set(k, []).get(k)).push(r); });
    C.grid(out, {
      title: `${job.rows[0].method === "logit_lens" ? "Logit" : "Tuned"} lens: top next token per (layer, position)`,
      rows: layers.map(String), cols: tokens, corner: "layer \\ token",
      cell: (r, c) => {
        const cands = (by.get(layers[r] + "," + positions[c]) || []).sort((a, b) => a.rank - b.rank);
        if (!cands.length) return null;
        return { text: cands[0].top_token, value: cands[0].prob,
          tip: [`layer ${layers[r]}, position ${positions[c]} (${JSON.stringify(tokens[c])})`,
            ...cands.map((x) => `${JSON.stringify(x.top_token).padEnd(16)} ${x.prob.toFixed(4)}`)] };
      },
      onClick: (r, c) => openDecode(job.params.prompt, layers[r], positions[c], true),
      legend: "colour: the top token's probability (white 0 to blue 1); hover for the top 5, click to decode the state",
    });
    repro(out, "lens", job);
  }
  function openDecode(prompt, layer, position, go) {
    $("#decode").hidden = false;
    $("#decode-cell").textContent = `(layer ${layer}, position ${position})`;
    fillForm("decode", { prompt, layer, position });
    $("#out-decode").replaceChildren();
    if (go) runDecode();
  }
  async function runDecode() {
    const job = await run("decode", formParams("decode"));
    if (!job) return;
    const out = $("#out-decode");
    out.replaceChildren();
    job.rows.forEach((r) => {
      el("div", { class: "label" }, out, `${r.inspection}: top token ${JSON.stringify(r.top_token)} (p ${C.fmt(r.prob)})`);
      el("div", { class: "decoded", "data-inspection": r.inspection }, out, r.text);
    });
    repro(out, "decode", job);
  }

  // ---- patching ----
  function drawPatching(job) {
    const out = $("#out-patching");
    out.replaceChildren();
    const rows = job.rows;
    const layers = [...new Set(rows.map((r) => r.layer))].sort((a, b) => b - a);
    const positions = [...new Set(rows.map((r) => r.position))].sort((a, b) => a - b);
    const tokens = positions.map((p) => rows.find((r) => r.position === p).token);
    const cell = new Map(rows.map((r) => [r.layer + "," + r.position, r]));
    const { clean_value: clean, corrupt_value: corrupt, answer, wrong, site } = rows[0];
    C.grid(out, {
      title: `Patching ${site}: logit(${JSON.stringify(answer)}) - logit(${JSON.stringify(wrong)}); clean ${C.fmt(clean)}, corrupt ${C.fmt(corrupt)}`,
      rows: layers.map(String), cols: tokens, corner: "layer \\ token", scale: "diverging",
      cell: (r, c) => {
        const x = cell.get(layers[r] + "," + positions[c]);
        if (!x) return null;
        return { text: C.fmt(x.value), value: x.value - corrupt,
          tip: [`layer ${x.layer}, position ${x.position} (${JSON.stringify(x.token)})`, `value   ${C.fmt(x.value)}`,
            `clean   ${C.fmt(clean)}`, `corrupt ${C.fmt(corrupt)}`, ...(x.skipped ? ["(shared prefix: no-op patch)"] : [])] };
      },
      legend: "colour: value minus the corrupt baseline (blue: towards the clean answer, red: away)",
    });
    repro(out, "patching", job);
  }

  // ---- attend ----
  function ignoredFrom(rows) { // as layerscope.methods.attend.ignored_from
    let layer = null;
    for (const r of [...rows].sort((a, b) => b.layer - a.layer)) { if (!r.ignored) break; layer = r.layer; }
    return layer;
  }
  function drawAttend(job) {
    const out = $("#out-attend");
    out.replaceChildren();
    const rows = [...job.rows].sort((a, b) => a.layer - b.layer);
    const keys = Object.keys(rows[0]).filter((k) => k.startsWith("p_"));
    const series = keys.map((k) => ({ name: k, points: rows.map((r) => [r.layer, r[k], `top ${JSON.stringify(r.top_token)}`]) }));
    series.push({ name: "top_prob", points: rows.map((r) => [r.layer, r.top_prob, `top ${JSON.stringify(r.top_token)}`]) });
    const from = ignoredFrom(rows);
    C.lines(el("div", {}, out), { title: `switch from layer k on (unswitched top token ${JSON.stringify(rows[0].clean_top_token)})`,
      series, xLabel: "k", yLabel: "probability", yMin: 0, yMax: 1, xInteger: true,
      marks: from === null ? [] : [{ x: from, label: `ignored from k = ${from}` }] });
    el("p", {}, out, from === null ? "the switch is not ignored at the last layer" : `the switch is ignored from layer ${from} on`);
    repro(out, "attend", job);
  }

  // ---- metrics ----
  function drawMetrics(job) {
    const out = $("#out-metrics");
    out.replaceChildren();
    const holder = el("div", { class: "charts" }, out);
    const metrics = [...new Set(job.rows.map((r) => r.metric))];
    const models = [...new Set(job.rows.map((r) => r.model))];
    metrics.forEach((m) => {
      const series = models.map((name) => ({ name, points: job.rows.filter((r) => r.metric === m && r.model === name)
        .sort((a, b) => a.relative_depth - b.relative_depth).map((r) => [r.relative_depth, r.value, `depth ${r.depth}`]) }));
      C.lines(el("div", {}, holder), { title: m, series, xLabel: "relative depth", yLabel: m, width: 560, height: 260 });
    });
    repro(out, "metrics", job);
  }

  const draw = { lens: drawLens, patching: drawPatching, attend: drawAttend, metrics: drawMetrics };
  async function runView(view) {
    const params = formParams(view);
    history.replaceState(null, "", link(view, params));
    const job = await run(view, params);
    if (job) draw[view](job);
    return job;
  }

  async function start() {
    try { state.info = await api("/api/info"); } catch (e) { document.body.prepend(el("p", { class: "error" }, null, e.message)); return; }
    const select = $("#model");
    state.info.models.forEach((m) => el("option", { value: m.name }, select, `${m.name} (${m.n_layers} layers)`));
    state.model = page.searchParams.get("model") || state.info.default;
    select.value = state.model;
    select.addEventListener("change", () => (state.model = select.value));
    fillForm("metrics", { models: state.model });
    fillForm("decode", state.info.defaults.decode);
    document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => showView(b.dataset.view)));
    document.querySelectorAll("form.controls").forEach((f) => f.addEventListener("submit", (e) => {
      e.preventDefault();
      if (f.dataset.view === "decode") runDecode(); else runView(f.dataset.view);
    }));
    // the buttons stay disabled until the handlers are attached (a click before would submit the form natively)
    document.querySelectorAll("form.controls button[type=submit]").forEach((b) => (b.disabled = false));
    document.body.dataset.ready = "1";
    // a reproduce link: fill the view's form from the query and run it
    const view = page.searchParams.get("view");
    if (!view) return;
    const params = {};
    for (const [k, v] of page.searchParams.entries()) if (!["view", "model", "token"].includes(k)) params[k] = v;
    if (view === "decode") {
      showView("lens");
      fillForm("lens", { prompt: params.prompt || "" });
      fillForm("decode", params);
      await runView("lens");
      openDecode(params.prompt, params.layer, params.position, false);
      fillForm("decode", params);
      runDecode();
    } else if (draw[view]) {
      showView(view);
      fillForm(view, params);
      runView(view);
    }
  }
  document.addEventListener("DOMContentLoaded", start);
})();
