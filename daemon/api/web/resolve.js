// @ts-check
// Acting on duplicates: POST /duplicates/resolve (the others of each group to the Trash), its
// outcome in words ("3 files moved to the Trash; 1 skipped: changed since it was indexed"), and
// the undo bar after each action, whose Undo is POST /duplicates/undo. "Resolve all" asks first:
// a dry run says how many files go where, and only the confirmation sends the real request.

import { api } from "./api.js";
import { $, $button, h } from "./dom.js";
import { number, plural } from "./format.js";

/** @typedef {import("./types.js").Resolution} Resolution */
/** @typedef {import("./types.js").ResolveAnswer} ResolveAnswer */
/** @typedef {import("./types.js").ResolvedFile} ResolvedFile */
/** @typedef {import("./types.js").UndoAnswer} UndoAnswer */

/** Files one request may name (the daemon answers 400 beyond): more are sent in several. */
export const MAX_FILES = 10000;
const HIDE_MS = 8000; // "N files put back" stays this long

/**
 * The groups in requests of at most MAX_FILES files (a group is never split).
 * @param {Resolution[]} groups
 */
function batches(groups) {
  /** @type {Resolution[][]} */
  const out = [[]];
  let files = 0;
  for (const group of groups) {
    const size = group.others.length + 1;
    if (files + size > MAX_FILES && out[out.length - 1].length) {
      out.push([]);
      files = 0;
    }
    out[out.length - 1].push(group);
    files += size;
  }
  return out.filter((batch) => batch.length);
}

/**
 * What a resolve did (or, in a dry run, would do): the answers of every request sent, and the
 * error that stopped the rest, if any (what was done before it stays done, and undoable).
 * @typedef {{answers: ResolveAnswer[], error: string | null}} Outcome
 */

/**
 * Send the others of each group to the Trash (``dryRun``: only say what would happen).
 * @param {Resolution[]} groups
 * @param {boolean} dryRun
 * @returns {Promise<Outcome>}
 */
export async function resolve(groups, dryRun) {
  /** @type {ResolveAnswer[]} */
  const answers = [];
  for (const batch of batches(groups)) {
    try {
      const request = { groups: batch, action: "trash", dry_run: dryRun };
      const { body } = await api("/duplicates/resolve", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) });
      answers.push(body);
    } catch (e) {
      return { answers, error: words(e) };
    }
  }
  return { answers, error: null };
}

/**
 * An error as a sentence the page can show (the daemon's own words, with its status).
 * @param {unknown} e
 */
export function words(e) {
  const text = e instanceof Error ? e.message : String(e);
  const status = e && typeof e === "object" && "status" in e ? Number(e.status) : 0;
  if (status === 404 || status === 405) return `this daemon cannot act on duplicates (HTTP ${status}: ${text}); is it an older version?`;
  return status ? `${text} (HTTP ${status})` : text;
}

/**
 * The Trash folder a file goes to: its ``to`` up to the Trash's ``files/`` folder.
 * @param {string} to
 */
export function trashOf(to) {
  const cut = to.lastIndexOf("/files/");
  return cut > 0 ? to.slice(0, cut) : to.slice(0, Math.max(1, to.lastIndexOf("/")));
}

/** @param {Outcome} outcome */
const filesOf = (outcome) => outcome.answers.flatMap((answer) => answer.files);

/**
 * "2 changed since it was indexed, 1 kept by another group": why files were skipped, by reason.
 * @param {ResolvedFile[]} files
 */
export function skippedWords(files) {
  /** @type {Map<string, number>} */
  const reasons = new Map();
  for (const file of files) if (file.state === "skipped") reasons.set(file.reason || "no reason given", (reasons.get(file.reason || "no reason given") || 0) + 1);
  return Array.from(reasons, ([reason, count]) => `${number.format(count)} ${reason}`).join("; ");
}

/**
 * Where the files go, summed by Trash folder: "37 files go to the Trash (/home/u/.local/share/Trash)",
 * "1 file goes to the Trash (...)".
 * @param {ResolvedFile[]} files
 * @param {string} state "planned" (a dry run) or "done"
 * @param {[string, string]} verb for one file and for several: ["goes", "go"] or ["moved", "moved"]
 */
function destinations(files, state, verb) {
  /** @type {Map<string, number>} */
  const by = new Map();
  for (const file of files) if (file.state === state && file.to) by.set(trashOf(file.to), (by.get(trashOf(file.to)) || 0) + 1);
  return Array.from(by, ([trash, count]) => `${plural(count, `file ${verb[0]}`, `files ${verb[1]}`)} to the Trash (${trash})`);
}

/**
 * A dry run's plan in one sentence: "37 files go to the Trash (PATH), 20 kept; 2 skipped: REASONS".
 * @param {Outcome} outcome
 * @param {Resolution[]} groups
 */
export function planWords(outcome, groups) {
  const files = filesOf(outcome);
  const going = destinations(files, "planned", ["goes", "go"]);
  const kept = new Set(groups.map((group) => group.keep)).size;
  const skipped = files.filter((file) => file.state === "skipped");
  let text = `${going.length ? going.join(", ") : "No file goes to the Trash"}, ${number.format(kept)} kept`;
  if (skipped.length) text += `; ${plural(skipped.length, "file")} skipped (${skippedWords(files)})`;
  return `${text}.`;
}

/**
 * How many files a dry run would move.
 * @param {Outcome} outcome
 */
export function planned(outcome) {
  return filesOf(outcome).filter((file) => file.state === "planned").length;
}

/** The undo ids of the last action: the undo bar's Undo puts them all back. */
let undoIds = /** @type {(string | number)[]} */ ([]);
/** What the undo bar's Undo does once the files are back (the view reloads): given their paths. */
let afterUndo = /** @type {(restored: string[]) => void} */ (() => {});

/**
 * The undo bar after an action: what was done, what was skipped and why, and Undo.
 * @param {Outcome} outcome
 * @param {(restored: string[]) => void} after what Undo does once done, with the paths put back
 */
export function showDone(outcome, after) {
  const files = filesOf(outcome);
  const done = files.filter((file) => file.state === "done").length;
  const moved = destinations(files, "done", ["moved", "moved"]);
  const parts = [done ? `${plural(done, "file")} moved to the Trash` : "Nothing was moved"];
  if (moved.length > 1) parts[0] = moved.join(", ");
  const skipped = files.filter((file) => file.state === "skipped").length;
  if (skipped) parts.push(`${plural(skipped, "file")} skipped (${skippedWords(files)})`);
  if (outcome.error) parts.push(`${done ? "then it stopped" : "the daemon refused"}: ${outcome.error}`);
  undoIds = outcome.answers.map((answer) => answer.undo).filter((id) => id !== null && id !== undefined);
  afterUndo = after;
  showBar(parts.join("; "), outcome.error || !done ? "error" : "", undoIds.length > 0);
}

/**
 * @param {string} text
 * @param {string} kind "" or "error"
 * @param {boolean} undoable
 */
function showBar(text, kind, undoable) {
  const bar = $("#undo-bar");
  $("#undo-text").textContent = text;
  bar.className = `undo-bar ${kind}`.trim();
  $button("#undo-button").hidden = !undoable;
  $button("#undo-button").disabled = false;
  bar.hidden = false;
  if (undoable) $button("#undo-button").focus(); // the groups are redrawn: the focus waits here
}

/** Undo: every id of the last action, newest first; then what came back, in words. */
async function undo() {
  const ids = undoIds.slice().reverse();
  undoIds = [];
  $button("#undo-button").disabled = true;
  $("#undo-text").textContent = "Putting the files back…";
  let restored = 0;
  /** @type {string[]} */
  const back = [];
  /** @type {{state: string, reason: string | null}[]} */
  const skipped = [];
  for (const id of ids) {
    try {
      /** @type {{body: UndoAnswer}} */
      const { body } = await api("/duplicates/undo", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ undo: id }) });
      restored += body.restored;
      back.push(...body.files.filter((file) => file.state === "restored").map((file) => file.image));
      skipped.push(...body.files.filter((file) => file.state === "skipped"));
    } catch (e) {
      const text = e instanceof Error ? e.message : String(e);
      showBar(`Could not undo: ${text}${restored ? ` (${plural(restored, "file")} put back before that)` : ""}.`, "error", false);
      afterUndo(back);
      return;
    }
  }
  const reasons = skippedWords(skipped.map((file) => ({ image: "", keep: "", to: null, ...file, state: "skipped" })));
  showBar(`${plural(restored, "file")} put back${skipped.length ? `; ${plural(skipped.length, "file")} not (${reasons})` : ""}.`, skipped.length ? "error" : "", false);
  afterUndo(back);
  const shown = $("#undo-text").textContent;
  // all back: the bar goes by itself after a while (a file left out stays said until closed)
  if (!skipped.length) setTimeout(() => $("#undo-text").textContent === shown && $button("#undo-button").hidden && ($("#undo-bar").hidden = true), HIDE_MS);
}

/** The undo bar's buttons (once, at start). */
export function bindResolve() {
  $button("#undo-button").addEventListener("click", undo);
  $button("#undo-close").addEventListener("click", () => ($("#undo-bar").hidden = true));
}

/**
 * The warning a plan of similar shots carries: they are different pictures, not the keeper's.
 * @param {number} shots how many of the files that go are similar shots
 */
export function shotsWarning(shots) {
  const what = shots === 1 ? "is a similar shot: a different picture, not a copy" : "are similar shots: different pictures, not copies";
  return `${number.format(shots)} of these ${what}. Look at each group before they go.`;
}

/**
 * The confirmation before "resolve all": the plan in words, a warning (similar shots), the button
 * that does it, Cancel.
 * @param {string} text the plan
 * @param {number} files how many files go
 * @param {() => void} go
 * @param {string} [warning]
 */
export function confirmAll(text, files, go, warning = "") {
  const box = $("#dup-confirm");
  const cancel = () => {
    box.hidden = true;
    $button("#dup-resolve-all").focus();
  };
  box.replaceChildren(
    h("p", { id: "dup-confirm-text" }, text),
    ...(warning ? [h("p", { id: "dup-confirm-warning" }, warning)] : []),
    h("p", { class: "muted small" }, "Each group keeps its suggested keeper (your marks on this page are not used). Nothing is deleted: the Trash keeps the files, and Undo puts them back."),
    h(
      "div",
      { class: "folder-actions" },
      h("button", { type: "button", class: "danger", id: "dup-confirm-go", disabled: files === 0, onclick: () => ((box.hidden = true), go()) }, `Move ${plural(files, "file")} to the Trash`),
      h("button", { type: "button", id: "dup-confirm-cancel", onclick: cancel }, "Cancel"),
    ),
  );
  box.hidden = false;
  $button("#dup-confirm-cancel").focus();
}
