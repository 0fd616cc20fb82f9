// @ts-check
// The folders view: every watched folder (from the settings file, or added here) with its state,
// its counts and its job's progress; "Add folder" with completion of sub-folders as you type
// (/folders/browse), and "Stop watching" for a folder added here (its files are not touched).

import { ApiError, api, query } from "./api.js";
import { $, $input, bar, find, h, setMessage } from "./dom.js";
import { fmtWhen, number, plural } from "./format.js";

/** @typedef {import("./types.js").Folder} Folder */
/** @typedef {import("./types.js").FoldersAnswer} FoldersAnswer */
/** @typedef {import("./types.js").BrowseAnswer} BrowseAnswer */
/** @typedef {import("./types.js").FolderAdded} FolderAdded */

/** Folders whose "Stop watching" waits for its confirmation. */
const confirming = new Set();
let loading = 0; // a newer answer wins

/** Ask /folders and show them (each poll, while the view is shown). */
export async function loadFolders() {
  const seq = ++loading;
  /** @type {FoldersAnswer} */
  let answer;
  try {
    answer = (await api("/folders")).body;
  } catch (e) {
    const away = e instanceof ApiError && e.status === 0; // the line under the menu says so
    if (seq === loading && !away) setMessage($("#folders-summary"), e instanceof Error ? e.message : String(e), "error");
    return;
  }
  if (seq !== loading) return;
  // a root inside another says nothing more
  const roots = answer.roots.filter((root) => !answer.roots.some((other) => other !== root && root.startsWith(`${other}/`)));
  const where = answer.anywhere ? "any folder the daemon can read" : `folders inside ${roots.join(", ")}`;
  setMessage(
    $("#folders-summary"),
    answer.folders.length
      ? `${plural(answer.folders.length, "folder")} watched: new, changed and deleted pictures are picked up as they happen. Add ${where}.`
      : `No folder is watched yet. Add ${where}: its pictures are indexed and kept current.`,
  );
  render(answer.folders);
}

/** @param {Folder[]} folders */
function render(folders) {
  const list = $("#folders-list");
  /** @type {Map<string, HTMLElement>} */
  const rows = new Map();
  for (const li of list.children) if (li instanceof HTMLElement && li.dataset.folder) rows.set(li.dataset.folder, li);
  const wanted = folders.map((folder) => {
    const li = rows.get(folder.folder) || h("li", { class: "panel folder-row", "data-folder": folder.folder });
    update(li, folder);
    return li;
  });
  // rows kept in place keep the focus of their buttons, while the counts update every second
  if (wanted.some((li, i) => list.children[i] !== li) || list.children.length !== wanted.length) list.replaceChildren(...wanted);
}

/**
 * A folder's row: its facts, redrawn when they change; its buttons, only when they change.
 * @param {HTMLElement} li
 * @param {Folder} folder
 */
function update(li, folder) {
  const facts = JSON.stringify(folder);
  if (li.dataset.facts !== facts) {
    li.dataset.facts = facts;
    const old = li.querySelector(".folder-facts");
    const fresh = folderFacts(folder);
    if (old) old.replaceWith(fresh);
    else li.prepend(fresh);
  }
  const mode = !folder.removable ? "config" : confirming.has(folder.folder) ? "confirm" : "remove";
  if (li.dataset.mode !== mode) {
    li.dataset.mode = mode;
    li.querySelector(".folder-actions")?.remove();
    li.append(folderActions(folder, mode));
  }
}

/** @param {Folder} folder */
function folderFacts(folder) {
  const job = folder.job;
  const running = job && job.state !== "done" && job.state !== "failed";
  const counts = [plural(folder.files, "picture")];
  if (folder.pending) counts.push(`${number.format(folder.pending)} waiting`);
  if (folder.failed) counts.push(`${number.format(folder.failed)} could not be read`);
  const source = folder.source === "config" ? "from the settings file" : `added ${fmtWhen(folder.added_at)}`;
  return h(
    "div",
    { class: "folder-facts" },
    h(
      "div",
      { class: "job-head" },
      h("span", { class: "path" }, folder.folder),
      h("span", {}, h("span", { class: `badge ${folder.state}` }, folder.state), " ", h("span", { class: `badge ${folder.source}` }, folder.source === "config" ? "settings" : "added")),
    ),
    running && job ? bar(job.progress, `${folder.folder}: indexing progress`) : null,
    h(
      "div",
      { class: "muted small" },
      counts.join(" · "),
      running && job ? ` · indexing: ${number.format(job.done)} of ${plural(job.found, "file")}` : "",
      ` · ${source}`,
    ),
    folder.error ? h("div", { class: "message error" }, folder.error) : null,
  );
}

/**
 * @param {Folder} folder
 * @param {string} mode "config": nothing to remove here; "remove"; "confirm": asked to be sure
 */
function folderActions(folder, mode) {
  if (mode === "config") {
    return h("div", { class: "folder-actions muted small" }, "Watched by the settings file (watch.directories): remove it there.");
  }
  if (mode === "remove") {
    const ask = () => {
      confirming.add(folder.folder);
      loadFolders().then(() => find(`[data-folder="${CSS.escape(folder.folder)}"] .confirm-stop`, HTMLButtonElement).focus());
    };
    return h("div", { class: "folder-actions" }, h("button", { type: "button", class: "stop", onclick: ask, "aria-label": `Stop watching ${folder.folder}` }, "Remove"));
  }
  const keep = () => {
    confirming.delete(folder.folder);
    loadFolders();
  };
  const stop = () => removeFolder(folder.folder);
  return h(
    "div",
    { class: "folder-actions confirm", role: "group", "aria-label": `Stop watching ${folder.folder}?` },
    h("span", {}, "Stop watching this folder? Its pictures leave the search; the files on disk are not touched."),
    h("button", { type: "button", class: "confirm-stop danger", onclick: stop }, "Stop watching"),
    h("button", { type: "button", onclick: keep }, "Keep"),
  );
}

/** @param {string} folder */
async function removeFolder(folder) {
  try {
    const { body } = await api(`/folders?${query({ folder })}`, { method: "DELETE" });
    setMessage($("#add-message"), "");
    setMessage($("#folders-message"), `Stopped watching ${body.folder}: ${plural(body.removed, "picture")} left the search (the files are where they were).`);
    $("#folders-message").focus();
  } catch (e) {
    setMessage($("#folders-message"), e instanceof Error ? e.message : String(e), "error");
  }
  confirming.delete(folder);
  loadFolders();
}

/** @param {SubmitEvent} event */
async function addFolder(event) {
  event.preventDefault();
  const folder = $input("#add-path").value.trim().replace(/(.)\/+$/, "$1");
  const message = $("#add-message");
  if (!folder) return;
  setMessage(message, `Adding ${folder}…`, "busy");
  try {
    /** @type {{status: number, body: FolderAdded}} */
    const { body } = await api("/folders", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ folder }) });
    const found = body.job ? `: indexing ${plural(body.job.found, "file")} found so far` : "";
    setMessage(message, body.already ? `${body.folder} is already watched.` : `Watching ${body.folder}${found}. Its progress shows below.`);
    $input("#add-path").value = "";
  } catch (e) {
    setMessage(message, e instanceof Error ? e.message : String(e), "error");
  }
  loadFolders();
}

/**
 * The datalist of sub-folders for what is typed: "/home/me/" lists the folders in /home/me,
 * "/home/me/Pi" those whose name starts with "Pi"; an empty box lists where one may start.
 */
async function complete() {
  const typed = $input("#add-path").value;
  const cut = typed.lastIndexOf("/");
  const parent = cut < 0 ? "" : typed.slice(0, cut) || "/";
  const start = typed.slice(cut + 1).toLowerCase();
  /** @type {BrowseAnswer} */
  let answer;
  try {
    answer = (await api(`/folders/browse?${query({ path: parent })}`)).body;
  } catch {
    return; // a folder that does not exist (yet) or is outside the roots: nothing to offer
  }
  if ($input("#add-path").value !== typed) return; // typed on since
  const offered = answer.folders.filter((f) => f.name.toLowerCase().startsWith(start));
  const choices = offered.map((f) => h("option", { value: f.path }, f.watched ? "watched" : ""));
  $("#add-choices").replaceChildren(...choices);
  $("#add-choices").dataset.for = typed; // the tests wait on it
}

/** The view's buttons and the path box (once, at start). */
export function bindFolders() {
  const form = $("#add-form");
  const toggle = $("#add-folder");
  /** @param {boolean} open */
  const show = (open) => {
    form.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) {
      $input("#add-path").focus();
      complete();
    } else toggle.focus();
  };
  toggle.addEventListener("click", () => show(form.hidden));
  $("#add-cancel").addEventListener("click", () => show(false));
  form.addEventListener("submit", (event) => addFolder(/** @type {SubmitEvent} */ (event)));
  let timer = 0;
  $input("#add-path").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(complete, 120); // one request per pause in the typing
  });
  $input("#add-path").addEventListener("keydown", (event) => event.key === "Escape" && show(false));
}
