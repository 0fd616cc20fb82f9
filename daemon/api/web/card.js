// @ts-check
// One picture as a card: the thumbnail (a click opens the viewer), its name, folder and date,
// and a link to the original. Search results and duplicate groups both show their pictures so;
// a search result shows its score and its match level.
// A grid of cards is one Tab stop: the arrow keys move between its pictures (roving tabindex).

import { originalURL, thumbnailURL } from "./api.js";
import { h } from "./dom.js";
import { fmtBytes, splitPath } from "./format.js";

/** @typedef {import("./types.js").Item} Item */
/** @typedef {import("./types.js").Level} Level */

/** The match levels in words for people, and what each means (the label's tooltip). */
export const LEVELS = {
  same: { word: "Same picture", means: "the picture itself, or an edited copy of it" },
  similar: { word: "Similar", means: "the same kind of scene or object" },
  related: { word: "Related", means: "something in common, not the same kind of thing" },
  weak: { word: "Weak", means: "little in common: probably unrelated" },
};

let labels = 0; // ids for the level labels the thumbnails are described by

/**
 * What a card shows beyond the picture, its name, folder and date.
 * @typedef {object} CardOptions
 * @property {(item: Item) => void} open a click on the picture: the viewer
 * @property {boolean} [score] the similarity on the picture (a search result)
 * @property {boolean} [size] pixels and bytes (a duplicate: which copy to keep)
 * @property {(item: Item, weight: number) => void} [refine] + and − buttons: add it to the query
 * @property {boolean} [roving] in a grid that is one Tab stop: only the grid's current picture
 *   takes the focus (the Open, + and − of every card are in the viewer too, for the keyboard)
 */

/**
 * @param {Item} item
 * @param {CardOptions} options
 * @returns {HTMLElement}
 */
export function card(item, options) {
  const { folder, name } = splitPath(item.image);
  const open = () => options.open(item);
  const refine = options.refine;
  const skip = options.roving ? -1 : null; // out of the Tab order
  const level = options.score && item.match ? LEVELS[item.match] : null;
  const levelId = level ? `level-${++labels}` : null;
  return h(
    "li",
    { class: "card" },
    h(
      "button",
      // the level describes the button (aria-describedby), so a screen reader says it after the name
      { type: "button", class: "thumb", title: `View ${name}`, "aria-label": `View ${name}`, "aria-describedby": levelId, tabindex: skip, onclick: open },
      thumbnail(item),
      options.score ? h("span", { class: "score", title: "cosine similarity (1 = the same picture)" }, (item.score ?? 0).toFixed(3)) : null,
      level ? h("span", { class: `level ${item.match}`, id: levelId, title: `${level.word}: ${level.means}` }, level.word) : null,
    ),
    h(
      "div",
      { class: "meta" },
      h("span", { class: "name", title: item.image }, name),
      folderLine(folder),
      options.size ? h("span", { class: "muted" }, sizeLine(item)) : null,
      takenLine(item),
    ),
    h(
      "div",
      { class: "actions" },
      h("a", { href: originalURL(item), target: "_blank", rel: "noopener", title: `Open ${name} (the original, in a new tab)`, tabindex: skip }, "Open"),
      refine
        ? [
            h("button", { type: "button", title: "Add to the query: more like this one too", "aria-label": `Add ${name} to the query`, tabindex: skip, onclick: () => refine(item, 1) }, "+"),
            h("button", { type: "button", title: "Less like this one", "aria-label": `Less like ${name}`, tabindex: skip, onclick: () => refine(item, -1) }, "−"),
          ]
        : null,
    ),
  );
}

/**
 * The thumbnail, loaded when scrolled near; a card whose picture cannot be shown says so.
 * @param {Item} item
 */
function thumbnail(item) {
  const img = h("img", { src: thumbnailURL(item), alt: "", loading: "lazy", decoding: "async" });
  img.addEventListener("error", () => img.closest(".thumb")?.classList.add("missing"), { once: true });
  return img;
}

/**
 * A folder cut from the left when it is too long: its end names it best. The <bdi> keeps the
 * right-to-left box from moving the path's leading "/" to its end.
 * @param {string} folder
 */
function folderLine(folder) {
  return h("span", { class: "folder", title: folder, dir: "rtl" }, h("bdi", { dir: "ltr" }, folder));
}

/** @param {Item} item */
function sizeLine(item) {
  return item.width ? `${item.width}×${item.height} · ${fmtBytes(item.size)}` : fmtBytes(item.size);
}

/**
 * "2019-08-01", with a "~" and a note when it is the file's date (the photo had none).
 * @param {Item} item
 */
function takenLine(item) {
  if (!item.taken) return null;
  const guessed = item.taken_from === "mtime";
  const facts = [guessed ? "file date: the photo has no date of its own" : `taken ${item.taken}`];
  if (item.camera) facts.push(item.camera);
  if (item.width) facts.push(`${item.width}×${item.height}`);
  return h("span", { class: "muted taken", title: facts.join(" · ") }, `${guessed ? "~" : ""}${item.taken.slice(0, 10)}`);
}

/** The pictures of a grid's cards that are shown: a folded card (``hidden``, a weaker match) is skipped. */
const SHOWN = ".card:not([hidden]) .thumb";

/**
 * A grid of cards as one Tab stop: the arrow keys move the focus between its pictures (up and
 * down by a row), Home and End to the first and last; Enter opens the focused one (a button).
 * @param {HTMLElement} grid
 */
export function bindGrid(grid) {
  grid.addEventListener("keydown", (event) => {
    const thumbs = Array.from(grid.querySelectorAll(SHOWN)).filter((el) => el instanceof HTMLElement);
    const at = thumbs.indexOf(/** @type {HTMLElement} */ (event.target));
    if (at < 0) return;
    const columns = Math.max(1, thumbs.filter((t) => t.offsetTop === thumbs[0].offsetTop).length);
    /** @type {Record<string, number>} */
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns, Home: -at, End: thumbs.length - 1 - at };
    const move = moves[event.key];
    if (move === undefined || event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    focusCard(grid, Math.max(0, Math.min(thumbs.length - 1, at + move)));
  });
  // a click (or the viewer closing on a picture) makes that picture the grid's Tab stop
  grid.addEventListener("focusin", (event) => {
    const target = event.target;
    if (target instanceof HTMLElement && target.classList.contains("thumb")) setTabStop(grid, target);
  });
}

/**
 * Focus the grid's shown picture number ``index`` (and make it the Tab stop).
 * @param {HTMLElement} grid
 * @param {number} index
 */
export function focusCard(grid, index) {
  const thumb = grid.querySelectorAll(SHOWN)[index];
  if (!(thumb instanceof HTMLElement)) return;
  setTabStop(grid, thumb);
  thumb.focus();
  thumb.scrollIntoView({ block: "nearest" });
}

/**
 * @param {HTMLElement} grid
 * @param {HTMLElement} thumb
 */
function setTabStop(grid, thumb) {
  for (const other of grid.querySelectorAll(".card .thumb[tabindex='0']")) other.setAttribute("tabindex", "-1");
  thumb.setAttribute("tabindex", "0");
}

/**
 * After new cards came (or folded ones were shown): the first shown picture is the Tab stop
 * unless a shown one already is.
 * @param {HTMLElement} grid
 */
export function keepTabStop(grid) {
  const first = grid.querySelector(SHOWN);
  const stop = grid.querySelector(".card .thumb[tabindex='0']");
  if (stop && stop.closest(".card")?.hasAttribute("hidden")) stop.setAttribute("tabindex", "-1"); // a folded card is no Tab stop
  if (first && !grid.querySelector(".card:not([hidden]) .thumb[tabindex='0']")) first.setAttribute("tabindex", "0");
}
