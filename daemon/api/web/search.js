// @ts-check
// The search view: the query's parts sent to /search (GET for one picture or text, a form for
// an upload, JSON for a combined query), and the results as a grid of cards.

import { api, pathParam, query } from "./api.js";
import { card } from "./card.js";
import { $, $input, $select, setMessage } from "./dom.js";
import { number } from "./format.js";
import { clearParts, describe, imagePart, partJson, renderParts, uploadPart } from "./query.js";
import { state } from "./state.js";
import { showSearch } from "./views.js";

/** @typedef {import("./types.js").Item} Item */
/** @typedef {import("./types.js").Part} Part */
/** @typedef {import("./types.js").SearchAnswer} SearchAnswer */
/** @typedef {{limit: string, extractor: string, folder: string, taken_after: string, taken_before: string}} SearchOptions */

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
    note.textContent =
      `No text search: ${ex.name} (${ex.model}) reads pictures, not words. ` +
      `Add "clip" to index.extractors in the daemon's settings to search by description.`;
  }
}

/** Before any query: how many pictures there are and what to do. */
export function welcome() {
  const stats = state.stats;
  if (!stats || stats.images === null || stats.images === undefined) return;
  setMessage(
    $("#search-message"),
    stats.images
      ? `${number.format(stats.images)} pictures indexed. Choose, drop or paste a picture to find ones like it.`
      : "Nothing is indexed yet: add a folder to index.watch_dirs, or GET /add?image=<folder>.",
  );
}

/**
 * Search with a picture from the user's disk.
 * @param {File | null | undefined} file
 */
export function useFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setMessage($("#search-message"), `${file.name} is not a picture (${file.type}).`, "error");
    return;
  }
  const part = uploadPart(file);
  clearParts();
  state.parts.push(part);
  showSearch();
  runSearch();
}

/** @param {Item} item */
export function moreLikeThis(item) {
  clearParts();
  state.parts.push(imagePart(item, 1));
  showSearch(true);
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
  renderParts({
    changed: runSearch,
    emptied: () => {
      showParts();
      $("#results").replaceChildren();
      welcome();
    },
  });
}

/** Search with the query as it stands; the answer of the latest search wins. */
export async function runSearch() {
  showParts();
  if (!state.parts.length) return;
  const seq = ++state.searchSeq;
  const message = $("#search-message");
  const options = searchOptions();
  setMessage(message, "Searching…", "busy");
  $("#results").setAttribute("aria-busy", "true");
  const started = performance.now();
  /** @type {SearchAnswer} */
  let answer;
  try {
    answer = await ask(options);
  } catch (e) {
    if (seq !== state.searchSeq) return;
    $("#results").removeAttribute("aria-busy");
    setMessage(message, e instanceof Error ? e.message : String(e), "error");
    return;
  }
  if (seq !== state.searchSeq) return;
  const results = answer.results || [];
  const ms = Math.round(performance.now() - started);
  let where = answer.folder ? ` in ${answer.folder}` : "";
  if (options.taken_after || options.taken_before) where += `, taken ${options.taken_after || "…"} – ${options.taken_before || "…"}`;
  setMessage(
    message,
    results.length ? `${results.length} pictures like ${describe()}${where} · ${answer.extractor || ""} · ${ms} ms` : `Nothing like ${describe()}${where}.`,
  );
  renderResults(results);
}

/**
 * /search for the query: one part towards something as a GET (a picture, a text) or a form (an
 * upload), anything else as a combined query in JSON.
 * @param {SearchOptions} options
 * @returns {Promise<SearchAnswer>}
 */
async function ask(options) {
  const only = state.parts.length === 1 && state.parts[0].weight > 0 ? state.parts[0] : null;
  if (only && only.kind === "image") return (await api(`/search?image=${pathParam(only)}&${query(options)}`)).body;
  if (only && only.kind === "text") return (await api(`/search?${query({ text: only.text, ...options })}`)).body;
  if (only) {
    const form = new FormData();
    form.append("image", only.file, only.file.name || "pasted.png");
    for (const [key, value] of Object.entries(options)) if (value) form.append(key, value);
    return (await api("/search", { method: "POST", body: form })).body;
  }
  /** @type {Record<string, unknown>} */
  const body = { query: await Promise.all(state.parts.map(partJson)), limit: Number(options.limit) };
  if (options.extractor) body.extractor = options.extractor;
  for (const key of /** @type {const} */ (["folder", "taken_after", "taken_before"])) if (options[key]) body[key] = options[key];
  const headers = { "Content-Type": "application/json" };
  return (await api("/search", { method: "POST", headers, body: JSON.stringify(body) })).body;
}

/** @param {Item[]} results */
function renderResults(results) {
  const grid = $("#results");
  $("#search-form").classList.toggle("compact", results.length > 0);
  grid.removeAttribute("aria-busy");
  grid.replaceChildren(...results.map((item) => card(item, { more: moreLikeThis, score: true, refine })));
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
  for (const id of ["#limit", "#folder", "#taken-after", "#taken-before"]) $(id).addEventListener("change", runSearch);
}
