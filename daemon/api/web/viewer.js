// @ts-check
// The viewer: a result (or a duplicate) large in a modal <dialog>, with its details (path, size,
// pixels, date, camera), Previous/Next (the arrow keys too), "More like this", Open and the
// query's + and −. Escape closes it, and the focus goes back to the card of the picture shown.

import { originalURL, thumbnailURL } from "./api.js";
import { $, $button, find, h } from "./dom.js";
import { fmtBytes, splitPath } from "./format.js";

/** @typedef {import("./types.js").Item} Item */

/**
 * What the viewer shows and what its buttons do.
 * @typedef {object} Source
 * @property {() => Item[]} items the pictures, in order (search results grow with "More results")
 * @property {(item: Item) => void} more "More like this"
 * @property {((item: Item, weight: number) => void) | null} [refine] + and −: add it to the query
 * @property {(() => Promise<boolean>) | null} [loadMore] the next page, at the last picture (true: it came)
 * @property {(index: number) => void} closed the viewer closed on picture number ``index``
 */

/** @type {{source: Source | null, index: number}} */
const open = { source: null, index: 0 };

const dialog = () => find("#viewer", HTMLDialogElement);

/**
 * Open the viewer on picture number ``index`` of ``source``.
 * @param {Source} source
 * @param {number} index
 */
export function openViewer(source, index) {
  open.source = source;
  show(index);
  if (!dialog().open) dialog().showModal();
  $button("#viewer-close").focus();
}

/** @param {number} index */
function show(index) {
  const source = open.source;
  if (!source) return;
  const items = source.items();
  open.index = Math.max(0, Math.min(items.length - 1, index));
  const item = items[open.index];
  const { name, folder } = splitPath(item.image);
  $("#viewer-title").textContent = name;
  $("#viewer-count").textContent = `${open.index + 1} of ${items.length}`;
  picture(item);
  // each name with its value, so that a narrow screen wraps between the pairs, not inside one
  $("#viewer-details").replaceChildren(...details(item, folder).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
  find("#viewer-open", HTMLAnchorElement).href = originalURL(item);
  $button("#viewer-prev").disabled = open.index === 0;
  $button("#viewer-next").disabled = open.index === items.length - 1 && !source.loadMore;
  $("#viewer-refine").hidden = !source.refine;
  const next = items[open.index + 1];
  if (next) new Image().src = originalURL(next); // the next picture is ready when asked for
}

/**
 * The thumbnail at once (the browser has it), then the original over it once loaded; a format
 * the browser cannot show (HEIC, RAW) keeps the thumbnail, and so does an original the daemon
 * does not send (gone, no longer allowed): the note says which.
 * @param {Item} item
 */
function picture(item) {
  const img = find("#viewer-img", HTMLImageElement);
  const note = $("#viewer-note");
  note.hidden = true;
  img.src = thumbnailURL(item);
  img.alt = splitPath(item.image).name;
  const full = new Image();
  full.onload = () => {
    if (open.source && currentItem() === item) {
      img.src = full.src;
      const size = fileSize(full.src);
      if (size && !item.size) $("#viewer-size").textContent = fmtBytes(size);
    }
  };
  full.onerror = async () => {
    if (currentItem() !== item) return;
    const why = await whyNot(full.src);
    if (currentItem() !== item) return;
    note.textContent = why || "This browser cannot show the original's format: the thumbnail stands in (Open downloads the file).";
    note.hidden = false;
  };
  full.src = originalURL(item);
}

/**
 * Why the original did not show: null when the daemon sends it (the browser cannot decode its
 * format), else what the daemon answered (the file gone, no longer allowed...). A HEAD asks,
 * so a picture the browser cannot show is not downloaded again; an error's words come with a GET
 * (a short JSON answer).
 * @param {string} url
 * @returns {Promise<string | null>}
 */
async function whyNot(url) {
  try {
    const head = await fetch(url, { method: "HEAD", credentials: "same-origin" });
    if (head.ok) return null; // sent: the browser cannot decode its format
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.ok) return null; // a daemon without HEAD: sent all the same
    /** @type {{error?: string} | null} */
    const body = await response.json().catch(() => null);
    const http = `HTTP ${response.status}${body?.error ? `: ${body.error}` : ""}`;
    const gone = response.status === 404 || response.status === 410;
    return `${gone ? "The original is gone" : "The original cannot be opened"} (${http}): the thumbnail stands in.`;
  } catch {
    return "The original cannot be opened: no answer from the daemon.";
  }
}

function currentItem() {
  return open.source ? open.source.items()[open.index] : null;
}

/**
 * The original's size in bytes, as the browser received it (no request of its own).
 * @param {string} url
 */
function fileSize(url) {
  const entries = performance.getEntriesByName(new URL(url, location.href).href);
  const last = entries[entries.length - 1];
  return last instanceof PerformanceResourceTiming ? last.decodedBodySize : 0;
}

/**
 * [label, value] rows of what is known of the picture.
 * @param {Item} item
 * @param {string} folder
 * @returns {[string, string | HTMLElement][]}
 */
function details(item, folder) {
  /** @type {[string, string | HTMLElement][]} */
  const rows = [
    ["folder", h("span", { class: "path" }, folder)],
    ["size", h("span", { id: "viewer-size" }, item.size ? fmtBytes(item.size) : "…")],
  ];
  if (item.width) rows.push(["pixels", `${item.width} × ${item.height}`]);
  if (item.taken) rows.push([item.taken_from === "mtime" ? "file date" : "taken", item.taken.replace("T", " ").slice(0, 19)]);
  if (item.camera) rows.push(["camera", item.camera]);
  if (item.score !== undefined) rows.push(["similarity", item.score.toFixed(3)]);
  return rows;
}

/** @param {number} step */
async function go(step) {
  const source = open.source;
  if (!source) return;
  const last = source.items().length - 1;
  if (step > 0 && open.index === last) {
    if (!source.loadMore || !(await source.loadMore())) return;
  }
  show(open.index + step);
}

/** Close the viewer (another view, Back); the focus goes back to the grid as on Escape. */
export function closeViewer() {
  if (dialog().open) dialog().close();
}

/** The dialog's buttons and keys (once, at start). */
export function bindViewer() {
  const box = dialog();
  $button("#viewer-close").addEventListener("click", () => box.close());
  $button("#viewer-prev").addEventListener("click", () => go(-1));
  $button("#viewer-next").addEventListener("click", () => go(1));
  /** @param {(item: Item, source: Source) => void} act */
  const withItem = (act) => () => {
    const item = currentItem();
    if (item && open.source) act(item, open.source);
  };
  $button("#viewer-more").addEventListener("click", withItem((item, source) => (box.close(), source.more(item))));
  $button("#viewer-plus").addEventListener("click", withItem((item, source) => (box.close(), source.refine?.(item, 1))));
  $button("#viewer-minus").addEventListener("click", withItem((item, source) => (box.close(), source.refine?.(item, -1))));
  box.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      event.preventDefault();
      go(event.key === "ArrowLeft" ? -1 : 1);
    }
  });
  box.addEventListener("click", (event) => event.target === box && box.close()); // a click beside the picture
  // a phone: a swipe across the picture goes to the next or previous one
  let swipeX = 0;
  const stage = $("#viewer-img");
  stage.addEventListener("touchstart", (event) => (swipeX = event.touches[0].clientX), { passive: true });
  stage.addEventListener("touchend", (event) => {
    const moved = event.changedTouches[0].clientX - swipeX;
    if (Math.abs(moved) > 50) go(moved < 0 ? 1 : -1);
  });
  box.addEventListener("close", () => {
    const source = open.source;
    open.source = null;
    find("#viewer-img", HTMLImageElement).removeAttribute("src");
    const index = open.index;
    // after the browser's own focus fixup (back to the card that opened the viewer): the card
    // of the picture shown last
    setTimeout(() => source?.closed(index));
  });
}
