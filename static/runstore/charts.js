/* Runstore charts: uPlot line charts of downsampled float series.
 *
 * Every <figure class="chart" data-path> inside a .chart-grid (data-chart-url,
 * data-runs, data-running, optional data-colors) becomes a chart when it scrolls
 * into view. The server cuts the series into about one bucket per pixel and sends
 * min/max/avg per bucket: the avg is the line, min..max a band, so spikes stay
 * visible. Dragging zooms and fetches finer buckets for the range; double click
 * resets. A running run's charts poll for steps after the last one they have.
 */
(function () {
  "use strict";
  // the 50 run colours of runs/palette.py (any two differ by a CIE76 ΔE of at least 20)
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#5500ff", "#ff00ee", "#0055ee", "#666611", "#ff0077", "#007755", "#8811aa", "#ff8888", "#dd9955", "#992255", "#99bb77", "#0088ff", "#994400", "#ee11aa", "#00cc00", "#dd77ff", "#aaaadd", "#9944ff", "#ff0000", "#226611", "#00bb88", "#996688", "#117788", "#dd9900", "#00bbff", "#992288", "#77bb00", "#bb4444", "#3355aa", "#779922", "#ff6699", "#ee7744", "#aa9966", "#dd99aa", "#66aa99", "#aa9933", "#6644bb", "#0033ee", "#9999ff", "#cc00ff"];
  const LIVE_MS = 5000;
  const MAX_PARALLEL = 4;
  const settings = fromAddress();
  const charts = new Map(); // figure -> state
  let inFlight = 0;
  const queue = [];

  /* the x axis, log scale and smoothing are kept in the address (x=, log=1, smooth=), so a reload
     or a shared link shows the charts as they were */
  function fromAddress() {
    const params = new URLSearchParams(window.location.search);
    const x = params.get("x");
    const smoothing = parseFloat(params.get("smooth"));
    return {
      x: ["step", "time", "relative"].includes(x) ? x : "step",
      log: params.get("log") === "1",
      smooth: smoothing > 0 && smoothing < 1 ? smoothing : 0,
    };
  }

  function toAddress() {
    const url = new URL(window.location.href);
    const kept = { x: settings.x !== "step" ? settings.x : "", log: settings.log ? "1" : "", smooth: settings.smooth ? String(settings.smooth) : "" };
    Object.entries(kept).forEach(([k, v]) => { if (v) url.searchParams.set(k, v); else url.searchParams.delete(k); });
    if (url.toString() !== window.location.href) history.replaceState(history.state, "", url.toString());
  }

  /* the controls show what the address asked for (the page renders its own settings otherwise) */
  function showSettings(root) {
    const asked = new URLSearchParams(window.location.search);
    (root || document).querySelectorAll(".chart-controls [data-control]").forEach((el) => {
      const c = el.dataset.control;
      if (!asked.has(c)) return;
      if (c === "x") el.value = settings.x;
      else if (c === "log") el.checked = settings.log;
      else if (c === "smooth") el.value = String(settings.smooth);
    });
  }

  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function gridOf(fig) { return fig.closest(".chart-grid"); }

  /* the x axis of a chart: the page's choice of step, wall-clock "time" or "relative" time since each
     run's start; a time choice applies to every chart (training and monitoring on one time axis), and
     on "step" a grid may keep its own axis (monitoring charts stay on wall-clock time) */
  function xOf(fig) { return settings.x !== "step" ? settings.x : gridOf(fig).dataset.x || "step"; }
  function isTime(x) { return x === "time" || x === "relative"; }

  function schedule(task) {
    return new Promise((resolve, reject) => {
      queue.push({ task, resolve, reject });
      pump();
    });
  }
  function pump() {
    while (inFlight < MAX_PARALLEL && queue.length) {
      const { task, resolve, reject } = queue.shift();
      inFlight++;
      task().then(resolve, reject).finally(() => { inFlight--; pump(); });
    }
  }

  function fetchData(fig, opts) {
    const grid = gridOf(fig);
    const plot = fig.querySelector(".plot");
    const width = Math.max(100, Math.round(plot.clientWidth || 400));
    const store = window.RunstoreChartPrefetch || {};
    const key = grid.dataset.chartUrl + "|" + grid.dataset.runs + "|" + fig.dataset.path;
    const early = store[key];
    if (early) {
      // the page's head asked for the first view already (runs/_chart_prefetch.html)
      delete store[key];
      const plain = opts.from == null && opts.to == null && !opts.buckets && xOf(fig) === "step";
      if (plain && early.buckets >= width * 0.75 && early.buckets <= width * 1.5) {
        return early.promise.catch(() => fetchData(fig, opts));
      }
    }
    const params = new URLSearchParams({ path: fig.dataset.path, runs: grid.dataset.runs, buckets: String(opts.buckets || width) });
    const xAxis = xOf(fig);
    if (xAxis === "time" || xAxis === "relative") params.set("x", xAxis); // relative: seconds since the run's start
    // min/max envelopes are drawn for up to three runs; more runs get their mean lines only
    if (grid.dataset.runs.split(",").length > 3) params.set("envelope", "0");
    if (opts.from != null) params.set("from_step", String(Math.floor(opts.from)));
    if (opts.to != null) params.set("to_step", String(Math.ceil(opts.to)));
    if (grid.dataset.format === "columns" && xAxis === "step") params.set("format", "columns");
    return schedule(() => fetch(grid.dataset.chartUrl + "?" + params.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => { if (!r.ok) throw new Error("chart data: HTTP " + r.status); return r.json(); }));
  }

  let colorMap = { text: null, map: {} }; // the last parsed data-colors: a chart of 100 runs parses it once
  function colorFor(grid, id, index) {
    const text = grid.dataset.colors;
    if (text) {
      if (colorMap.text !== text) {
        try { colorMap = { text, map: JSON.parse(text) || {} }; } catch (e) { colorMap = { text, map: {} }; }
      }
      if (colorMap.map[id]) return colorMap.map[id];
    }
    return PALETTE[index % PALETTE.length];
  }

  /* format=columns (the dashboard's charts of many runs): the grid comes once and each run's values
     are aligned with it. Each run gets the per-run lists build() reads; a run with a point in every
     bucket shares the grid's own arrays, so build() lays the runs side by side without a join. */
  function expand(json) {
    if (json.format !== "columns") return json;
    const n = json.x.length;
    json.runs.forEach((run) => {
      if (!run.avg) { run.steps = []; return; }
      const counts = run.counts || json.counts;
      let keep = null;
      for (let i = 0; i < n; i++) if (!counts[i]) { keep = []; break; }
      if (keep) for (let i = 0; i < n; i++) if (counts[i]) keep.push(i);
      const pick = (a) => (a && keep ? keep.map((i) => a[i]) : a);
      run.steps = pick(json.x);
      run.avg = pick(run.avg);
      if (run.min) { run.min = pick(run.min); run.max = pick(run.max); }
      if (counts.some((c) => c > 1)) {
        run.first_steps = pick(json.first_steps); run.last_steps = pick(json.last_steps); run.counts = pick(counts);
      } else {
        delete run.counts;
      }
    });
    return json;
  }

  /* One number format for ticks, hover values and the table (runs/table.py fmt_number):
     `digits` significant digits (6 by default), exponent notation below 1e-3 and from 1e6. */
  function fmtNum(v, digits, exp) {
    if (v == null) return "—";
    if (typeof v !== "number" || !isFinite(v)) return String(v);
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (exp == null) exp = a >= 1e6 || a < 1e-3;
    if (exp) {
      const [m, e] = v.toExponential(Math.max(0, (digits || 4) - 1)).split("e");
      const mant = m.includes(".") ? m.replace(/0+$/, "").replace(/\.$/, "") : m;
      const n = parseInt(e, 10);
      return mant + "e" + (n < 0 ? "-" : "+") + String(Math.abs(n)).padStart(2, "0");
    }
    return String(+v.toPrecision(digits || 6));
  }

  /* Tick labels: the fewest significant digits (at least 2) that tell every tick from its neighbours,
     one notation for the whole axis. */
  function fmtTicks(splits, log) {
    const finite = splits.filter((v) => v != null && isFinite(v));
    if (!finite.length) return splits.map((v) => (v == null ? null : fmtNum(v)));
    const big = Math.max(...finite.map(Math.abs));
    // a log axis spans decades: each tick picks its notation; a linear one shares the largest tick's
    const exp = log ? null : big >= 1e6 || (big < 1e-3 && big > 0);
    for (let d = 2; d <= 15; d++) {
      const labels = splits.map((v) => (v == null ? null : fmtNum(v, d, v === 0 ? null : exp)));
      let distinct = true;
      const shown = labels.filter((l, i) => l != null && splits[i] != null);
      const values = splits.filter((v, i) => v != null && labels[i] != null);
      for (let i = 1; i < shown.length; i++) if (shown[i] === shown[i - 1] && values[i] !== values[i - 1]) { distinct = false; break; }
      if (distinct) return labels;
    }
    return splits.map((v) => (v == null ? null : fmtNum(v, 15, exp)));
  }

  function tickDurations(state, splits) {
    const labels = splits.map((v) => (v == null ? null : fmtDuration(v)));
    state.fig.dataset.xTicks = JSON.stringify(labels.filter((l) => l != null));
    return labels;
  }

  /* the labels drawn on the canvas, also kept on the figure (data-x-ticks, data-y-ticks) for tests and tools */
  function ticks(state, axis, splits) {
    const labels = fmtTicks(splits, axis === "y" && settings.log);
    state.fig.dataset[axis + "Ticks"] = JSON.stringify(labels.filter((l) => l != null));
    return labels;
  }

  /* Hover: a point that stands for a bucket of steps says so (its step range and point count on the
     x line, min/avg/max on each run's line); once zoomed in to single points they show as they are. */
  function bucketAt(run, xs, x) {
    let a = 0, b = xs.length - 1;
    while (a <= b) {
      const m = (a + b) >> 1;
      if (xs[m] === x) return m;
      if (xs[m] < x) a = m + 1; else b = m - 1;
    }
    return -1;
  }

  function bucketOf(u, si, i) {
    const meta = u._runstoreMeta && u._runstoreMeta[si];
    if (!meta || i == null) return null;
    const k = bucketAt(meta.run, meta.xs, u.data[0][i]);
    if (k < 0) return null;
    const run = meta.run;
    const grouped = run.counts && run.counts[k] > 1;
    return {
      first: grouped ? run.first_steps[k] : run.steps[k],
      last: grouped ? run.last_steps[k] : run.steps[k],
      count: grouped ? run.counts[k] : 1,
      min: run.min ? run.min[k] : null,
      avg: run.avg[k],
      max: run.max ? run.max[k] : null,
    };
  }

  const STEP_FMT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function hoverX(u, i) {
    if (i == null) return "--";
    const metas = u._runstoreMeta || [];
    for (let si = 1; si < metas.length; si++) {
      const b = bucketOf(u, si, i);
      if (!b) continue;
      if (b.count > 1) return STEP_FMT.format(b.first) + "–" + STEP_FMT.format(b.last) + " (bucket of " + b.count + " points)";
      return (isTime(u._runstoreX) ? fmtX(u._runstoreX, u.data[0][i]) + " · step " : "") + STEP_FMT.format(b.first);
    }
    return isTime(u._runstoreX) ? fmtX(u._runstoreX, u.data[0][i]) : fmtNum(u.data[0][i]);
  }

  /* "relative" x values are seconds since the run's start: 45s, 12m 05s, 3h 02m, 2d 04h */
  function fmtDuration(sec) {
    if (sec == null || !isFinite(sec)) return "—";
    const sign = sec < 0 ? "-" : "";
    let s = Math.abs(sec);
    if (s < 60) return sign + (s < 10 && s % 1 ? s.toFixed(1) : Math.round(s)) + "s";
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    s = Math.floor(s % 60);
    const two = (n) => String(n).padStart(2, "0");
    if (d) return sign + d + "d " + two(h) + "h";
    if (h) return sign + h + "h " + two(m) + "m";
    return sign + m + "m " + two(s) + "s";
  }

  function fmtX(x, v) {
    if (x === "time") return new Date(v * 1000).toLocaleString();
    if (x === "relative") return "+" + fmtDuration(v);
    return fmtNum(v);
  }

  /* On a time axis every chart of a page spans the same interval: from the runs' start to their end
     (or further where points lie outside it), so a training metric reads against a system metric.
     Runs of the chart-data endpoint carry start/end (epoch seconds); "relative" counts from each start. */
  function timeRange(state, x, min, max) {
    if (state.range) return [min, max];
    let lo = null, hi = null;
    state.runs.forEach((r) => {
      if (r.start == null || r.end == null) return;
      const off = x === "relative" ? r.start : 0;
      lo = lo == null ? r.start - off : Math.min(lo, r.start - off);
      hi = hi == null ? r.end - off : Math.max(hi, r.end - off);
    });
    if (lo == null || hi == null || hi <= lo) return [min, max];
    // points stamped far outside the runs' lifetime (imported, or a skewed clock): their own range
    const slack = Math.max(60, 0.05 * (hi - lo));
    if (min != null && (min < lo - slack || max > hi + slack)) return [min, max];
    return [Math.min(lo, min ?? lo), Math.max(hi, max ?? hi)];
  }

  function hoverValue(u, v, si, i) {
    const b = bucketOf(u, si, i);
    if (!b || b.count <= 1 || v == null) return fmtNum(v);
    if (b.min == null || b.max == null) return "avg " + fmtNum(v);
    return "min " + fmtNum(b.min) + " · avg " + fmtNum(v) + " · max " + fmtNum(b.max);
  }

  function axisSize(u, values, axisIdx, cycleNum) {
    void cycleNum;
    if (!values) return 60;
    const longest = values.reduce((n, v) => Math.max(n, String(v == null ? "" : v).length), 0);
    return Math.max(40, Math.ceil(longest * 7.4) + 22);
  }

  function smooth(values, alpha) {
    if (!alpha) return values;
    const out = new Array(values.length);
    let s = null;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v == null) { out[i] = null; continue; }
      s = s == null ? v : alpha * s + (1 - alpha) * v;
      out[i] = s;
    }
    return out;
  }

  function positive(values) {
    return values.map((v) => (v != null && v > 0 ? v : null));
  }

  function withAlpha(hex, a) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
  }

  /* uPlot's columns from the per-run bucket lists; several runs are joined on x. */
  function build(state) {
    const grid = gridOf(state.fig);
    const runs = state.runs.filter((r) => r.steps && r.steps.length);
    const single = state.runs.length === 1;
    const tables = [];
    const x = xOf(state.fig);
    const series = [{ label: x, value: (u, v, si, i) => hoverX(u, i) }];
    const bands = [];
    const meta = []; // series index -> { run, xs } of a run's mean line
    const order = new Map(state.runs.map((r, i) => [r, i]));
    runs.forEach((run, index) => {
      const color = colorFor(grid, run.id, order.get(run));
      const xs = (x === "time" || x === "relative") && run.times ? run.times : run.steps;
      let avg = smooth(run.avg, settings.smooth);
      let lo = run.min, hi = run.max;
      if (settings.log) { avg = positive(avg); lo = positive(lo); hi = positive(hi); }
      const withBand = single || state.runs.length <= 3;
      if (withBand) {
        tables.push([xs, lo, hi, avg]);
        const base = series.length;
        series.push({ label: run.id + " min", stroke: "transparent", width: 0, points: { show: false }, spanGaps: true });
        series.push({ label: run.id + " max", stroke: "transparent", width: 0, points: { show: false }, spanGaps: true });
        meta[series.length] = { run, xs };
        series.push({ label: single ? state.fig.dataset.path : run.id, stroke: color, width: 1.5, points: { show: false }, spanGaps: true, value: hoverValue });
        bands.push({ series: [base + 1, base], fill: withAlpha(color, 0.18) });
      } else {
        tables.push([xs, avg]);
        meta[series.length] = { run, xs };
        // whole-pixel lines where many runs overlay: a 1.25 px stroke costs Chromium's rasteriser about
        // twice as much (100 runs x 20 charts of a dashboard: ~600 -> ~330 ms of drawing)
        series.push({ label: run.id, stroke: color, width: state.runs.length > 12 ? 1 : 1.25, points: { show: false }, spanGaps: true, value: hoverValue });
      }
      void index;
    });
    let data;
    if (tables.length === 0) data = [[]];
    else if (tables.length === 1) data = tables[0];
    else if (tables.every((t) => t[0] === tables[0][0])) data = [tables[0][0]].concat(...tables.map((t) => t.slice(1)));
    else data = uPlot.join(tables);
    return { data, series, bands, meta };
  }

  function options(state, built, width) {
    const x = xOf(state.fig);
    const fg = cssVar("--muted", "#5b6470");
    const line = cssVar("--line", "#d8dde3");
    const axis = { stroke: fg, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
    return {
      width,
      height: 220,
      series: built.series,
      bands: built.bands,
      scales: {
        x: isTime(x) ? { time: x === "time", range: (u, min, max) => timeRange(state, x, min, max) } : { time: false },
        y: settings.log ? { distr: 3 } : {},
      },
      axes: [
        Object.assign(x === "time" ? {} : { values: (u, splits) => (x === "relative" ? tickDurations(state, splits) : ticks(state, "x", splits)) }, axis),
        // on a time axis the y axes take one width (unless their labels need more), so the plot areas
        // of stacked charts start and end at the same pixel and one instant lines up down the page
        Object.assign({ size: isTime(x) ? (...a) => Math.max(72, axisSize(...a)) : axisSize, values: (u, splits) => ticks(state, "y", splits) }, axis),
      ],
      legend: { show: state.runs.length <= 12, live: true },
      // on a time axis the cursor moves on every chart at once, at the same instant
      cursor: Object.assign({ drag: { x: true, y: false, setScale: false } }, isTime(x) ? { sync: { key: "runstore-" + x } } : {}),
      hooks: {
        setSelect: [(u) => {
          if (u.select.width > 4) {
            const lo = u.posToVal(u.select.left, "x");
            const hi = u.posToVal(u.select.left + u.select.width, "x");
            zoom(state, lo, hi);
          }
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        }],
      },
    };
  }

  function render(state) {
    const plot = state.fig.querySelector(".plot");
    const built = build(state);
    const width = Math.max(200, Math.round(plot.clientWidth || 400));
    if (!built.data[0] || built.data[0].length === 0) {
      plot.innerHTML = '<p class="muted">No points in this range.</p>';
      if (state.u) { state.u.destroy(); state.u = null; }
      return;
    }
    if (state.u && state.shape === shapeKey(built)) {
      state.u._runstoreMeta = built.meta;
      state.u._runstoreX = built.series[0].label;
      state.u.setData(built.data);
    } else {
      if (state.u) state.u.destroy();
      plot.innerHTML = "";
      state.u = new uPlot(options(state, built, width), built.data, plot);
      state.u._runstoreMeta = built.meta;
      state.u._runstoreX = built.series[0].label;
      state.shape = shapeKey(built);
      // the envelope's min/max series only draw the band; keep them out of the legend
      const rows = plot.querySelectorAll(".u-legend .u-series");
      built.series.forEach((s, i) => { if (/ (min|max)$/.test(s.label || "") && rows[i]) rows[i].style.display = "none"; });
    }
    state.fig.dataset.drawn = "1";
  }

  function shapeKey(built) {
    return [built.series.length, settings.log, built.series[0].label].join("|");
  }

  function load(state, range) {
    state.range = range || null;
    const opts = range ? { from: range[0], to: range[1] } : {};
    return fetchData(state.fig, opts).then((json) => {
      state.runs = expand(json).runs;
      render(state);
      state.fig.classList.toggle("zoomed", !!range);
    }).catch((err) => {
      state.fig.querySelector(".plot").innerHTML = '<p class="error">' + String(err.message || err) + "</p>";
    });
  }

  function zoom(state, lo, hi) {
    if (xOf(state.fig) !== "step") {
      // time axis: zoom the view; bucket ranges are requested in steps
      const run = state.runs.find((r) => r.times && r.times.length);
      if (!run) return;
      let a = 0, b = run.times.length - 1;
      while (a < b && run.times[a] < lo) a++;
      while (b > a && run.times[b] > hi) b--;
      load(state, [run.steps[a], run.steps[b]]);
      return;
    }
    if (hi - lo < 1) return;
    load(state, [lo, hi]);
  }

  function live(state) {
    if (!state.runs || state.range) return;
    const running = state.runs.some((r) => r.state === "running");
    if (!running) { clearInterval(state.timer); state.timer = null; return; }
    const last = Math.max(...state.runs.map((r) => (r.last_step == null ? -1 : r.last_step)));
    fetchData(state.fig, { from: last + 1, buckets: 200 }).then((json) => {
      json = expand(json);
      let grew = false;
      json.runs.forEach((fresh) => {
        const run = state.runs.find((r) => r.id === fresh.id);
        if (!run) return;
        run.state = fresh.state;
        if (fresh.last_step != null && fresh.last_step > (run.last_step ?? -1) && fresh.steps.length) {
          if (run.counts || fresh.counts) {
            // one side held single points only: give it its trivial ranges before joining
            for (const side of [run, fresh]) {
              if (!side.counts) { side.first_steps = side.steps.slice(); side.last_steps = side.steps.slice(); side.counts = side.steps.map(() => 1); }
            }
          }
          for (const key of ["steps", "min", "max", "avg", "times", "first_steps", "last_steps", "counts"]) {
            if (fresh[key] && run[key]) run[key] = run[key].concat(fresh[key]);
          }
          run.last_step = fresh.last_step;
          run.count = fresh.count;
          grew = true;
        }
      });
      const plot = state.fig.querySelector(".plot");
      const width = Math.max(100, Math.round(plot.clientWidth || 400));
      if (state.runs.some((r) => r.steps && r.steps.length > 2 * width)) load(state, null);
      else if (grew) render(state);
    }).catch(() => {});
  }

  function start(fig) {
    if (charts.has(fig)) return;
    const state = { fig, runs: [], u: null, range: null, timer: null };
    charts.set(fig, state);
    fig.querySelector(".plot").innerHTML = '<p class="muted">loading…</p>';
    fig.addEventListener("dblclick", () => load(state, null));
    load(state, null).then(() => {
      if (gridOf(fig).dataset.running) state.timer = setInterval(() => live(state), LIVE_MS);
    });
  }

  const observer = "IntersectionObserver" in window
    ? new IntersectionObserver((entries) => {
      entries.forEach((e) => { if (e.isIntersecting) { observer.unobserve(e.target); start(e.target); } });
    }, { rootMargin: "300px 0px" })
    : null;

  function scan(root) {
    const scope = root.querySelectorAll ? root : document;
    const found = Array.from(scope.querySelectorAll("figure.chart:not([data-seen])"));
    if (root.matches && root.matches("figure.chart:not([data-seen])")) found.push(root);
    const near = window.innerHeight + 300;
    // a figure still being parsed (no plot yet) is taken by the scan at DOMContentLoaded
    found.filter((fig) => fig.querySelector(".plot")).forEach((fig) => {
      fig.dataset.seen = "1";
      // charts already on screen start now, not a frame later from the observer
      if (!observer || fig.getBoundingClientRect().top < near) start(fig); else observer.observe(fig);
    });
  }

  function redrawAll(refetch) {
    charts.forEach((state) => {
      if (refetch) load(state, state.range && xOf(state.fig) === "step" ? state.range : null);
      else render(state);
    });
  }

  function bindControls() {
    // delegated: this script may run (async) before the controls are parsed
    const inControls = (e) => e.target.closest && e.target.closest(".chart-controls");
    document.addEventListener("change", (e) => {
      if (!inControls(e)) return;
      const c = e.target.dataset.control;
      if (c === "x") { settings.x = e.target.value; redrawAll(true); }
      if (c === "log") { settings.log = e.target.checked; redrawAll(false); }
      if (c === "x" || c === "log" || c === "smooth") toAddress();
    });
    document.addEventListener("input", (e) => {
      if (inControls(e) && e.target.dataset.control === "smooth") { settings.smooth = parseFloat(e.target.value) || 0; redrawAll(false); }
    });
    document.addEventListener("click", (e) => {
      if (inControls(e) && e.target.dataset.control === "reset") charts.forEach((state) => { if (state.range) load(state, null); });
    });
  }

  /* A run's colour input (compare legend): the charts, the swatches and the address (colors=) follow it,
     so a reload or a shared link shows the same colours. */
  function setRunColor(id, color) {
    document.querySelectorAll(".chart-grid[data-colors]").forEach((grid) => {
      let map = {};
      try { map = JSON.parse(grid.dataset.colors) || {}; } catch (e) { /* start afresh */ }
      map[id] = color;
      grid.dataset.colors = JSON.stringify(map);
    });
    document.querySelectorAll(".swatch[data-run]").forEach((el) => {
      if (el.dataset.run === id) { el.dataset.color = color; el.style.backgroundColor = color; }
    });
    const url = new URL(window.location.href);
    const chosen = new Map((url.searchParams.get("colors") || "").split(",").filter(Boolean).map((e) => e.split(":")));
    chosen.set(id, color.replace("#", ""));
    url.searchParams.set("colors", Array.from(chosen, ([k, v]) => k + ":" + v).join(","));
    history.replaceState(history.state, "", url.toString());
    charts.forEach((state) => { if (state.u && gridOf(state.fig).dataset.colors) { state.shape = null; render(state); } });
  }
  document.addEventListener("input", (e) => {
    const el = e.target;
    if (el.matches && el.matches("input.run-color[data-run]") && /^#[0-9a-f]{6}$/i.test(el.value)) setRunColor(el.dataset.run, el.value);
  });

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => charts.forEach((state) => {
      if (!state.u) return;
      const plot = state.fig.querySelector(".plot");
      state.u.setSize({ width: Math.max(200, plot.clientWidth), height: 220 });
    }), 200);
  });

  /* Loaded async on the run page: the charts parsed so far start as soon as this file and uPlot
     are in, without waiting for the other scripts and DOMContentLoaded; the rest start then. */
  function boot() {
    if (typeof uPlot === "undefined") { setTimeout(boot, 10); return; }
    showSettings(document);
    scan(document);
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => { showSettings(document); scan(document); });
  }
  bindControls();
  document.addEventListener("htmx:load", (e) => { if (typeof uPlot !== "undefined") scan(e.target); });
  boot();
  window.RunstoreCharts = { charts, settings, scan, fmtNum, fmtTicks, fmtDuration };
})();
