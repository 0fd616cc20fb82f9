// @ts-check
// Every search in the address bar, so Back, reload and a bookmark give the same results:
// "#search?text=a+cat", "#search?image=/photos/cat.jpg", "#search?hash=<an upload's content
// hash>", with the form's filters, and a combined query as its parts in order ("not_image=..."
// for a part searched away from). A part whose path is not UTF-8 goes by its bytes (image64).

import { splitPath } from "./format.js";

/** @typedef {import("./types.js").Part} Part */
/** @typedef {{limit: string, extractor: string, folder: string, taken_after: string, taken_before: string}} SearchOptions */

export const DEFAULT_LIMIT = "24";
const OPTION_KEYS = /** @type {const} */ (["limit", "extractor", "folder", "taken_after", "taken_before"]);
const PART_KEYS = ["text", "image", "image64", "hash"];

/**
 * The view and the search in an address's hash ("#search?text=cat" -> search, text=cat).
 * @param {string} [hash]
 */
export function readAddress(hash = location.hash) {
  const [view, search = ""] = hash.slice(1).split(/\?(.*)/s, 2);
  return { view, params: new URLSearchParams(search) };
}

/**
 * The address of a search: "#search?..." ("" for a query that cannot be named: an upload the
 * daemon has not answered yet).
 * @param {Part[]} parts
 * @param {SearchOptions} options
 */
export function addressOf(parts, options) {
  const params = new URLSearchParams();
  for (const part of parts) {
    const away = part.weight < 0 ? "not_" : "";
    if (part.kind === "text") params.append(`${away}text`, part.text);
    else if (part.kind === "image" && part.path_base64) params.append(`${away}image64`, part.path_base64);
    else if (part.kind === "image") params.append(`${away}image`, part.image);
    else if (part.hash) params.append(`${away}hash`, part.hash);
    else return "";
  }
  for (const key of OPTION_KEYS) {
    const value = options[key];
    if (value && !(key === "limit" && value === DEFAULT_LIMIT)) params.set(key, value);
  }
  return `#search?${params}`;
}

/**
 * The query's parts an address names, in their order.
 * @param {URLSearchParams} params
 * @returns {Part[]}
 */
export function partsOf(params) {
  /** @type {Part[]} */
  const parts = [];
  for (const [raw, value] of params) {
    const away = raw.startsWith("not_");
    const key = away ? raw.slice(4) : raw;
    if (!PART_KEYS.includes(key) || !value) continue;
    const weight = away ? -1 : 1;
    if (key === "text") parts.push({ kind: "text", weight, text: value, label: value });
    else if (key === "hash") parts.push({ kind: "hash", weight, hash: value, label: "the uploaded picture" });
    else {
      const image = key === "image64" ? bytesAsText(value) : value;
      const path_base64 = key === "image64" ? value : undefined;
      parts.push({ kind: "image", weight, image, path_base64, label: splitPath(image).name });
    }
  }
  return parts;
}

/**
 * The filters an address names (absent ones: empty, the limit its default).
 * @param {URLSearchParams} params
 * @returns {SearchOptions}
 */
export function optionsOf(params) {
  return {
    limit: params.get("limit") || DEFAULT_LIMIT,
    extractor: params.get("extractor") || "",
    folder: params.get("folder") || "",
    taken_after: params.get("taken_after") || "",
    taken_before: params.get("taken_before") || "",
  };
}

/**
 * A path's bytes (base64) as text to show, undecodable bytes replaced.
 * @param {string} base64
 */
function bytesAsText(base64) {
  try {
    return new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
  } catch {
    return base64;
  }
}
