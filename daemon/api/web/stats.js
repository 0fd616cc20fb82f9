// @ts-check
// /stats, asked every second on the status and folders views and every 5 s elsewhere: the
// models in the forms, the watched folders offered, the status dot in the menu, the status view
// itself, the "starting" and "cannot reach the daemon" line under the menu.

import { ApiError, api } from "./api.js";
import { loadDuplicates } from "./duplicates.js";
import { $, $select, h, selectionIn, setBanner } from "./dom.js";
import { loadFolders } from "./folders.js";
import { runSearch, updateTextAbility, welcome } from "./search.js";
import { IDLE_POLL_MS, MAX_RETRY_MS, POLL_MS, state } from "./state.js";
import { renderStatus } from "./status.js";

/** @typedef {import("./types.js").Stats} Stats */

/** Ask /stats now, then again after the view's interval (longer while the tab is hidden).
 * /stats answers while the daemon loads its models (ready: false, its phase): the page says
 * "Starting" until it is ready; a daemon that cannot be reached is asked again, less and less
 * often, and the line goes by itself once it answers. */
export async function poll() {
  clearTimeout(state.pollTimer);
  if (!$("#login-view").hidden) return;
  let wait = document.hidden ? IDLE_POLL_MS * 4 : state.view === "status" || state.view === "folders" ? POLL_MS : IDLE_POLL_MS;
  try {
    const { body } = await api("/stats");
    state.stats = body;
    state.failures = 0;
    if (!body.ready) wait = Math.min(wait, POLL_MS);
    const phase = body.phase && !["starting", "loading models"].includes(body.phase) ? ` (${body.phase})` : "";
    setBanner(body.ready ? "" : `Starting: loading models…${phase} Searches run once they are loaded.`, "busy");
    applyStats(body);
    if (body.ready && state.search.waiting) runSearch(false); // the search the daemon's absence stopped
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    $("#status-dot").className = "dot bad";
    const text = e instanceof Error ? e.message : String(e);
    if (e instanceof ApiError && e.status === 0) {
      wait = Math.min(MAX_RETRY_MS, POLL_MS * 2 ** ++state.failures);
      setBanner(`Cannot reach the daemon (is it running?): asking again in ${Math.round(wait / 1000)} s.`, "error");
      // the line says it once: the status view keeps (or shows) the last figures it had
      if (state.view === "status" && state.stats && !$("#status-body").children.length) renderStatus(state.stats);
    } else if (state.view === "status") $("#status-body").replaceChildren(h("p", { class: "message error" }, text));
  }
  state.pollTimer = setTimeout(poll, wait);
}

/**
 * A model menu: rebuilt only when the models change, so a choice in progress stays.
 * @param {HTMLSelectElement} select
 * @param {string[]} names
 * @param {Stats} stats
 */
function fillSelect(select, names, stats) {
  const keep = select.value;
  const wanted = names.join("\n");
  if (select.dataset.names !== wanted) {
    select.replaceChildren(...names.map((name) => h("option", { value: name, title: stats.extractors[name].model }, name)));
    select.dataset.names = wanted;
    select.value = names.includes(keep) ? keep : stats.active_extractor || names[0] || "";
  }
  select.disabled = names.length < 2;
}

/** @param {Stats} stats */
function applyStats(stats) {
  const names = Object.keys(stats.extractors || {});
  fillSelect($select("#extractor"), names, stats);
  fillSelect($select("#dup-extractor"), names, stats);
  updateTextAbility();
  const folders = (stats.watch || []).map((w) => w.folder);
  const list = $("#folders");
  if (list.dataset.folders !== folders.join("\n")) {
    list.replaceChildren(...folders.map((f) => h("option", { value: f })));
    list.dataset.folders = folders.join("\n");
  }
  const changes = Object.values(stats.extractors || {}).map((ex) => ex.change).filter((c) => c);
  const busy = !stats.ready || stats.pending > 0 || changes.length > 0 || (stats.jobs || []).some((j) => j.state !== "done" && j.state !== "failed");
  const troubled = Boolean(stats.fallback) || changes.some((c) => c?.state === "failed") || (stats.storage && stats.storage.state !== "ok") || (stats.watch || []).some((w) => w.state === "offline");
  $("#status-dot").className = `dot ${troubled ? "warn" : busy ? "busy" : "ok"}`;
  if (state.view === "status" && !selectionIn($("#status-body"))) renderStatus(stats); // a copy in progress stays
  if (state.view === "folders") loadFolders();
  if (state.view === "duplicates" && !state.dup.loaded) loadDuplicates(0);
  if (state.view === "search" && !state.parts.length && !$("#results").children.length) welcome();
}
