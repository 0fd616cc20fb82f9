// @ts-check
// The duplicates view: /duplicates as groups of cards side by side, a page of groups at a
// time; while the daemon compares (HTTP 202), its progress, asked again each second.

import { api, query } from "./api.js";
import { card } from "./card.js";
import { $, $button, $input, $select, bar, h, setMessage } from "./dom.js";
import { number, plural } from "./format.js";
import { moreLikeThis } from "./search.js";
import { state } from "./state.js";
import { openViewer } from "./viewer.js";

/** @typedef {import("./types.js").DuplicatesAnswer} DuplicatesAnswer */
/** @typedef {import("./types.js").Group} Group */
/** @typedef {import("./types.js").Item} Item */

const DUP_PAGE = 20;

/**
 * Ask for the page of groups that starts at ``offset``; a newer request's answer wins.
 * @param {number} offset
 */
export async function loadDuplicates(offset) {
  const seq = ++state.dup.seq;
  state.dup.loaded = true;
  state.dup.offset = offset;
  const message = $("#dup-message");
  const params = {
    extractor: $select("#dup-extractor").value,
    kind: $select("#dup-kind").value,
    threshold: $input("#dup-threshold").value,
    folder: $input("#dup-folder").value.trim(),
    sort: $select("#dup-sort").value,
    offset,
    limit: DUP_PAGE,
  };
  setMessage(message, "Looking for duplicates…", "busy");
  /** @type {{status: number, body: DuplicatesAnswer}} */
  let answer;
  try {
    answer = await api(`/duplicates?${query(params)}`);
  } catch (e) {
    if (seq === state.dup.seq) setMessage(message, e instanceof Error ? e.message : String(e), "error");
    return;
  }
  if (seq !== state.dup.seq) return;
  const body = answer.body;
  if (answer.status === 202) {
    const c = body.computing || {};
    message.replaceChildren(
      `Comparing pictures (${c.phase || "queued"}, ${number.format(c.done || 0)} of ${number.format(c.total || 0)})…`,
      bar(c.progress, "duplicate search progress"),
    );
    message.className = "message busy";
    setTimeout(() => seq === state.dup.seq && loadDuplicates(offset), 1000);
    return;
  }
  renderDuplicates(body);
}

/** @param {DuplicatesAnswer} body */
function renderDuplicates(body) {
  const first = body.offset + 1;
  const last = body.offset + body.groups.length;
  const kind = body.kind === "exact" ? "identical files" : body.kind === "near" ? "near duplicates" : "copies and near duplicates";
  let text = body.total
    ? `${plural(body.total, "group")} of ${kind} at similarity ≥ ${body.threshold} · ${body.extractor}`
    : `No duplicates at similarity ≥ ${body.threshold}.`;
  if (body.stale) text += " · the catalogue changed since: updating in the background";
  setMessage($("#dup-message"), text);
  $("#dup-groups").replaceChildren(...body.groups.map(groupPanel));
  $("#dup-pager").hidden = !body.total || (body.offset === 0 && body.next_offset === null);
  $("#dup-page").textContent = body.total ? `${first}–${last} of ${number.format(body.total)}` : "";
  $button("#dup-prev").disabled = body.offset === 0;
  $button("#dup-next").disabled = body.next_offset === null;
  state.dup.next = body.next_offset;
}

/** @param {Group} group */
function groupPanel(group) {
  const members = h("ul", { class: "members" });
  members.append(...group.members.map((member) => card(member, { open: (item) => view(group, members, item), size: true })));
  return h(
    "article",
    { class: "group panel" },
    h(
      "header",
      {},
      h("span", { class: `badge ${group.kind}` }, group.kind === "exact" ? "identical" : "similar"),
      h("span", {}, plural(group.files, "file")),
      group.kind === "near" ? h("span", { class: "muted" }, `similarity ≥ ${group.similarity.toFixed(3)}`) : null,
    ),
    members,
  );
}

/**
 * The viewer on a group's member, its Previous and Next the group's other members.
 * @param {Group} group
 * @param {HTMLElement} members the group's list of cards: the focus returns to one of them
 * @param {Item} item
 */
function view(group, members, item) {
  const closed = (/** @type {number} */ index) => /** @type {HTMLElement | undefined} */ (members.querySelectorAll(".thumb")[index])?.focus();
  openViewer({ items: () => group.members, more: moreLikeThis, closed }, group.members.indexOf(item));
}

/** The form and the pager. */
export function bindDuplicates() {
  $("#dup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadDuplicates(0);
  });
  $("#dup-prev").addEventListener("click", () => loadDuplicates(Math.max(0, state.dup.offset - DUP_PAGE)));
  $("#dup-next").addEventListener("click", () => state.dup.next !== null && loadDuplicates(state.dup.next));
}
