// @ts-check
// The page's state, one object every view reads: the last /stats, the view shown, the query.

/** @typedef {import("./types.js").Stats} Stats */
/** @typedef {import("./types.js").Part} Part */

export const VIEWS = ["search", "duplicates", "status"];

const pageParams = new URLSearchParams(location.search);
// How often the status view asks /stats; ?poll=250 for a faster one (the browser tests use it).
export const POLL_MS = Math.max(100, Number(pageParams.get("poll")) || 1000);
export const IDLE_POLL_MS = 5000; // other views only need the models, folders and the status dot

export const state = {
  /** @type {Stats | null} */
  stats: null,
  view: "search",
  /** @type {Part[]} the query */
  parts: [],
  searchSeq: 0, // a newer search's answer wins: an older one arriving later is dropped
  /** @type {{offset: number, loaded: boolean, seq: number, next: number | null}} */
  dup: { offset: 0, loaded: false, seq: 0, next: null },
  pollTimer: 0,
  started: false,
};
