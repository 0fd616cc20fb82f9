// @ts-check
// One picture as a card: the thumbnail (a click: more like this), its name, folder and date,
// and a link to the original. Search results and duplicate groups both show their pictures so.

import { originalURL, thumbnailURL } from "./api.js";
import { h } from "./dom.js";
import { fmtBytes, splitPath } from "./format.js";

/** @typedef {import("./types.js").Item} Item */

/**
 * What a card shows beyond the picture, its name, folder and date.
 * @typedef {object} CardOptions
 * @property {(item: Item) => void} more a click on the picture: search for more like it
 * @property {boolean} [score] the similarity on the picture (a search result)
 * @property {boolean} [size] pixels and bytes (a duplicate: which copy to keep)
 * @property {(item: Item, weight: number) => void} [refine] + and − buttons: add it to the query
 */

/**
 * @param {Item} item
 * @param {CardOptions} options
 * @returns {HTMLElement}
 */
export function card(item, options) {
  const { folder, name } = splitPath(item.image);
  const more = () => options.more(item);
  const refine = options.refine;
  return h(
    "li",
    { class: "card" },
    h(
      "button",
      { type: "button", class: "thumb", title: `More like ${name}`, "aria-label": `More like ${name}`, onclick: more },
      thumbnail(item),
      options.score ? h("span", { class: "score", title: "cosine similarity (1 = the same picture)" }, (item.score ?? 0).toFixed(3)) : null,
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
      h("a", { href: originalURL(item), target: "_blank", rel: "noopener", title: `Open ${name}` }, "Open"),
      refine
        ? [
            h("button", { type: "button", title: "Add to the query: more like this one too", "aria-label": `Add ${name} to the query`, onclick: () => refine(item, 1) }, "+"),
            h("button", { type: "button", title: "Less like this one", "aria-label": `Less like ${name}`, onclick: () => refine(item, -1) }, "−"),
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
