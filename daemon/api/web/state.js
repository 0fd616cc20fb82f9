// @ts-check
// The page's state, one object every view reads: the last /stats, the view shown, the query.

/** @typedef {import("./types.js").Stats} Stats */
/** @typedef {import("./types.js").Part} Part */
/** @typedef {import("./types.js").Item} Item */

export const VIEWS = ["search", "folders", "duplicates", "status"];

const pageParams = new URLSearchParams(location.search);
// How often the status and folders views ask /stats; ?poll=250 for a faster one (the browser tests use it).
export const POLL_MS = Math.max(100, Number(pageParams.get("poll")) || 1000);
export const IDLE_POLL_MS = Math.min(5000, 5 * POLL_MS); // other views only need the models, folders and the status dot
export const MAX_RETRY_MS = 15000; // the daemon away: asked again after 2, 4, 8 ... s, at most this

export const state = {
  /** @type {Stats | null} */
  stats: null,
  view: "search",
  /** @type {Part[]} the query */
  parts: [],
  searchSeq: 0, // a newer search's answer wins: an older one arriving later is dropped
  /** @type {{results: Item[], next: number | null, address: string, waiting: boolean, unfolded: boolean}} the results (shown and folded), the next page's offset, the search's address (its hash), whether the weaker matches are shown */
  search: { results: [], next: null, address: "", waiting: false, unfolded: false },
  /** @type {{offset: number, loaded: boolean, seq: number, next: number | null}} */
  dup: { offset: 0, loaded: false, seq: 0, next: null },
  pollTimer: 0,
  started: false,
  failures: 0, // /stats asked in vain in a row: the next try waits longer
};
