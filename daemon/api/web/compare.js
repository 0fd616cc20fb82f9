// @ts-check
// The compare view: two pictures of a duplicate group side by side in a modal <dialog>, each
// with its details (pixels, bytes, format, date, camera, folder, cosine and framing scores) and
// its Keep and Trash buttons. A row whose two values differ is marked, so what tells the copies
// apart shows at a glance. ← and → change the right-hand picture; k and t mark it; Escape closes.

import { originalURL, thumbnailURL } from "./api.js";
import { $, find, h } from "./dom.js";
import { fmtBytes, plural, splitPath } from "./format.js";

/** @typedef {import("./types.js").Group} Group */
/** @typedef {import("./types.js").Member} Member */
/** @typedef {"keep" | "trash"} Mark */

/**
 * What the compare view shows, and how a mark reaches the group.
 * @typedef {object} Pair
 * @property {Group} group
 * @property {number} left the member on the left (the keeper, usually)
 * @property {number} right the member compared with it
 * @property {(member: Member) => Mark} mark a member's mark
 * @property {(member: Member, mark: Mark) => void} setMark
 * @property {(index: number) => void} closed the dialog closed on member ``index`` (the focus goes back to it)
 */

/** @type {{pair: Pair | null}} */
const open = { pair: null };

const dialog = () => find("#compare", HTMLDialogElement);

/** Formats by file suffix, as people call them. */
const FORMATS = { jpg: "JPEG", jpeg: "JPEG", tif: "TIFF", tiff: "TIFF", heic: "HEIC", heif: "HEIF", png: "PNG", webp: "WebP", avif: "AVIF", gif: "GIF", bmp: "BMP", dng: "DNG (RAW)", cr2: "CR2 (RAW)", cr3: "CR3 (RAW)", nef: "NEF (RAW)", arw: "ARW (RAW)", orf: "ORF (RAW)", rw2: "RW2 (RAW)", raf: "RAF (RAW)", pef: "PEF (RAW)" };

/** @param {string} path */
export function formatOf(path) {
  const name = splitPath(path).name;
  const dot = name.lastIndexOf(".");
  const suffix = dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
  return /** @type {Record<string, string>} */ (FORMATS)[suffix] || (suffix ? suffix.toUpperCase() : "unknown");
}

/**
 * The rows of a member's details, [label, value]; the value's text is what the two sides compare.
 * @param {Member} member
 * @param {Group} group
 * @returns {[string, string][]}
 */
function facts(member, group) {
  const taken = member.taken ? `${member.taken_from === "mtime" ? "~" : ""}${member.taken.replace("T", " ").slice(0, 19)}` : "unknown";
  /** @type {[string, string][]} */
  const rows = [
    ["pixels", member.width ? `${member.width} × ${member.height}` : "unknown"],
    ["bytes", fmtBytes(member.size)],
    ["format", formatOf(member.image)],
    [member.taken_from === "mtime" ? "file date" : "taken", taken],
    ["camera", member.camera || "none recorded"],
    ["folder", splitPath(member.image).folder],
  ];
  if (group.kind !== "identical") {
    // both to the group's centre (the picture the others were found around), as /duplicates gives them
    rows.push(["cosine to centre", member.score === undefined ? "–" : member.score.toFixed(3)]);
    rows.push(["framing to centre", member.framing === null || member.framing === undefined ? "not checked" : member.framing.toFixed(3)]);
  }
  if (group.kind !== "identical") rows.push(["same bytes", member.same_bytes ? `${plural(member.same_bytes, "other file")} (Identical tab)` : "no other file"]);
  return rows;
}

/**
 * One side: the picture (thumbnail, then the original over it), its name, Keep and Trash, its details.
 * @param {Pair} pair
 * @param {number} index
 * @param {[string, string][]} mine
 * @param {[string, string][]} theirs the other side's rows: a differing value is marked
 * @param {string} where "left" or "right"
 */
function side(pair, index, mine, theirs, where) {
  const member = pair.group.members[index];
  const { name } = splitPath(member.image);
  const img = h("img", { src: thumbnailURL(member), alt: name });
  const full = new Image();
  full.onload = () => img instanceof HTMLImageElement && img.isConnected && (img.src = full.src);
  full.src = originalURL(member);
  const mark = pair.mark(member);
  /** @param {Mark} to */
  const markButton = (to) =>
    h(
      "button",
      { type: "button", class: `mark-${to}`, "aria-pressed": String(mark === to), onclick: () => (pair.setMark(member, to), render()) },
      to === "keep" ? "Keep" : "Trash",
    );
  const other = new Map(theirs);
  return h(
    "section",
    { class: `compare-side ${mark}`, "data-side": where, "aria-label": `${where === "left" ? "Left" : "Right"}: ${name}` },
    h("div", { class: "compare-stage" }, img),
    h(
      "div",
      { class: "compare-head" },
      h("span", { class: "name", title: member.image }, name),
      member.keep ? h("span", { class: "badge keeper" }, "suggested keeper") : null,
      h("span", { class: "marks", role: "group", "aria-label": `Mark ${name}` }, markButton("keep"), markButton("trash")),
    ),
    h("dl", {}, ...mine.map(([k, v]) => h("div", { class: other.get(k) !== v ? "differs" : null }, h("dt", {}, k), h("dd", { class: k === "folder" ? "path" : null }, v)))),
  );
}

function render() {
  const pair = open.pair;
  if (!pair) return;
  const { group, left, right } = pair;
  const a = facts(group.members[left], group);
  const b = facts(group.members[right], group);
  $("#compare-count").textContent = `${right + 1} of ${plural(group.members.length, "picture")}`;
  // a mark button clicked keeps the focus across the redraw (the same button on the same side)
  const focused = document.activeElement;
  const was = focused instanceof HTMLElement && focused.closest(".compare-side") ? `[data-side="${focused.closest(".compare-side")?.getAttribute("data-side")}"] .${focused.className}` : "";
  $("#compare-sides").replaceChildren(side(pair, left, a, b, "left"), side(pair, right, b, a, "right"));
  const again = was ? document.querySelector(`#compare-sides ${was}`) : null;
  if (again instanceof HTMLElement) again.focus();
}

/**
 * Open the compare view on two members of a group.
 * @param {Pair} pair
 */
export function openCompare(pair) {
  open.pair = pair;
  render();
  if (!dialog().open) dialog().showModal();
  find("#compare-close", HTMLButtonElement).focus();
}

/**
 * The right-hand picture: the group's next (or previous) member that is not on the left.
 * @param {number} step
 */
function step(step) {
  const pair = open.pair;
  if (!pair) return;
  const count = pair.group.members.length;
  let next = pair.right;
  do next = (next + step + count) % count;
  while (next === pair.left);
  pair.right = next;
  render();
}

/** The dialog's keys and buttons (once, at start). */
export function bindCompare() {
  const box = dialog();
  find("#compare-close", HTMLButtonElement).addEventListener("click", () => box.close());
  find("#compare-prev", HTMLButtonElement).addEventListener("click", () => step(-1));
  find("#compare-next", HTMLButtonElement).addEventListener("click", () => step(1));
  box.addEventListener("keydown", (event) => {
    const pair = open.pair;
    if (!pair || event.altKey || event.ctrlKey || event.metaKey) return;
    const right = pair.group.members[pair.right];
    /** @type {Record<string, () => void>} */
    const keys = {
      ArrowLeft: () => step(-1),
      ArrowRight: () => step(1),
      k: () => (pair.setMark(right, "keep"), render()),
      t: () => (pair.setMark(right, "trash"), render()),
      Delete: () => (pair.setMark(right, "trash"), render()),
    };
    const act = keys[event.key];
    if (!act) return;
    event.preventDefault();
    act();
  });
  box.addEventListener("click", (event) => event.target === box && box.close());
  window.addEventListener("popstate", () => box.open && box.close()); // Back: another view
  box.addEventListener("close", () => {
    const pair = open.pair;
    open.pair = null;
    setTimeout(() => pair?.closed(pair.right));
  });
}
