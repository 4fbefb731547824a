/* Loaded from <head> before the stylesheets (runs/_chart_prefetch.html): ask for the first
 * charts' data while the page, CSS, uPlot and charts.js load. The chart grid's layout (app.css:
 * main and .card padding, columns of minmax(420px, 1fr) with a .75rem gap, figure padding) gives
 * each plot's pixel width before the page is laid out; charts.js takes a prefetched response
 * whose width is within its tolerance, else fetches anew.
 *
 * data-fill (the dashboard): every chart that fits the window (rows of about 290 px), not only the
 * first four, at most four requests at a time so the page's own CSS and scripts still get a
 * connection; data-format is passed on (format=columns), and data-group asks for that many charts in
 * one request (runs.views.dashboard.DashboardChartDataView). */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.dataset.paths) return;
  if (/[?&]x=(time|relative)(&|$)/.test(window.location.search)) return; // charts on a time axis ask for their own data
  var paths = JSON.parse(script.dataset.paths);
  var rem = 16, content = document.documentElement.clientWidth - 4 * rem - 2;
  var columns = Math.max(1, Math.floor((content + 0.75 * rem) / (420 + 0.75 * rem)));
  var width = Math.max(100, Math.round((content - 0.75 * rem * (columns - 1)) / columns - rem - 2));
  var store = window.RunstoreChartPrefetch = window.RunstoreChartPrefetch || {};
  var count = script.dataset.fill ? columns * Math.max(1, Math.ceil(window.innerHeight / 290)) : Math.min(4, 2 * columns);
  var waiting = [], running = 0;

  function next() {
    while (running < 4 && waiting.length) {
      var job = waiting.shift();
      running++;
      fetch(job.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error("chart data: HTTP " + r.status); return r.json(); })
        .then(job.resolve, job.reject)
        .then(function () { running--; next(); });
    }
  }

  // data-group (the dashboard): up to that many charts per request, whose answer holds one chart's
  // answer per path ({"charts": [...]}); each chart still finds its own promise in the store.
  var wanted = paths.slice(0, count), group = Math.max(1, parseInt(script.dataset.group || "1", 10));
  for (var at = 0; at < wanted.length; at += group) {
    var some = wanted.slice(at, at + group);
    var params = new URLSearchParams({ runs: script.dataset.runs, buckets: String(width) });
    some.forEach(function (path) { params.append("path", path); });
    if (script.dataset.runs.split(",").length > 3) params.set("envelope", "0");
    if (script.dataset.format) params.set("format", script.dataset.format);
    var job = { url: script.dataset.chartUrl + "?" + params.toString() };
    var promise = new Promise(function (resolve, reject) { job.resolve = resolve; job.reject = reject; });
    promise.catch(function () {});
    waiting.push(job);
    some.forEach(function (path, i) {
      var mine = some.length > 1 ? promise.then(function (data) { return data.charts[i]; }) : promise;
      mine.catch(function () {});
      store[script.dataset.chartUrl + "|" + script.dataset.runs + "|" + path] = { buckets: width, promise: mine };
    });
  }
  next();
})();
