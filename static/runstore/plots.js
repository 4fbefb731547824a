/* Compare's parameter plots: parallel coordinates (numeric, log and categorical axes, brushing)
 * and a scatter of two fields (numeric or categorical). Values come from the compare view's
 * "values" fragment; numbers are formatted by charts.js (RunstoreCharts.fmtNum / fmtTicks).
 * What each plot drew is kept on its canvas (data-axes, data-selected, data-labels) for tests. */
(function () {
  "use strict";

  const PC_HEIGHT = 340, SC_HEIGHT = 340;
  const FONT = "11px system-ui, sans-serif";
  const LOG_SPAN = 100; // a positive axis whose max/min reaches this is drawn on a log scale

  function fmt(v) { return window.RunstoreCharts ? window.RunstoreCharts.fmtNum(v) : String(v); }
  function fmtTicks(vals, log) { return window.RunstoreCharts ? window.RunstoreCharts.fmtTicks(vals, log) : vals.map(String); }
  function cssVar(name, fallback) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback; }
  const natural = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" }).compare;

  /* An axis over one field's values: pos(v) is the value's place in [0, 1] (bottom to top), or null.
   * Strings (and booleans) make a categorical axis; one distinct value a constant axis drawn at
   * the middle with that value only; positive values spanning orders of magnitude a log axis. */
  function axisFor(path, values, inset) {
    const present = values.filter((v) => v != null);
    if (!present.length) return { path, kind: "empty", ticks: [], pos: () => null };
    if (present.some((v) => typeof v === "string")) {
      const cats = Array.from(new Set(present.map(String))).sort(natural);
      if (cats.length === 1) return { path, kind: "constant", categories: cats, ticks: [{ at: 0.5, label: cats[0] }], pos: (v) => (v == null ? null : 0.5) };
      const n = cats.length;
      const pos = (v) => { if (v == null) return null; const i = cats.indexOf(String(v)); return inset ? (i + 0.5) / n : i / (n - 1); };
      return { path, kind: "categorical", categories: cats, ticks: cats.map((c) => ({ at: pos(c), label: c })), pos };
    }
    const lo = Math.min(...present), hi = Math.max(...present);
    if (lo === hi) return { path, kind: "constant", ticks: [{ at: 0.5, label: fmt(lo) }], pos: (v) => (v == null ? null : 0.5) };
    if (lo > 0 && hi / lo >= LOG_SPAN) {
      const a = Math.log10(lo), b = Math.log10(hi);
      const pos = (v) => (v == null || v <= 0 ? null : (Math.log10(v) - a) / (b - a));
      let vals = [];
      for (let e = Math.ceil(a); e <= Math.floor(b); e++) vals.push(Math.pow(10, e));
      if (vals.length < 2) vals = [lo, hi];
      const labels = fmtTicks(vals, true);
      return { path, kind: "log", lo, hi, ticks: vals.map((v, i) => ({ at: pos(v), label: labels[i] })), pos };
    }
    const pos = (v) => (v == null ? null : (v - lo) / (hi - lo));
    const vals = niceTicks(lo, hi, 5);
    const labels = fmtTicks(vals, false);
    return { path, kind: "linear", lo, hi, ticks: vals.map((v, i) => ({ at: pos(v), label: labels[i] })), pos };
  }

  function niceTicks(lo, hi, count) {
    const span = hi - lo;
    const raw = span / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || 10 * mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out.length >= 2 ? out : [lo, hi];
  }

  function prepare(canvas, height) {
    const W = Math.max(240, canvas.clientWidth || canvas.parentElement.clientWidth);
    const ratio = window.devicePixelRatio || 1;
    canvas.width = W * ratio;
    canvas.height = height * ratio;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, W, height);
    ctx.font = FONT;
    return { ctx, W, H: height };
  }

  function ellipsize(ctx, text, width) {
    if (ctx.measureText(text).width <= width) return text;
    let lo = 0, hi = text.length;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (ctx.measureText(text.slice(0, mid) + "…").width <= width) lo = mid; else hi = mid - 1; }
    return lo ? text.slice(0, lo) + "…" : "…";
  }

  function haloText(ctx, text, x, y, bg) {
    ctx.save(); ctx.lineWidth = 3; ctx.strokeStyle = bg; ctx.lineJoin = "round"; ctx.strokeText(text, x, y); ctx.restore();
    ctx.fillText(text, x, y);
  }

  /* ---------- parallel coordinates ---------- */
  const PC = new WeakMap(); // canvas -> { data, brushes: {axis index: [lo, hi]} }

  function leafTitles(paths) {
    const leaves = paths.map((p) => p.split("/").pop() || p);
    return leaves.map((l, i) => (leaves.indexOf(l) !== i || leaves.lastIndexOf(l) !== i ? paths[i] : l));
  }

  function drawParallel(canvas) {
    const st = PC.get(canvas);
    const data = st.data;
    const { ctx, W, H } = prepare(canvas, PC_HEIGHT);
    const fg = cssVar("--fg", "#222"), muted = cssVar("--muted", "#777"), line = cssVar("--line", "#ccc"), bg = cssVar("--card", "#fff");
    const n = data.paths.length;
    const titles = canvas.parentElement.querySelector(".pc-titles");
    if (titles) titles.textContent = "";
    if (!n) { ctx.fillStyle = muted; ctx.fillText("Choose parameters to draw.", 12, 24); return; }
    const axes = data.paths.map((p, j) => axisFor(p, data.runs.map((r) => r.values[j]), false));
    const pad = 14, top = 14, bottom = H - 22;
    const x = (j) => (n === 1 ? W / 2 : pad + (j * (W - 2 * pad)) / (n - 1));
    const y = (frac) => bottom - frac * (bottom - top);
    st.layout = { x, top, bottom, n };
    const brushes = st.brushes;
    const passes = (r) => Object.keys(brushes).every((j) => {
      const f = axes[j] && axes[j].pos(r.values[j]);
      return f != null && f >= brushes[j][0] - 1e-9 && f <= brushes[j][1] + 1e-9;
    });
    const selected = data.runs.filter(passes);
    const path = (r) => {
      ctx.beginPath();
      let moved = false;
      axes.forEach((a, j) => {
        const f = a.pos(r.values[j]);
        if (f == null) { moved = false; return; }
        if (!moved) { ctx.moveTo(x(j), y(f)); moved = true; } else ctx.lineTo(x(j), y(f));
      });
      ctx.stroke();
    };
    // runs outside the brushes first, faint; the selected ones on top in their colours
    ctx.globalAlpha = 0.7; ctx.strokeStyle = line; ctx.lineWidth = 1;
    data.runs.filter((r) => !selected.includes(r)).forEach(path);
    ctx.globalAlpha = 1; ctx.lineWidth = 2;
    selected.forEach((r) => { ctx.strokeStyle = r.color; path(r); });
    // axes, brushes, ticks
    const spacing = n === 1 ? W : (W - 2 * pad) / (n - 1);
    axes.forEach((a, j) => {
      const ax = x(j);
      ctx.strokeStyle = fg; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(ax, top); ctx.lineTo(ax, bottom); ctx.stroke();
      if (brushes[j]) {
        ctx.fillStyle = cssVar("--accent", "#0b5cad"); ctx.globalAlpha = 0.25;
        ctx.fillRect(ax - 7, y(brushes[j][1]), 14, y(brushes[j][0]) - y(brushes[j][1]));
        ctx.globalAlpha = 1;
      }
      const last = j === n - 1 && n > 1;
      ctx.textAlign = last ? "right" : "left"; ctx.textBaseline = "middle"; ctx.fillStyle = a.kind === "constant" ? muted : fg;
      const room = Math.max(24, spacing * (last ? 0.5 : 0.55) - 8);
      const every = Math.max(1, Math.ceil((a.ticks.length * 13) / (bottom - top)));
      a.ticks.forEach((t, i) => {
        if (i % every) return;
        ctx.beginPath(); ctx.moveTo(ax - 3, y(t.at)); ctx.lineTo(ax + 3, y(t.at)); ctx.stroke();
        haloText(ctx, ellipsize(ctx, String(t.label), room), last ? ax - 5 : ax + 5, y(t.at), bg);
      });
      if (a.kind === "log" || a.kind === "constant" || a.kind === "empty") {
        ctx.textAlign = last ? "right" : j === 0 ? "left" : "center"; ctx.textBaseline = "alphabetic"; ctx.fillStyle = muted;
        ctx.fillText(a.kind === "log" ? "log" : a.kind === "empty" ? "no values" : "constant", ax, H - 6);
      }
    });
    // titles: HTML above the canvas, the leaf name cut to its room, the whole path on hover
    const names = leafTitles(data.paths);
    if (titles) {
      const widest = Math.max(...names.map((t) => ctx.measureText(t).width));
      const stagger = n > 1 && widest > spacing - 8;
      titles.classList.toggle("staggered", stagger);
      names.forEach((name, j) => {
        const span = document.createElement("span");
        span.className = "pc-title" + (j === n - 1 && data.metric ? " metric" : "") + (stagger && j % 2 ? " low" : "");
        span.textContent = name;
        span.title = data.paths[j];
        const room = Math.max(30, (stagger ? 2 * spacing : spacing) - 8);
        const width = Math.min(room, ctx.measureText(name).width + 12);
        const left = Math.min(Math.max(0, x(j) - width / 2), W - width);
        span.style.left = left + "px";
        span.style.width = width + "px";
        titles.appendChild(span);
      });
    }
    canvas.dataset.axes = JSON.stringify(axes.map((a, j) => ({
      path: a.path, kind: a.kind, x: x(j), top, bottom, categories: a.categories || null, ticks: a.ticks.map((t) => String(t.label)),
    })));
    canvas.dataset.selected = selected.map((r) => r.id).join(",");
    canvas.dataset.brushes = JSON.stringify(Object.fromEntries(Object.entries(brushes).map(([j, b]) => [data.paths[j], b])));
    const status = document.getElementById("parallel-status");
    if (status) {
      const brushed = Object.keys(brushes).length;
      status.textContent = brushed
        ? `${selected.length} of ${data.runs.length} runs selected` + (selected.length && selected.length <= 12 ? ": " + selected.map((r) => r.id).join(", ") : "") + " · "
        : "Drag along an axis to select a range (click the axis to clear it); runs within every range stay highlighted.";
      if (brushed) {
        const clear = document.createElement("button");
        clear.type = "button";
        clear.className = "link clear-brushes";
        clear.textContent = "clear every range";
        status.appendChild(clear);
      }
    }
  }

  function brushAt(canvas, ev) {
    const st = PC.get(canvas);
    if (!st || !st.layout) return null;
    const rect = canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left, py = ev.clientY - rect.top;
    const { x, top, bottom, n } = st.layout;
    let best = -1, dist = 18;
    for (let j = 0; j < n; j++) { const d = Math.abs(x(j) - px); if (d < dist) { dist = d; best = j; } }
    if (best < 0 || py < top - 8 || py > bottom + 8) return null;
    const frac = (py) => Math.min(1, Math.max(0, (bottom - py) / (bottom - top)));
    return { axis: best, frac, py };
  }

  function initBrushing(canvas) {
    if (canvas.dataset.brushReady) return;
    canvas.dataset.brushReady = "1";
    let drag = null;
    canvas.addEventListener("pointerdown", (ev) => {
      const hit = brushAt(canvas, ev);
      if (!hit) return;
      ev.preventDefault();
      canvas.setPointerCapture(ev.pointerId);
      drag = { axis: hit.axis, frac: hit.frac, start: hit.py, moved: false };
    });
    canvas.addEventListener("pointermove", (ev) => {
      const st = PC.get(canvas);
      if (!drag) { canvas.classList.toggle("brushable", !!brushAt(canvas, ev)); return; }
      const rect = canvas.getBoundingClientRect();
      const py = ev.clientY - rect.top;
      if (Math.abs(py - drag.start) < 4 && !drag.moved) return;
      drag.moved = true;
      const f = drag.frac(py);
      st.brushes[drag.axis] = [Math.min(f, drag.frac(drag.start)), Math.max(f, drag.frac(drag.start))];
      drawParallel(canvas);
    });
    const end = (ev) => {
      if (!drag) return;
      const st = PC.get(canvas);
      const py = ev.clientY - canvas.getBoundingClientRect().top;
      if (!drag.moved && Math.abs(py - drag.start) >= 4) drag.moved = true;
      if (drag.moved) {
        // the range ends where the pointer was released (moves may have been coalesced)
        const f = drag.frac(py), g = drag.frac(drag.start);
        st.brushes[drag.axis] = [Math.min(f, g), Math.max(f, g)];
      } else delete st.brushes[drag.axis]; // a click clears the axis' range
      drag = null;
      drawParallel(canvas);
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
  }

  /* ---------- scatter ---------- */
  function drawScatter(canvas, data) {
    const { ctx, W, H } = prepare(canvas, SC_HEIGHT);
    const fg = cssVar("--fg", "#222"), muted = cssVar("--muted", "#777"), bg = cssVar("--card", "#fff");
    const status = document.getElementById("scatter-status");
    const pts = data.runs.filter((r) => r.values[0] != null && r.values[1] != null);
    const missing = data.runs.length - pts.length;
    if (status) status.textContent = missing ? `${missing} of ${data.runs.length} runs lack ${data.paths[0]} or ${data.paths[1]} and are not shown.` : "";
    canvas.dataset.labels = "[]";
    if (!pts.length) {
      ctx.fillStyle = muted; ctx.textAlign = "left";
      ctx.fillText(ellipsize(ctx, "No run has both " + data.paths.join(" and "), W - 24), 12, H / 2);
      canvas.dataset.axes = "[]";
      return;
    }
    const ax = axisFor(data.paths[0], pts.map((r) => r.values[0]), true);
    const ay = axisFor(data.paths[1], pts.map((r) => r.values[1]), true);
    const ylabels = ay.ticks.map((t) => String(t.label));
    const tickRoom = Math.min(W * 0.3, Math.max(...ylabels.map((l) => ctx.measureText(l).width), 10));
    const left = 22 + tickRoom + 6, right = 12, top = 12, bottom = H - 40;
    // points keep a little room from the axes: a run at an axis' minimum is not drawn on the axis line
    const m = (a) => (a.kind === "linear" || a.kind === "log" ? (f) => 0.04 + 0.92 * f : (f) => f);
    const mx = m(ax), my = m(ay);
    const X = (v) => left + mx(ax.pos(v)) * (W - left - right);
    const Y = (v) => bottom - my(ay.pos(v)) * (bottom - top);
    ctx.strokeStyle = fg; ctx.fillStyle = fg; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(left, top); ctx.lineTo(left, bottom); ctx.lineTo(W - right, bottom); ctx.stroke();
    // y ticks to the left of the axis, x ticks under it; every label inside the canvas
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    const yEvery = Math.max(1, Math.ceil((ay.ticks.length * 13) / (bottom - top)));
    ay.ticks.forEach((t, i) => {
      if (i % yEvery) return;
      const ty = bottom - my(t.at) * (bottom - top);
      ctx.beginPath(); ctx.moveTo(left - 3, ty); ctx.lineTo(left, ty); ctx.stroke();
      ctx.fillText(ellipsize(ctx, String(t.label), tickRoom), left - 5, ty);
    });
    ctx.textBaseline = "top";
    const xRoom = (W - left - right) / Math.max(1, ax.ticks.length);
    const xEvery = Math.max(1, Math.ceil(Math.max(...ax.ticks.map((t) => ctx.measureText(String(t.label)).width), 1) / Math.max(20, xRoom - 6)));
    ax.ticks.forEach((t, i) => {
      if (i % xEvery) return;
      const tx = left + mx(t.at) * (W - left - right);
      ctx.beginPath(); ctx.moveTo(tx, bottom); ctx.lineTo(tx, bottom + 3); ctx.stroke();
      const label = ellipsize(ctx, String(t.label), xRoom * xEvery - 6);
      const w = ctx.measureText(label).width;
      ctx.textAlign = "left";
      ctx.fillText(label, Math.min(Math.max(1, tx - w / 2), W - w - 1), bottom + 5);
    });
    // axis titles, cut to fit, with the scale when it is not linear
    const note = (a) => (a.kind === "log" ? " (log)" : a.kind === "constant" ? " (constant)" : "");
    ctx.fillStyle = muted; ctx.textAlign = "center"; ctx.textBaseline = "alphabetic";
    ctx.fillText(ellipsize(ctx, data.paths[0] + note(ax), W - left - right), left + (W - left - right) / 2, H - 6);
    ctx.save(); ctx.translate(12, top + (bottom - top) / 2); ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle"; ctx.fillText(ellipsize(ctx, data.paths[1] + note(ay), bottom - top), 0, 0); ctx.restore();
    // points, each labelled with its run id on the side that has room
    const labels = [];
    ctx.textBaseline = "middle";
    pts.forEach((r) => {
      const px = X(r.values[0]), py = Y(r.values[1]);
      ctx.fillStyle = r.color; ctx.beginPath(); ctx.arc(px, py, 5, 0, 2 * Math.PI); ctx.fill();
      const w = ctx.measureText(r.id).width;
      const rightSide = px + 8 + w <= W - 2;
      const lx = rightSide ? px + 8 : Math.max(2, px - 8 - w);
      const ly = Math.min(Math.max(py, 7), H - 7);
      ctx.fillStyle = fg; ctx.textAlign = "left";
      haloText(ctx, r.id, lx, ly, bg);
      labels.push({ id: r.id, x: lx, y: ly, width: w, px, py });
    });
    canvas.dataset.axes = JSON.stringify([ax, ay].map((a) => ({ path: a.path, kind: a.kind, categories: a.categories || null, ticks: a.ticks.map((t) => String(t.label)) })));
    canvas.dataset.labels = JSON.stringify(labels);
    canvas.dataset.width = String(W);
    SC.set(canvas, { data, labels });
  }
  const SC = new WeakMap();

  function initScatterHover(canvas) {
    if (canvas.dataset.hoverReady) return;
    canvas.dataset.hoverReady = "1";
    canvas.addEventListener("pointermove", (ev) => {
      const st = SC.get(canvas);
      if (!st) return;
      const rect = canvas.getBoundingClientRect();
      const px = ev.clientX - rect.left, py = ev.clientY - rect.top;
      const hit = st.labels.find((l) => Math.hypot(l.px - px, l.py - py) <= 7);
      if (!hit) { canvas.removeAttribute("title"); return; }
      const run = st.data.runs.find((r) => r.id === hit.id);
      const show = (v) => (typeof v === "number" ? fmt(v) : String(v));
      canvas.title = `${hit.id}: ${st.data.paths[0]} = ${show(run.values[0])}, ${st.data.paths[1]} = ${show(run.values[1])}`;
    });
  }

  /* ---------- forms ---------- */
  function submit(form) {
    const params = new URLSearchParams(new FormData(form));
    const kind = form.dataset.kind;
    const metric = kind === "parallel" ? (params.get("metric") || "").trim() : "";
    const paths = kind === "scatter" ? [params.get("x"), params.get("y")] : params.getAll("params").concat(metric ? [metric] : []);
    const q = new URLSearchParams({ runs: form.dataset.runs, fragment: "values" });
    paths.filter(Boolean).forEach((p) => q.append("p", p));
    const canvas = form.parentElement.querySelector("canvas");
    return fetch(form.action + "?" + q.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => r.json())
      .then((data) => {
        canvas.hidden = false;
        applyColors(data);
        if (kind === "scatter") { initScatterHover(canvas); drawScatter(canvas, data); }
        else {
          data.metric = metric;
          const old = PC.get(canvas);
          // a brush survives a redraw while its field is still drawn
          const brushes = {};
          if (old) Object.keys(old.brushes).forEach((j) => { const i = data.paths.indexOf(old.data.paths[j]); if (i >= 0) brushes[i] = old.brushes[j]; });
          PC.set(canvas, { data, brushes });
          initBrushing(canvas);
          drawParallel(canvas);
        }
        canvas.dataset.drawn = "1";
      });
  }

  function applyColors(data) {
    document.querySelectorAll("input.run-color[data-run]").forEach((input) => {
      data.runs.forEach((r) => { if (r.id === input.dataset.run) r.color = input.value; });
    });
  }

  function redrawAll() {
    document.querySelectorAll("#parallel-canvas").forEach((c) => { if (PC.get(c)) drawParallel(c); });
    document.querySelectorAll("#scatter-canvas").forEach((c) => { const st = SC.get(c); if (st) drawScatter(c, st.data); });
  }

  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (!form.matches || !form.matches("form.plot-form")) return;
    e.preventDefault();
    submit(form);
  });

  document.addEventListener("change", (e) => {
    const t = e.target;
    if (t.matches && t.matches("form.plot-form[data-kind='parallel'] input[name='params']")) submit(t.form);
  });

  document.addEventListener("click", (e) => {
    if (!e.target.matches || !e.target.matches("button.clear-brushes")) return;
    const canvas = document.getElementById("parallel-canvas");
    const st = canvas && PC.get(canvas);
    if (st) { st.brushes = {}; drawParallel(canvas); }
  });

  document.addEventListener("input", (e) => {
    const t = e.target;
    if (t.matches && t.matches("input.param-filter")) {
      const needle = t.value.trim().toLowerCase();
      t.closest("fieldset").querySelectorAll("li").forEach((li) => { li.hidden = needle && !li.textContent.toLowerCase().includes(needle); });
    }
    if (t.matches && t.matches("input.run-color[data-run]")) {
      [...document.querySelectorAll("#parallel-canvas")].map((c) => PC.get(c)).concat([...document.querySelectorAll("#scatter-canvas")].map((c) => SC.get(c)))
        .forEach((st) => { if (st) applyColors(st.data); });
      redrawAll();
    }
  });

  let timer = null;
  window.addEventListener("resize", () => { clearTimeout(timer); timer = setTimeout(redrawAll, 150); });
  if (window.matchMedia) window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redrawAll);

  function init(root) {
    (root.querySelectorAll ? root : document).querySelectorAll("form.plot-form:not([data-ready])").forEach((form) => {
      form.dataset.ready = "1";
      submit(form);
    });
  }
  document.addEventListener("DOMContentLoaded", () => init(document));
  document.addEventListener("htmx:load", (e) => init(e.target));

  window.RunstorePlots = { axisFor, drawParallel, drawScatter };
})();
