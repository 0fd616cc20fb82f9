// @ts-check
// The query: its parts (pictures from the index, an upload, a text), each towards or away,
// and their chips above the results, whose sign a click flips.

import { thumbnailURL } from "./api.js";
import { $, h } from "./dom.js";
import { plural, splitPath } from "./format.js";
import { state } from "./state.js";

/** @typedef {import("./types.js").Item} Item */
/** @typedef {import("./types.js").Part} Part */
/** @typedef {import("./types.js").ImagePart} ImagePart */
/** @typedef {import("./types.js").UploadPart} UploadPart */

/**
 * @param {File} file
 * @returns {Promise<string>}
 */
function readDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/**
 * A picture from the user's disk (chosen, dropped or pasted).
 * @param {File} file
 * @returns {UploadPart}
 */
export function uploadPart(file) {
  return {
    kind: "upload",
    weight: 1,
    file,
    label: file.name || "pasted picture",
    preview: URL.createObjectURL(file),
    dataUrl: readDataUrl(file), // needed only if the part joins a combined query
  };
}

/**
 * A picture of the index (a result or a duplicate).
 * @param {Item} item
 * @param {number} weight
 * @returns {ImagePart}
 */
export function imagePart(item, weight) {
  return { kind: "image", weight, image: item.image, path_base64: item.path_base64, hash: item.hash, label: splitPath(item.image).name };
}

/** Empty the query (and free the uploads' previews). */
export function clearParts() {
  for (const part of state.parts) if (part.kind === "upload") URL.revokeObjectURL(part.preview);
  state.parts = [];
}

/**
 * A part as POST /search takes it in a combined query.
 * @param {Part} part
 */
export async function partJson(part) {
  if (part.kind === "text") return { text: part.text, weight: part.weight };
  if (part.kind === "image") return { image: part.image, weight: part.weight };
  if (part.kind === "hash") throw new Error(LOST_UPLOAD);
  return { image_base64: await part.dataUrl, weight: part.weight };
}

/** Why a combined query from an address cannot run: its upload's bytes are not in the address. */
export const LOST_UPLOAD = "This search combined an uploaded picture, which a link cannot hold: choose the picture again.";

/**
 * The query in words after "24 pictures" or "No pictures": "like cat.jpg", "matching “a cat”",
 * "for a query of 3 parts".
 */
export function describe() {
  if (state.parts.length === 1) {
    const part = state.parts[0];
    if (part.kind === "text") return `matching “${part.text}”`;
    return `like ${part.label}`;
  }
  return `for a query of ${plural(state.parts.length, "part")}`;
}

/**
 * The query's chips. ``changed``: a sign flipped or a part removed, parts remain; ``emptied``:
 * the last part removed.
 * @param {{changed: () => void, emptied: () => void}} then
 */
export function renderParts(then) {
  const box = $("#parts");
  const chips = state.parts.map((part, i) => {
    const sign = h(
      "button",
      {
        type: "button",
        class: `sign ${part.weight < 0 ? "minus" : "plus"}`,
        title: part.weight < 0 ? "Away from this (click: towards)" : "Towards this (click: away)",
        "aria-label": `${part.weight < 0 ? "Away from" : "Towards"} ${part.label}: switch`,
        onclick: () => {
          part.weight = -part.weight;
          then.changed();
        },
      },
      part.weight < 0 ? "−" : "+",
    );
    const remove = h(
      "button",
      {
        type: "button",
        class: "remove",
        "aria-label": `Remove ${part.label} from the query`,
        onclick: () => {
          if (part.kind === "upload") URL.revokeObjectURL(part.preview);
          state.parts.splice(i, 1);
          if (state.parts.length) then.changed();
          else then.emptied();
        },
      },
      "×",
    );
    const title = part.kind === "image" ? part.image : part.label;
    return h("span", { class: "chip" }, sign, chipPicture(part), h("span", { class: "label", title }, part.label), remove);
  });
  box.replaceChildren(...chips);
  box.hidden = !chips.length;
}

/**
 * A chip's picture: the upload's preview, the indexed picture's thumbnail, or quotes for a text.
 * @param {Part} part
 */
function chipPicture(part) {
  if (part.kind === "upload") return h("img", { src: part.preview, alt: "" });
  if (part.kind === "text") return h("span", { class: "quote", "aria-hidden": "true" }, "“”");
  if (part.kind === "hash") return h("span", { class: "quote", "aria-hidden": "true" }, "#");
  const img = h("img", { src: thumbnailURL(part), alt: "" });
  img.addEventListener("error", () => img.replaceWith(h("span", { class: "quote", "aria-hidden": "true" }, "?")), { once: true });
  return img;
}
