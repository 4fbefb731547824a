/* Runstore page behaviour that HTMX attributes do not cover: table keyboard
 * navigation and selection, column widths, the query editor's suggestion list,
 * and the image gallery slider (compare's parameter plots: plots.js). */
(function () {
  "use strict";

  /* A poller marked data-hold-while-open skips its refresh while one of its <details> is open
   * (a trigger filter would need eval, which the CSP forbids). */
  document.addEventListener("htmx:beforeRequest", (e) => {
    const elt = e.detail.elt;
    const hold = elt && elt.dataset && elt.dataset.holdWhileOpen;
    if (hold && elt.querySelector(`${hold}[open]`)) e.preventDefault();
  });

  /* ---------- run table ---------- */
  function rows(table) { return Array.from(table.querySelectorAll("tbody tr[data-url]")); }

  document.addEventListener("change", (e) => {
    const t = e.target;
    if (t.id === "select-all") {
      const table = t.closest("table");
      table.querySelectorAll('tbody input[name="runs"]').forEach((box) => { box.checked = t.checked; });
    }
    if (t.name === "runs" || t.id === "select-all") updateSelection();
  });

  function updateSelection() {
    const n = document.querySelectorAll('#runs-grid tbody input[name="runs"]:checked').length;
    const btn = document.getElementById("compare-btn");
    if (btn) btn.textContent = n ? `Compare selected (${n})` : "Compare selected";
  }

  document.addEventListener("keydown", (e) => {
    const row = e.target.closest && e.target.closest("#runs-grid tbody tr[data-url]");
    if (!row || e.target.matches("input[type=text], input:not([type]), textarea")) return;
    const all = rows(row.closest("table"));
    const i = all.indexOf(row);
    if (e.key === "ArrowDown" || e.key === "j") { e.preventDefault(); focusRow(all[Math.min(all.length - 1, i + 1)]); }
    else if (e.key === "ArrowUp" || e.key === "k") { e.preventDefault(); focusRow(all[Math.max(0, i - 1)]); }
    else if (e.key === "Enter" && e.target === row) { window.location.href = row.dataset.url; }
    else if (e.key === " " && e.target === row) {
      e.preventDefault();
      const box = row.querySelector('input[name="runs"]');
      box.checked = !box.checked;
      updateSelection();
    }
  });

  function focusRow(row) {
    if (!row) return;
    row.closest("tbody").querySelectorAll("tr[tabindex='0']").forEach((r) => r.setAttribute("tabindex", "-1"));
    row.setAttribute("tabindex", "0");
    row.focus();
  }

  function initTable(root) {
    const table = (root.id === "runs-grid" ? root : root.querySelector && root.querySelector("#runs-grid"));
    if (!table || table.dataset.ready) return;
    table.dataset.ready = "1";
    const first = table.querySelector("tbody tr[data-url]");
    if (first) first.setAttribute("tabindex", "0");
    const project = table.closest("#run-table").dataset.project;
    const key = "runstore:widths:" + project;
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem(key) || "{}"); } catch (err) { saved = {}; }
    table.querySelectorAll("thead th[data-path] .th").forEach((div) => {
      const path = div.parentElement.dataset.path;
      // a saved view's width (data-width) wins over the one this browser remembers
      const width = div.dataset.width || saved[path];
      if (!div.style.width && width) div.style.width = width + "px";
    });
    const record = () => {
      const widths = {};
      const lines = [];
      table.querySelectorAll("thead th[data-path] .th").forEach((div) => {
        if (div.style.width) {
          const px = parseInt(div.style.width, 10);
          widths[div.parentElement.dataset.path] = px;
          lines.push(div.parentElement.dataset.path + "=" + px);
        }
      });
      localStorage.setItem(key, JSON.stringify(Object.assign(saved, widths)));
      const box = document.getElementById("view-widths");
      if (box) box.value = lines.join("\n");
    };
    if ("ResizeObserver" in window) {
      let timer = null;
      const ro = new ResizeObserver((entries) => {
        entries.forEach((en) => { if (en.target.dataset.touched) en.target.style.width = Math.round(en.contentRect.width) + "px"; });
        clearTimeout(timer);
        timer = setTimeout(record, 300);
      });
      table.querySelectorAll("thead .th").forEach((div) => {
        div.addEventListener("mousedown", () => { div.dataset.touched = "1"; });
        ro.observe(div);
      });
    }
    record();
    updateSelection();
    // drag a header onto another to move the column there (the ‹ › links do the same from the keyboard)
    let dragged = null;
    table.querySelectorAll("thead th[data-path]").forEach((th) => {
      th.draggable = true;
      th.addEventListener("dragstart", (e) => { dragged = th.dataset.path; e.dataTransfer.effectAllowed = "move"; });
      th.addEventListener("dragover", (e) => { if (dragged) { e.preventDefault(); th.classList.add("drop-target"); } });
      th.addEventListener("dragleave", () => th.classList.remove("drop-target"));
      th.addEventListener("drop", (e) => {
        e.preventDefault();
        th.classList.remove("drop-target");
        const target = th.dataset.path;
        if (!dragged || dragged === target) return;
        const paths = Array.from(table.querySelectorAll("thead th[data-path]")).map((h) => h.dataset.path).filter((p) => p !== dragged);
        paths.splice(paths.indexOf(target), 0, dragged);
        const params = new URLSearchParams(window.location.search);
        params.delete("c");
        paths.forEach((p) => params.append("c", p));
        const url = window.location.pathname + "?" + params.toString();
        htmx.ajax("GET", url, { target: "#run-table", swap: "outerHTML" }).then(() => history.pushState({}, "", url));
        dragged = null;
      });
    });
    table.querySelectorAll(".group-toggle").forEach((btn) => btn.addEventListener("click", () => {
      const body = btn.closest("tbody");
      const open = btn.getAttribute("aria-expanded") === "true";
      btn.setAttribute("aria-expanded", String(!open));
      btn.textContent = open ? "▸" : "▾";
      body.querySelectorAll("tr:not(.group-head)").forEach((r) => { r.hidden = open; });
    }));
  }

  /* ---------- query editor: suggestions as you type ---------- */
  function initQuery(root) {
    const input = (root.querySelector && root.querySelector("#query")) || null;
    if (!input || input.dataset.ready) return;
    input.dataset.ready = "1";
    const list = document.getElementById("query-suggestions");
    const url = input.dataset.suggestUrl;
    if (!url || !list) return;
    let items = [], active = -1, timer = null, controller = null, replaceFrom = null, replaceTo = null;

    function close() { list.hidden = true; input.setAttribute("aria-expanded", "false"); active = -1; }
    function show(suggestions) {
      items = suggestions;
      list.innerHTML = "";
      suggestions.forEach((s, i) => {
        const li = document.createElement("li");
        li.id = "qs-" + i;
        li.setAttribute("role", "option");
        li.textContent = s.label || s.text;
        if (s.detail) { const small = document.createElement("small"); small.textContent = " " + s.detail; li.appendChild(small); }
        li.addEventListener("mousedown", (ev) => { ev.preventDefault(); accept(i); });
        list.appendChild(li);
      });
      list.hidden = suggestions.length === 0;
      input.setAttribute("aria-expanded", String(!list.hidden));
      active = -1;
    }
    function highlight(i) {
      active = i;
      list.querySelectorAll("li").forEach((li, j) => li.setAttribute("aria-selected", String(j === i)));
      if (i >= 0) input.setAttribute("aria-activedescendant", "qs-" + i); else input.removeAttribute("aria-activedescendant");
    }
    function accept(i) {
      const s = items[i];
      if (!s) return;
      const start = replaceFrom != null ? replaceFrom : input.selectionStart;
      const end = replaceTo != null ? replaceTo : input.selectionStart;
      const value = input.value;
      const text = s.insert != null ? s.insert : s.text;
      input.value = value.slice(0, start) + text + value.slice(end);
      const caret = start + text.length;
      input.setSelectionRange(caret, caret);
      close();
      input.focus();
      request();
    }
    function request() {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (controller) controller.abort();
        controller = new AbortController();
        const params = new URLSearchParams({ text: input.value, cursor: String(input.selectionStart) });
        fetch(url + (url.includes("?") ? "&" : "?") + params.toString(), { credentials: "same-origin", signal: controller.signal, headers: { Accept: "application/json" } })
          .then((r) => r.json())
          .then((json) => {
            replaceFrom = json.from; replaceTo = json.to;
            show((json.items || []).slice(0, 20));
          })
          .catch(() => {});
      }, 120);
    }
    input.addEventListener("input", request);
    input.addEventListener("focus", request);
    input.addEventListener("blur", () => setTimeout(close, 100));
    input.addEventListener("keydown", (e) => {
      if (list.hidden) return;
      if (e.key === "ArrowDown") { e.preventDefault(); highlight(Math.min(items.length - 1, active + 1)); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight(Math.max(0, active - 1)); }
      else if ((e.key === "Enter" || e.key === "Tab") && active >= 0) { e.preventDefault(); accept(active); }
      else if (e.key === "Escape") { close(); }
    });
  }

  // offset pages may overlap when runs are added meanwhile: a row already shown is not shown twice
  function dropRepeatedRow(el) {
    if (el.matches && el.matches("#runs-grid tr[id^='row-']") && document.querySelectorAll("#runs-grid tr[id='" + el.id + "']").length > 1) el.remove();
  }

  // the table's poller asks for every running row on the page, also those that scrolling or
  // "load more" added; with none running it sends nothing
  document.addEventListener("htmx:configRequest", (e) => {
    if (!e.detail.elt || e.detail.elt.id !== "live-poll") return;
    const rows = Array.from(document.querySelectorAll("#runs-grid tr.running"));
    const onScreen = (row) => { const r = row.getBoundingClientRect(); return r.bottom > 0 && r.top < window.innerHeight; };
    rows.sort((a, b) => onScreen(b) - onScreen(a));  // those on screen first (the server takes 100)
    const ids = rows.slice(0, 100).map((row) => row.querySelector("input[name=runs]").value);
    if (!ids.length) { e.preventDefault(); return; }
    e.detail.parameters.live = ids.join(",");
  });

  // run colours come as data-color: the page's CSP allows no style attributes. A colour the user
  // picked (colors= in the address) wins over the one a fragment was rendered with: a fragment asked
  // for before the pick may arrive after it.
  function initSwatches(root) {
    const chosen = new Map((new URLSearchParams(window.location.search).get("colors") || "")
      .split(",").filter(Boolean).map((e) => e.split(":")));
    (root.querySelectorAll ? root : document).querySelectorAll(".swatch[data-color]").forEach((el) => {
      const picked = el.dataset.run && chosen.get(el.dataset.run);
      if (picked && /^[0-9a-f]{6}$/i.test(picked)) el.dataset.color = "#" + picked.toLowerCase();
      el.style.backgroundColor = el.dataset.color;
    });
  }

  function init(root) { dropRepeatedRow(root); initTable(root); initQuery(root); initSwatches(root); }
  document.addEventListener("DOMContentLoaded", () => init(document));
  document.addEventListener("htmx:load", (e) => init(e.target));
})();
