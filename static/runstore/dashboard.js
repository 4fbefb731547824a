/* Project dashboard: the charts of a saved view over the runs the table's filter selects.
 *
 * The figures come from the page (its settings in #dashboard-settings); this file gives them
 * their plot areas once charts.js knows the view's x axis, log scale and smoothing, so each chart
 * loads once, with one request for all its runs. Adding or removing a chart, or changing a
 * control, updates the address (so a reload shows the same dashboard) and the JSON the
 * "Save view" form sends.
 */
(function () {
  "use strict";
  const grid = document.getElementById("dashboard-grid");
  if (!grid) return;
  const initial = JSON.parse(document.getElementById("dashboard-settings").textContent);
  const xSel = document.getElementById("dash-x");
  const logBox = document.getElementById("dash-log");
  const smoothIn = document.getElementById("dash-smooth");
  const openBox = document.getElementById("open-dashboard");

  function paths() { return Array.from(grid.querySelectorAll("figure.chart")).map((f) => f.dataset.path); }

  function current() {
    return {
      charts: paths(),
      x: xSel.value,
      log: logBox.checked,
      smooth: parseFloat(smoothIn.value) || 0,
      color_by: initial.color_by || "",
      open: openBox && openBox.checked ? "dashboard" : "table",
    };
  }

  function setHidden(form, name, values) {
    if (!form) return;
    form.querySelectorAll('input[type=hidden][name="' + name + '"]').forEach((el) => el.remove());
    values.forEach((v) => {
      const input = document.createElement("input");
      input.type = "hidden"; input.name = name; input.value = v;
      form.appendChild(input);
    });
  }

  /* the address, the save form's JSON and the GET forms all carry the dashboard as it is now */
  function persist() {
    const now = current();
    const json = document.getElementById("dashboard-json");
    if (json) json.value = JSON.stringify(now);
    const url = new URL(window.location.href);
    url.searchParams.delete("chart");
    now.charts.forEach((p) => url.searchParams.append("chart", p));
    if (!now.charts.length) url.searchParams.set("chart", "");
    const extra = { x: now.x !== "step" ? now.x : "", log: now.log ? "1" : "", smooth: now.smooth ? String(now.smooth) : "" };
    Object.entries(extra).forEach(([k, v]) => { if (v) url.searchParams.set(k, v); else url.searchParams.delete(k); });
    history.replaceState(history.state, "", url.toString());
    ["dashboard-filter", "color-by"].forEach((id) => {
      const form = document.getElementById(id);
      setHidden(form, "chart", now.charts.length ? now.charts : [""]);
      Object.entries(extra).forEach(([k, v]) => setHidden(form, k, v ? [v] : []));
    });
  }

  function plotOf(fig) {
    if (!fig.querySelector(".plot")) {
      const plot = document.createElement("div");
      plot.className = "plot";
      plot.setAttribute("aria-label", "chart of " + fig.dataset.path);
      fig.appendChild(plot);
    }
  }

  function figure(path) {
    const fig = document.createElement("figure");
    fig.className = "chart";
    fig.dataset.path = path;
    const cap = document.createElement("figcaption");
    const title = document.createElement("span");
    title.textContent = path;
    const remove = document.createElement("button");
    remove.type = "button"; remove.className = "link remove-chart"; remove.dataset.path = path;
    remove.textContent = "remove"; remove.setAttribute("aria-label", "remove chart " + path);
    cap.append(title, " ", remove);
    fig.appendChild(cap);
    plotOf(fig);
    return fig;
  }

  function start() {
    if (!window.RunstoreCharts || typeof uPlot === "undefined") { setTimeout(start, 10); return; }
    const cs = window.RunstoreCharts.settings;
    cs.x = initial.x; cs.log = !!initial.log; cs.smooth = initial.smooth || 0;
    grid.querySelectorAll("figure.chart").forEach(plotOf);
    window.RunstoreCharts.scan(grid);
  }

  document.getElementById("add-chart").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = e.target.querySelector("input[name=path]");
    const path = input.value.trim();
    if (!path) return;
    const existing = Array.from(grid.querySelectorAll("figure.chart")).find((f) => f.dataset.path === path);
    if (existing) { existing.scrollIntoView({ block: "nearest" }); input.value = ""; return; }
    const empty = document.getElementById("no-charts");
    if (empty) empty.remove();
    const fig = figure(path);
    grid.appendChild(fig);
    window.RunstoreCharts.scan(grid);
    input.value = "";
    persist();
  });

  grid.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest(".remove-chart");
    if (!button) return;
    const fig = button.closest("figure.chart");
    const state = window.RunstoreCharts.charts.get(fig);
    if (state) {
      if (state.u) state.u.destroy();
      if (state.timer) clearInterval(state.timer);
      window.RunstoreCharts.charts.delete(fig);
    }
    fig.remove();
    persist();
  });

  [xSel, logBox, smoothIn, openBox].forEach((el) => { if (el) el.addEventListener("change", persist); });
  start();
})();
