/* Media of file series (runs/_media.html): the step slider of a grid and the lightbox.
 *
 * The slider picks one of the steps in its data-steps; the server answers the grid's cells for it
 * (each series' file at that step or the nearest lower one). A cell's image opens the lightbox, a
 * modal <dialog>: ←/→ go through the images of the grid and on to the previous/next step,
 * ↑/↓ (and the step buttons) change the step keeping the series, Esc closes, Tab stays inside.
 * No inline script or style: the page's CSP allows neither. */
(function () {
  "use strict";

  function stepsOf(slider) {
    return (slider.dataset.steps || "").split(",").filter((s) => s !== "").map(Number);
  }

  function showStep(form, index) {
    const slider = form.querySelector(".media-slider");
    const steps = stepsOf(slider);
    if (!steps.length) return false;
    const i = Math.max(0, Math.min(steps.length - 1, index));
    const changed = String(i) !== slider.value || form.querySelector(".media-step").value !== String(steps[i]);
    slider.value = String(i);
    form.querySelector(".media-step").value = String(steps[i]);
    form.querySelector(".media-step-out").textContent = String(steps[i]);
    slider.setAttribute("aria-valuetext", "step " + steps[i]);
    if (changed) form.dispatchEvent(new CustomEvent("media-step", { bubbles: false }));
    return changed;
  }

  /* Moves a grid's slider by ``delta`` steps; false at either end. */
  function moveStep(media, delta) {
    const form = media.querySelector(".media-controls");
    if (!form) return false;
    const slider = form.querySelector(".media-slider");
    return showStep(form, parseInt(slider.value, 10) + delta);
  }

  document.addEventListener("input", (e) => {
    const slider = e.target;
    if (!slider.classList || !slider.classList.contains("media-slider")) return;
    showStep(slider.form, parseInt(slider.value, 10));
  });

  document.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest(".media-prev, .media-next, .media-open");
    if (!button) return;
    const media = button.closest(".media");
    if (button.classList.contains("media-open")) {
      const tile = button.closest(".media-tile");
      openLightbox(media, tilesOf(media).indexOf(tile), button);
    } else {
      moveStep(media, button.classList.contains("media-next") ? 1 : -1);
    }
  });

  /* ---------- lightbox ---------- */
  const box = { dialog: null, media: null, index: 0, opener: null, pending: null };

  function tilesOf(media) {
    return Array.from(media.querySelectorAll(".media-tile")).filter((t) => t.dataset.kind !== "absent");
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text) node.textContent = text;
    return node;
  }

  function dialog() {
    if (box.dialog) return box.dialog;
    const d = el("dialog", { class: "media-lightbox", "aria-modal": "true", "aria-labelledby": "media-lightbox-title" });
    const head = el("div", { class: "media-lightbox-head" });
    head.append(el("h2", { id: "media-lightbox-title" }), el("button", { type: "button", class: "media-close", "aria-label": "close" }, "×"));
    const body = el("div", { class: "media-lightbox-body" });
    const nav = el("div", { class: "media-lightbox-nav" });
    nav.append(
      el("button", { type: "button", "data-go": "prev", "aria-label": "previous image" }, "← image"),
      el("button", { type: "button", "data-go": "up", "aria-label": "previous step" }, "↑ step"),
      el("button", { type: "button", "data-go": "down", "aria-label": "next step" }, "step ↓"),
      el("button", { type: "button", "data-go": "next", "aria-label": "next image" }, "image →"),
      el("small", { class: "muted" }, "←/→ images · ↑/↓ steps · Esc closes"),
    );
    d.append(head, body, nav);
    d.addEventListener("click", (e) => {
      if (e.target === d) { d.close(); return; }  // the backdrop
      const go = e.target.closest("[data-go]");
      if (go) navigate(go.dataset.go);
      if (e.target.closest(".media-close")) d.close();
    });
    d.addEventListener("keydown", onKey);
    d.addEventListener("close", () => {
      d.querySelector(".media-lightbox-body").replaceChildren();
      // back to the cell last shown (the one that opened it may have been replaced by a step change)
      const tile = box.media && box.media.isConnected ? tilesOf(box.media)[box.index] : null;
      const candidates = [tile && tile.querySelector(".media-open, audio, video"), box.opener,
        box.media && box.media.querySelector(".media-slider")];
      const back = candidates.find((n) => n && n.isConnected);
      if (back) back.focus();
      box.media = null; box.pending = null;
    });
    document.body.append(d);
    box.dialog = d;
    return d;
  }

  function onKey(e) {
    const keys = { ArrowLeft: "prev", ArrowRight: "next", ArrowUp: "up", ArrowDown: "down", PageUp: "up", PageDown: "down" };
    if (keys[e.key] && !(e.target.matches && e.target.matches("audio, video, input"))) {
      e.preventDefault();
      navigate(keys[e.key]);
    } else if (e.key === "Tab") {
      // the modal dialog makes the page inert; this keeps Tab from leaving for the browser's bar
      const focusable = Array.from(box.dialog.querySelectorAll("button, [href], audio, video, iframe")).filter((n) => !n.hidden);
      if (!focusable.length) return;
      const first = focusable[0], last = focusable[focusable.length - 1];
      if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
      else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
    }
  }

  function openLightbox(media, index, opener) {
    const d = dialog();
    box.media = media; box.opener = opener; box.index = Math.max(0, index);
    render();
    if (!d.open) d.showModal();
    d.querySelector(".media-close").focus();
  }

  function render() {
    const tiles = tilesOf(box.media);
    if (!tiles.length) return;
    box.index = Math.max(0, Math.min(tiles.length - 1, box.index));
    const tile = tiles[box.index];
    const d = box.dialog;
    d.querySelector("#media-lightbox-title").textContent = tile.dataset.title + ` (${box.index + 1} of ${tiles.length})`;
    const body = d.querySelector(".media-lightbox-body");
    const kind = tile.dataset.kind, full = tile.dataset.full;
    let view;
    if (kind === "image") {
      view = el("img", { src: full, alt: tile.dataset.title });
      view.addEventListener("load", () => { if (view.naturalWidth < 256 && view.naturalHeight < 256) view.classList.add("media-pixels"); });
    }
    else if (kind === "html") view = el("iframe", { src: full, sandbox: "", title: tile.dataset.title, referrerpolicy: "no-referrer" });
    else if (kind === "audio") view = el("audio", { src: full, controls: "", "aria-label": tile.dataset.title });
    else if (kind === "video") view = el("video", { src: full, controls: "", "aria-label": tile.dataset.title });
    else if (kind === "file") view = el("a", { href: full, download: "" }, "download");
    else view = el("p", { class: "muted" }, tile.querySelector(".media-empty") ? tile.querySelector(".media-empty").textContent : "nothing to show");
    body.replaceChildren(view);
    const form = box.media.querySelector(".media-controls");
    const slider = form && form.querySelector(".media-slider");
    const at = slider ? parseInt(slider.value, 10) : 0, last = slider ? parseInt(slider.max, 10) : 0;
    d.querySelector("[data-go=prev]").disabled = box.index === 0 && at === 0;
    d.querySelector("[data-go=next]").disabled = box.index === tiles.length - 1 && at === last;
    d.querySelector("[data-go=up]").disabled = at === 0;
    d.querySelector("[data-go=down]").disabled = at === last;
  }

  function navigate(go) {
    if (!box.media) return;
    const tiles = tilesOf(box.media);
    const key = tiles[box.index] && tiles[box.index].dataset.key;
    if (go === "next" && box.index < tiles.length - 1) { box.index += 1; render(); return; }
    if (go === "prev" && box.index > 0) { box.index -= 1; render(); return; }
    const delta = go === "next" || go === "down" ? 1 : -1;
    // after the grid's cells for the new step arrive (htmx:afterSettle) the lightbox shows the wanted one
    box.pending = go === "next" ? { first: true } : go === "prev" ? { last: true } : { key };
    if (!moveStep(box.media, delta)) box.pending = null;
  }

  document.addEventListener("htmx:afterSettle", (e) => {
    if (!box.media || !box.dialog || !box.dialog.open) return;
    if (!box.media.isConnected) {  // the whole block was replaced (compare: another series)
      box.dialog.close();
      return;
    }
    if (!box.media.contains(e.target) && e.target !== box.media) return;
    const tiles = tilesOf(box.media);
    const wanted = box.pending || {};
    if (wanted.first) box.index = 0;
    else if (wanted.last) box.index = tiles.length - 1;
    else {
      const key = wanted.key;
      const found = key ? tiles.findIndex((t) => t.dataset.key === key) : -1;
      if (found >= 0) box.index = found;
    }
    box.pending = null;
    render();
  });
})();
