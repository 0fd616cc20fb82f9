// @ts-check
// The search view: the query's parts sent to /search (GET for one picture, text or content
// hash, a form for an upload, JSON for a combined query), the results as a grid of cards that
// open the viewer, "More results" for the next page, and the search kept in the address.
// Results below "similar" are folded behind "Show N weaker matches" (the answer's ``match``):
// the grid, its keys and the viewer go over the shown cards.

import { addressOf, optionsOf, partsOf, readAddress } from "./address.js";
import { ApiError, api, pathParam, query } from "./api.js";
import { bindGrid, card, focusCard, keepTabStop } from "./card.js";
import { $, $button, $input, $select, h, setMessage } from "./dom.js";
import { plural } from "./format.js";
import { LOST_UPLOAD, clearParts, describe, imagePart, partJson, renderParts, uploadPart } from "./query.js";
import { state } from "./state.js";
import { openViewer } from "./viewer.js";
import { showView } from "./views.js";

/** @typedef {import("./types.js").Item} Item */
/** @typedef {import("./types.js").Part} Part */
/** @typedef {import("./types.js").SearchAnswer} SearchAnswer */
/** @typedef {import("./address.js").SearchOptions} SearchOptions */

/** What the daemon's one-word reasons mean for a picture the user gave (ApiError.reason). */
const UNREADABLE = {
  truncated: "it is cut short",
  corrupt: "it is damaged",
  not_an_image: "it is not in a picture format",
  empty: "it is empty",
};

/** The levels shown at once; the weaker ones (related, weak) wait behind a button. */
const CLOSE = ["same", "similar"];

/**
 * Whether a result is shown before the weaker matches are asked for (one without a level, from
 * an older daemon, is).
 * @param {Item} item
 */
const close = (item) => !item.match || CLOSE.includes(item.match);

/** The results the grid shows, in order: every one once the weaker matches are shown. */
function shownResults() {
  return state.search.unfolded ? state.search.results : state.search.results.filter(close);
}

/** The weaker matches' button ("Show 5 weaker matches") and the line when none is close. */
function showFold() {
  const results = state.search.results;
  const folded = state.search.unfolded ? 0 : results.filter((item) => !close(item)).length;
  const button = $button("#show-weaker");
  button.hidden = !folded;
  button.textContent = `Show ${plural(folded, "weaker match", "weaker matches")}`;
  $("#no-close").hidden = !results.length || results.some(close);
}

/** Show the weaker matches where they are in the grid; the focus goes to the first of them. */
function unfold() {
  const grid = $("#results");
  const first = Array.from(grid.children).findIndex((li) => li instanceof HTMLElement && li.hidden);
  for (const li of grid.children) if (li instanceof HTMLElement) li.hidden = false;
  state.search.unfolded = true;
  showFold();
  keepTabStop(grid);
  if (first >= 0) focusCard(grid, first);
}

/** @returns {SearchOptions} the form's settings */
function searchOptions() {
  return {
    limit: $select("#limit").value,
    extractor: $select("#extractor").value,
    folder: $input("#folder").value.trim(),
    taken_after: $input("#taken-after").value, // a day (YYYY-MM-DD): the daemon takes the whole day
    taken_before: $input("#taken-before").value,
  };
}

/** @param {SearchOptions} options */
function setOptions(options) {
  $select("#limit").value = options.limit;
  const models = $select("#extractor");
  // before the first /stats the menu is empty: the address's model waits in it (stats.js keeps it)
  if (options.extractor && !Array.from(models.options).some((o) => o.value === options.extractor)) models.append(h("option", {}, options.extractor));
  models.value = options.extractor || state.stats?.active_extractor || models.value; // none named: the default
  $input("#folder").value = options.folder;
  $input("#taken-after").value = options.taken_after;
  $input("#taken-before").value = options.taken_before;
}

/** The chosen model, with what /stats says of it. */
function activeExtractor() {
  const stats = state.stats;
  if (!stats) return null;
  const name = $select("#extractor").value || stats.active_extractor;
  if (!name) return null;
  /** @type {Partial<import("./types.js").Extractor>} */
  const ex = stats.extractors[name] || {};
  return { name, ...ex };
}

/** The text box, on for a model with a text encoder; otherwise a note says why it is off. */
export function updateTextAbility() {
  const ex = activeExtractor();
  const input = $input("#text");
  const note = $("#text-note");
  if (!ex) return;
  const able = Boolean(ex.text);
  input.disabled = !able;
  $("#text-row").hidden = !able;
  note.hidden = able;
  if (!able) {
    const fallback = state.stats?.fallback;
    note.replaceChildren(
      h("span", { title: ex.model || "" }, `No text search: ${ex.name} reads pictures, not words. `), // the model's id in the tooltip
      fallback
        ? h("span", {}, `${fallback.configured} did not load (${fallback.reason}). `, h("a", { href: "#status" }, "What to fetch and where to put it"), ".")
        : "A model with a text encoder (clip) in index.extractors searches by description.",
    );
  }
}

/** Before any query: how many pictures there are and what to do. */
export function welcome() {
  const stats = state.stats;
  if (!stats || stats.images === null || stats.images === undefined) return;
  const message = $("#search-message");
  if (stats.images) {
    setMessage(message, `${plural(stats.images, "picture")} indexed. Choose, drop or paste a picture to find ones like it.`);
    return;
  }
  setMessage(message, "Nothing is indexed yet: ");
  message.append(h("a", { href: "#folders" }, "add a folder of pictures"), " to watch (Folders).");
}

/**
 * Search with a picture from the user's disk.
 * @param {File | null | undefined} file
 */
export function useFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    failed(`${file.name} is not a picture (${file.type}).`);
    return;
  }
  const part = uploadPart(file);
  clearParts();
  state.parts.push(part);
  runSearch();
}

/** @param {Item} item */
export function moreLikeThis(item) {
  clearParts();
  state.parts.push(imagePart(item, 1));
  window.scrollTo({ top: 0, behavior: "smooth" });
  runSearch();
}

/**
 * Add a result to the query, towards it (1) or away from it (-1).
 * @param {Item} item
 * @param {number} weight
 */
function refine(item, weight) {
  const same = state.parts.find((p) => p.kind === "image" && p.image === item.image);
  if (same) same.weight = weight;
  else state.parts.push(imagePart(item, weight));
  runSearch();
}

function showParts() {
  renderParts({ changed: runSearch, emptied: () => restore(new URLSearchParams(), true) });
}

/**
 * The search in the address bar (a new entry for a new search; ``push`` false: replace it).
 * The Search link in the menu leads back to it from the other views. A query the address
 * cannot name (an upload, until the daemon names its content hash) is plain "#search": the
 * address never names a search whose results are not the ones shown.
 * @param {boolean} push
 * @returns {boolean} whether the address changed (a step pushed or replaced)
 */
function record(push) {
  const options = searchOptions();
  if (options.extractor === state.stats?.active_extractor) options.extractor = ""; // the default goes without saying
  const address = addressOf(state.parts, options) || "#search";
  state.search.address = address === "#search" ? "" : address;
  $("nav a[data-view=search]").setAttribute("href", address);
  if (location.hash === address) return false;
  if (push) history.pushState(null, "", address);
  else history.replaceState(null, "", address);
  return true;
}

/**
 * Search with the query as it stands; the answer of the latest search wins.
 * @param {boolean} [push] a new step in the browser's history (false: from the address)
 */
export async function runSearch(push = true) {
  showView("search");
  showParts();
  if (!state.parts.length) return;
  const seq = ++state.searchSeq;
  const options = searchOptions();
  state.search.waiting = false;
  const recorded = record(push);
  setMessage($("#search-message"), "Searching…", "busy");
  $("#search-message").title = "";
  $("#results").setAttribute("aria-busy", "true");
  const started = performance.now();
  /** @type {SearchAnswer} */
  let answer;
  try {
    answer = await ask(options, 0);
  } catch (e) {
    if (seq === state.searchSeq) failed(e);
    return;
  }
  if (seq !== state.searchSeq) return;
  const only = state.parts.length === 1 ? state.parts[0] : null;
  if (only && only.kind === "upload" && answer.query?.hash) {
    only.hash = answer.query.hash;
    record(push && !recorded); // its step in the history may be there already ("#search" until now)
  }
  state.search.results = [];
  state.search.unfolded = false; // a new search folds its weaker matches again
  renderResults(answer, options, Math.round(performance.now() - started));
}

/**
 * The search failed: say why in words, and show no results of an earlier query.
 * @param {unknown} e
 */
function failed(e) {
  $("#results").removeAttribute("aria-busy");
  $("#results").replaceChildren();
  state.search.results = [];
  showFold();
  $button("#more-results").hidden = true;
  $("#search-form").classList.remove("folded"); // on a phone: the form again, to try another picture
  const { text, wait } = explain(e);
  state.search.waiting = wait;
  if (!wait) forget(); // a reload would not bring back what the address named
  setMessage($("#search-message"), text, wait ? "busy" : "error");
  $("#search-message").title = e instanceof Error && e.message !== text ? e.message : ""; // the daemon's own words
}

/** The address names no search (replacing the failed one's): a reload shows the empty view. */
function forget() {
  state.search.address = "";
  $("nav a[data-view=search]").setAttribute("href", "#search");
  if (readAddress().view === "search" && location.hash !== "#search") history.replaceState(null, "", "#search");
}

/**
 * An error in words, and whether the search runs again by itself (the daemon starting or away).
 * @param {unknown} e
 * @returns {{text: string, wait: boolean}}
 */
function explain(e) {
  if (!(e instanceof ApiError)) return { text: e instanceof Error ? e.message : String(e), wait: false };
  // the line under the menu says the daemon cannot be reached: here, only what happens next
  if (e.status === 0) return { text: "The search runs again once the daemon answers.", wait: true };
  if (e.status === 503 && (e.message.includes("is starting") || state.stats?.ready === false)) {
    return { text: "Starting: loading models… The search runs once they are loaded.", wait: true };
  }
  const why = UNREADABLE[/** @type {keyof UNREADABLE} */ (e.reason)];
  if (why) return { text: `This file is not a picture we can read (${why}).`, wait: false };
  if (e.reason === "missing_library") return { text: `This picture's format needs a decoder the daemon does not have: ${e.message}`, wait: false };
  if (e.reason === "too_large") return { text: `This picture is too large to search with: ${e.message}`, wait: false };
  if (e.status === 404 && state.parts.some((p) => p.kind === "hash")) {
    return { text: "This uploaded picture is no longer remembered: choose it again.", wait: false };
  }
  return { text: e.message, wait: false };
}

/** The next page of results, below the ones shown; false when it shows none (none came, or all folded). */
export async function loadMore() {
  const next = state.search.next;
  if (next === null || !state.parts.length) return false;
  const seq = state.searchSeq;
  const button = $button("#more-results");
  button.disabled = true;
  const started = performance.now();
  try {
    const answer = await ask(searchOptions(), next);
    if (seq !== state.searchSeq) return false;
    const before = shownResults().length;
    renderResults(answer, searchOptions(), Math.round(performance.now() - started));
    return shownResults().length > before;
  } catch (e) {
    if (seq === state.searchSeq) setMessage($("#search-message"), explain(e).text, "error");
    return false;
  } finally {
    button.disabled = false;
  }
}

/**
 * /search for the query: one part towards something as a GET (a picture, a text, a content
 * hash: an upload the daemon has seen) or a form (an upload), anything else as a combined
 * query in JSON. ``offset``: the results to skip (the next page).
 * @param {SearchOptions} options
 * @param {number} offset
 * @returns {Promise<SearchAnswer>}
 */
async function ask(options, offset) {
  const only = state.parts.length === 1 && state.parts[0].weight > 0 ? state.parts[0] : null;
  const paged = { ...options, offset: offset || "" };
  if (only && only.kind === "image") return (await api(`/search?image=${pathParam(only)}&${query(paged)}`)).body;
  if (only && only.kind === "text") return (await api(`/search?${query({ text: only.text, ...paged })}`)).body;
  if (only && (only.kind === "hash" || (only.kind === "upload" && only.hash))) {
    return (await api(`/search?${query({ hash: only.hash, ...paged })}`)).body;
  }
  if (only && only.kind === "upload") {
    const form = new FormData();
    form.append("image", only.file, only.file.name || "pasted.png");
    for (const [key, value] of Object.entries(paged)) if (value) form.append(key, String(value));
    return (await api("/search", { method: "POST", body: form })).body;
  }
  if (state.parts.some((p) => p.kind === "hash")) throw new Error(LOST_UPLOAD);
  /** @type {Record<string, unknown>} */
  const body = { query: await Promise.all(state.parts.map(partJson)), limit: Number(options.limit) };
  if (offset) body.offset = offset;
  if (options.extractor) body.extractor = options.extractor;
  for (const key of /** @type {const} */ (["folder", "taken_after", "taken_before"])) if (options[key]) body[key] = options[key];
  const headers = { "Content-Type": "application/json" };
  return (await api("/search", { method: "POST", headers, body: JSON.stringify(body) })).body;
}

/**
 * A page of results: the first replaces the grid, a later one ("More results") adds to it.
 * @param {SearchAnswer} answer
 * @param {SearchOptions} options
 * @param {number} ms
 */
function renderResults(answer, options, ms) {
  const grid = $("#results");
  const page = answer.results || [];
  const first = !state.search.results.length;
  state.search.results = [...state.search.results, ...page];
  state.search.next = answer.next_offset ?? null;
  const count = state.search.results.length;
  let where = answer.folder ? ` in ${answer.folder}` : "";
  if (options.taken_after || options.taken_before) where += `, taken ${options.taken_after || "…"} – ${options.taken_before || "…"}`;
  const pictures = plural(count, "picture");
  setMessage($("#search-message"), count ? `${pictures} ${describe()}${where} · ${answer.extractor || ""} · ${ms} ms` : `No pictures ${describe()}${where}.`);
  const form = $("#search-form");
  form.classList.toggle("compact", count > 0); // the drop area shrinks once there are results
  form.classList.toggle("folded", count > 0); // and on a phone the form folds away: results on the first screen
  $("#unfold").setAttribute("aria-expanded", String(!count));
  $("#fold-what").textContent = `${pictures} ${describe()}`;
  grid.removeAttribute("aria-busy");
  const cards = page.map((item) => {
    const el = card(item, { open: view, score: true, refine, roving: true });
    el.hidden = !state.search.unfolded && !close(item); // a weaker match waits, in its place, behind the button
    return el;
  });
  if (first) grid.replaceChildren(...cards);
  else grid.append(...cards);
  keepTabStop(grid);
  showFold();
  $button("#more-results").hidden = state.search.next === null || !page.length;
}

/**
 * The viewer on a result.
 * @param {Item} item
 */
function view(item) {
  const seq = state.searchSeq;
  const source = {
    items: shownResults,
    more: moreLikeThis,
    refine,
    loadMore: () => (state.search.next === null ? Promise.resolve(false) : loadMore()),
    /** @param {number} index the focus to its card, unless a new search (More like this, + or −) replaced the grid */
    closed: (index) => seq === state.searchSeq && focusCard($("#results"), index),
  };
  openViewer(source, shownResults().indexOf(item));
}

/**
 * Show the search an address names (Back, reload, a bookmark): run it, unless it is the one
 * shown; an address without a query empties the view.
 * @param {URLSearchParams} params
 * @param {boolean} [push] a removed last chip: a new step in the history
 */
export function restore(params, push = false) {
  const parts = partsOf(params);
  const options = optionsOf(params);
  const address = parts.length ? addressOf(parts, options) : "";
  if (address && address === state.search.address && state.parts.length) return;
  if (parts.length) setOptions(options); // an empty query (the last chip removed) keeps the filters
  clearParts();
  state.parts.push(...parts);
  if (parts.length) {
    runSearch(push);
    return;
  }
  ++state.searchSeq;
  state.search = { results: [], next: null, address: "", waiting: false, unfolded: false };
  $("nav a[data-view=search]").setAttribute("href", "#search");
  if (push) history.pushState(null, "", "#search");
  showParts();
  $("#results").replaceChildren();
  showFold();
  $button("#more-results").hidden = true;
  $("#search-form").classList.remove("folded", "compact");
  welcome();
}

/** The search form's controls: a text, a picture from the file picker, the options. */
export function bindSearch() {
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $input("#text").value.trim();
    if (text && !$input("#text").disabled) {
      clearParts();
      state.parts.push({ kind: "text", weight: 1, text, label: text });
    }
    runSearch();
  });
  const file = $input("#file");
  file.addEventListener("change", () => {
    useFile(file.files?.[0]);
    file.value = ""; // choosing the same file again searches again
  });
  $select("#extractor").addEventListener("change", () => {
    updateTextAbility();
    runSearch();
  });
  for (const id of ["#limit", "#folder", "#taken-after", "#taken-before"]) $(id).addEventListener("change", () => runSearch());
  $button("#more-results").addEventListener("click", () => loadMore());
  $button("#show-weaker").addEventListener("click", unfold);
  bindGrid($("#results"));
  $button("#unfold").addEventListener("click", () => {
    $("#search-form").classList.remove("folded");
    $("#unfold").setAttribute("aria-expanded", "true");
    ($input("#text").disabled ? $("#file-label") : $input("#text")).focus();
  });
}

/** The search view and the search the address names, if it names one (at start, on Back/Forward). */
export function restoreFromAddress() {
  showView("search");
  restore(readAddress().params);
}
