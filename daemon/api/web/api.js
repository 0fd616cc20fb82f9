// @ts-check
// The daemon's HTTP API as the page calls it: same-origin fetches that carry the login cookie,
// errors with the daemon's own message, and the URLs of a picture's thumbnail and original.

/** @typedef {import("./types.js").Item} Item */

export class ApiError extends Error {
  /**
   * @param {number} status the HTTP status, 0 when the daemon could not be reached
   * @param {{error?: string, reason?: string} | null} body
   */
  constructor(status, body) {
    super((body && body.error) || `the daemon answered HTTP ${status}`);
    this.status = status;
    /** why a picture could not be used (the daemon's one word: "truncated", "corrupt", ...) */
    this.reason = (body && body.reason) || "";
  }
}

/** What a 401 does (the login form shows): set by the page at start. */
let unauthorised = () => {};

/** @param {() => void} handler */
export function onUnauthorised(handler) {
  unauthorised = handler;
}

/**
 * A call to the daemon: its status and JSON body (any: each caller names the answer's type).
 * @param {string} path
 * @param {RequestInit} [options]
 * @returns {Promise<{status: number, body: any}>}
 */
export async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { credentials: "same-origin", ...options });
  } catch {
    throw new ApiError(0, { error: "no answer from the daemon" }); // the line under the menu says "Cannot reach the daemon"
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) unauthorised();
  if (!response.ok) throw new ApiError(response.status, body);
  return { status: response.status, body };
}

/**
 * A query string of the parameters that have a value.
 * @param {Record<string, string | number | null | undefined>} params
 */
export function query(params) {
  const out = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    out.push(`${key}=${encodeURIComponent(value)}`);
  }
  return out.join("&");
}

/**
 * A result's path as a query value. A name that is not UTF-8 comes with its exact bytes
 * (path_base64): percent-encode those, as the daemon decodes them like the file system does.
 * @param {{image: string, path_base64?: string}} item
 */
export function pathParam(item) {
  if (item.path_base64) {
    const bytes = atob(item.path_base64);
    let out = "";
    for (let i = 0; i < bytes.length; i++) out += "%" + bytes.charCodeAt(i).toString(16).padStart(2, "0");
    return out;
  }
  return encodeURIComponent(item.image);
}

/**
 * With the content hash a result gives, the URL names one picture: the browser keeps it.
 * @param {{image: string, path_base64?: string, hash?: string}} item
 */
export function thumbnailURL(item) {
  const pinned = item.hash ? `&v=${encodeURIComponent(item.hash)}` : "";
  return `/thumbnail?image=${pathParam(item)}${pinned}`;
}

/** @param {{image: string, path_base64?: string}} item */
export function originalURL(item) {
  return `/original?image=${pathParam(item)}`;
}
