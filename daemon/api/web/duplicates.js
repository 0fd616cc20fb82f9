// @ts-check
// The duplicates view: /duplicates by tier (a tab each for identical files, edited copies and
// similar shots, with their counts), a page of groups at a time; while the daemon compares
// (HTTP 202), its progress, asked again each second. Each group's pictures wrap (a group of 16
// shows all 16) and each is marked Keep or Trash: the suggested keeper Keep, with the reason,
// the others Trash. A group's Apply sends its marks (resolve.js); "Resolve all" asks first.
//
// Keyboard, on a group's pictures (one Tab stop a group): the arrows move, k keeps, t or Delete
// trashes, c compares with the keeper (compare.js), Enter or Space opens the viewer.

import { api, query } from "./api.js";
import { bindGrid, card, focusCard, keepTabStop } from "./card.js";
import { bindCompare, openCompare } from "./compare.js";
import { $, $$, $button, $input, $select, bar, h, setMessage } from "./dom.js";
import { number, plural, splitPath } from "./format.js";
import { bindResolve, confirmAll, planWords, planned, resolve, shotsWarning, showDone } from "./resolve.js";
import { moreLikeThis } from "./search.js";
import { state } from "./state.js";
import { openViewer } from "./viewer.js";

/** @typedef {import("./types.js").DuplicatesAnswer} DuplicatesAnswer */
/** @typedef {import("./types.js").Group} Group */
/** @typedef {import("./types.js").Member} Member */
/** @typedef {import("./types.js").Resolution} Resolution */
/** @typedef {import("./types.js").Tier} Tier */
/** @typedef {import("./compare.js").Mark} Mark */

const DUP_PAGE = 20;
const STALE_MS = 1500;
const ALL_PAGE = 1000; // "resolve all" reads every group of the tier, this many a request (the API's most)
/** @type {Tier[]} */
const TIERS = ["identical", "copies", "similar"];
/** What each tier is, under the tabs. */
const TIER_NOTES = {
  identical: "The same bytes: every file but the keeper can go, nothing of the picture is lost.",
  copies: "One picture, edited: re-encoded, resized, cropped a little, brightened. The keeper is the best copy.",
  similar: "The same scene, not the same picture (bursts, a second shot): look before you trash.",
};
const KIND_WORDS = { identical: "identical files", copies: "edited copies", similar: "similar shots" };

/** The tab shown; whether the user chose it (else the first tier with groups is shown); each member's mark. */
const view = {
  /** @type {Tier} */
  kind: "identical",
  chosen: false,
  /** @type {Map<string, Mark>} by path */
  marks: new Map(),
  /** @type {Record<Tier, number> | undefined} the last counts per tier */
  tiers: undefined,
  /** @type {Set<string>} files moved by an action: left out of an answer from before it (stale) */
  gone: new Set(),
  /** the query the marks belong to (another one starts from the suggested keepers) */
  asked: "",
  /** the groups drawn (the same again is not redrawn: the focus and the marks stay) */
  drawn: "",
};

/** @returns {Record<string, string | number>} the form's parameters */
function formParams() {
  return {
    extractor: $select("#dup-extractor").value,
    kind: view.kind,
    threshold: $input("#dup-threshold").value,
    folder: $input("#dup-folder").value.trim(),
    keep_in: $input("#dup-keep-in").value.trim(),
    sort: $select("#dup-sort").value,
  };
}

/**
 * Ask for the page of groups that starts at ``offset``; a newer request's answer wins.
 * @param {number} offset
 * @param {boolean} [again] asked again while the answer shown is stale: its line stays meanwhile
 */
export async function loadDuplicates(offset, again = false) {
  const seq = ++state.dup.seq;
  state.dup.loaded = true;
  state.dup.offset = offset;
  const message = $("#dup-message");
  if (!again) setMessage(message, "Looking for duplicates…", "busy");
  /** @type {{status: number, body: DuplicatesAnswer}} */
  let answer;
  try {
    answer = await api(`/duplicates?${query({ ...formParams(), offset, limit: DUP_PAGE })}`);
  } catch (e) {
    if (seq === state.dup.seq) setMessage(message, e instanceof Error ? e.message : String(e), "error");
    return;
  }
  if (seq !== state.dup.seq) return;
  const body = answer.body;
  if (answer.status === 202) {
    const c = body.computing || {};
    const what = c.phase === "checking" ? "checking the pixels of close pairs" : c.phase || "queued";
    message.replaceChildren(`Comparing pictures (${what}, ${number.format(c.done || 0)} of ${number.format(c.total || 0)})…`, bar(c.progress, "duplicate search progress"));
    message.className = "message busy";
    setTimeout(() => seq === state.dup.seq && loadDuplicates(offset), 1000);
    return;
  }
  const first = TIERS.find((tier) => body.tiers && body.tiers[tier] > 0);
  if (!view.chosen && !body.total && first && first !== view.kind) {
    view.kind = first; // nothing identical: the first tier that has groups
    loadDuplicates(0);
    return;
  }
  renderDuplicates(body);
  // an answer from before the last change (an action, its undo, a new file): asked again until
  // the daemon's new one is ready (what was shown stays, redrawn only if it changed)
  if (body.stale) setTimeout(() => seq === state.dup.seq && loadDuplicates(offset, true), STALE_MS);
}

/** @param {DuplicatesAnswer} body */
function renderDuplicates(body) {
  view.tiers = body.tiers;
  renderTabs();
  const kind = /** @type {Record<string, string>} */ (KIND_WORDS)[view.kind] || "duplicates";
  const cut = view.kind === "similar" ? ` at similarity ≥ ${body.threshold}` : "";
  let text = body.total ? `${plural(body.total, "group")} of ${kind}${cut} · ${body.extractor}` : `No ${kind}${cut}.`;
  if (body.stale) text += " · the catalogue changed since: updating…";
  setMessage($("#dup-message"), text, body.stale ? "busy" : "");
  if (!body.stale) view.gone.clear(); // the daemon's answer after the action: without them already
  const groups = body.groups
    .map((group) => ({ ...group, members: group.members.filter((member) => !view.gone.has(member.image)) }))
    .map((group) => ({ ...group, files: group.members.length }))
    .filter((group) => group.files > 1);
  const asked = JSON.stringify({ ...formParams(), offset: body.offset });
  if (asked !== view.asked) view.marks = new Map();
  view.asked = asked;
  for (const group of groups) for (const member of group.members) if (!view.marks.has(member.image)) view.marks.set(member.image, isKeeper(group, member) ? "keep" : "trash");
  const drawn = asked + JSON.stringify(groups);
  if (drawn !== view.drawn || !$("#dup-groups").children.length) {
    view.drawn = drawn;
    $("#dup-groups").replaceChildren(...groups.map(groupPanel));
    for (const grid of $$("#dup-groups .members")) keepTabStop(grid);
  }
  $button("#dup-resolve-all").hidden = !body.total;
  $button("#dup-resolve-all").textContent = body.total === 1 ? "Resolve the group with its suggested keeper…" : `Resolve all ${plural(body.total, "group")} with the suggested keepers…`;
  $("#dup-pager").hidden = !body.total || (body.offset === 0 && body.next_offset === null);
  $("#dup-page").textContent = body.total ? `${body.offset + 1}–${body.offset + body.groups.length} of ${number.format(body.total)}` : "";
  $button("#dup-prev").disabled = body.offset === 0;
  $button("#dup-next").disabled = body.next_offset === null;
  state.dup.next = body.next_offset;
}

/** The tabs: which is selected, each with its count of groups. */
function renderTabs() {
  const tiers = view.tiers;
  for (const tab of $$("#dup-tabs [role=tab]")) {
    const tier = tab.dataset.kind || "";
    const selected = tier === view.kind;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    const count = tab.querySelector(".count");
    if (count) count.textContent = tiers ? number.format(tiers[/** @type {Tier} */ (tier)] ?? 0) : "";
    if (selected) $("#dup-groups").setAttribute("aria-labelledby", tab.id);
  }
  $("#dup-tier-note").textContent = /** @type {Record<string, string>} */ (TIER_NOTES)[view.kind] || "";
}

/**
 * @param {Group} group
 * @param {Member} member
 */
function isKeeper(group, member) {
  return group.keep ? member.image === group.keep : member.keep ?? member === group.members[0];
}

/** @param {Group} group */
function groupPanel(group) {
  const members = h("ul", { class: "members", "aria-label": `${plural(group.files, "picture")}`, "aria-describedby": "dup-keys" });
  const panel = h("article", { class: `group panel ${group.files > 3 ? "wide" : ""}`.trim(), "data-kind": group.kind });
  const keeper = group.members.find((member) => isKeeper(group, member)) || group.members[0];
  members.append(...group.members.map((member, index) => memberCard(group, member, index, members)));
  bindGrid(members);
  members.addEventListener("keydown", (event) => memberKeys(event, group, members));
  const summary = h("span", { class: "group-summary muted" });
  const apply = h("button", { type: "button", class: "apply", onclick: () => applyGroup(group, panel) }, "Apply");
  panel.append(
    h(
      "header",
      {},
      h("span", { class: `badge ${group.kind}` }, group.kind),
      h("span", {}, plural(group.files, "file")),
      group.kind !== "identical" ? h("span", { class: "muted" }, `similarity ≥ ${group.similarity.toFixed(3)}`) : null,
    ),
    h("p", { class: "keep-reason" }, "Keep ", h("strong", { title: keeper.image }, splitPath(keeper.image).name), group.keep_reason ? `: ${group.keep_reason}` : ""),
    members,
    h("footer", {}, summary, apply),
    h("p", { class: "message", role: "status", "data-group-message": true }),
  );
  updateGroup(group, panel);
  return panel;
}

/**
 * A member's card, with its mark (Keep or Trash) and how it matches.
 * @param {Group} group
 * @param {Member} member
 * @param {number} index
 * @param {HTMLElement} members the group's list: the viewer and the compare view give the focus back to it
 */
function memberCard(group, member, index, members) {
  const li = card(member, { open: () => showMember(group, members, index), size: true, roving: true });
  li.dataset.image = member.image;
  li.querySelector(".thumb")?.append(h("span", { class: "mark-badge", "aria-hidden": "true" }));
  const meta = li.querySelector(".meta");
  if (group.kind !== "identical" && meta && !isKeeper(group, member)) {
    const framing = member.framing === null || member.framing === undefined ? "" : ` · framing ${member.framing.toFixed(2)}`;
    meta.append(h("span", { class: "muted small scores", title: "cosine: how alike the model finds them; framing: how much one picture is the other, pixel by pixel" }, `cosine ${(member.score ?? 0).toFixed(3)}${framing}`));
  }
  if (group.kind !== "identical" && member.same_bytes && meta) meta.append(h("span", { class: "muted small" }, `+ ${plural(member.same_bytes, "file")} with these bytes`));
  const name = splitPath(member.image).name;
  /** @param {Mark} mark */
  const button = (mark) =>
    h(
      "button",
      { type: "button", class: `mark-${mark}`, tabindex: -1, "aria-label": `${mark === "keep" ? "Keep" : "Trash"} ${name}`, onclick: () => setMark(member, mark) },
      mark === "keep" ? "Keep" : "Trash",
    );
  // the marks take the Open link's place: the viewer and the compare view have it
  li.querySelector(".actions")?.replaceChildren(h("span", { class: "marks" }, button("keep"), button("trash")));
  return li;
}

/**
 * k, t, Delete and c on a group's picture (the arrows, Enter and Space are the grid's and the button's).
 * @param {KeyboardEvent} event
 * @param {Group} group
 * @param {HTMLElement} members
 */
function memberKeys(event, group, members) {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  const thumbs = Array.from(members.querySelectorAll(".card .thumb"));
  const at = thumbs.indexOf(/** @type {Element} */ (event.target));
  if (at < 0) return;
  const member = group.members[at];
  const key = event.key.toLowerCase();
  if (key === "k") setMark(member, "keep");
  else if (key === "t" || event.key === "Delete") setMark(member, "trash");
  else if (key === "c") compare(group, members, at);
  else return;
  event.preventDefault();
}

/**
 * Mark a member; its card and its group's summary follow.
 * @param {Member} member
 * @param {Mark} mark
 */
function setMark(member, mark) {
  view.marks.set(member.image, mark);
  const li = $$("#dup-groups .card").find((el) => el.dataset.image === member.image);
  const panel = li?.closest(".group");
  const group = panel ? groupOf(panel) : null;
  if (panel instanceof HTMLElement && group) updateGroup(group, panel);
}

/** @type {WeakMap<Element, Group>} each panel's group */
const groups = new WeakMap();

/** @param {Element} panel */
function groupOf(panel) {
  return groups.get(panel) || null;
}

/**
 * The cards' marks, the summary ("1 kept, 3 to the Trash") and the Apply button's label.
 * @param {Group} group
 * @param {HTMLElement} panel
 */
function updateGroup(group, panel) {
  groups.set(panel, group);
  for (const li of panel.querySelectorAll(".card")) {
    if (!(li instanceof HTMLElement)) continue;
    const mark = view.marks.get(li.dataset.image || "") || "keep";
    li.classList.toggle("keep", mark === "keep");
    li.classList.toggle("trash", mark === "trash");
    const badge = li.querySelector(".mark-badge");
    if (badge) badge.textContent = mark === "keep" ? "Keep" : "Trash";
    const thumb = li.querySelector(".thumb");
    const name = li.querySelector(".name")?.textContent || "";
    thumb?.setAttribute("aria-label", `View ${name}, marked ${mark === "keep" ? "Keep" : "Trash"}`); // the badge is only seen
    for (const b of li.querySelectorAll(".marks button")) b.setAttribute("aria-pressed", String(b.classList.contains(`mark-${mark}`)));
  }
  const { keep, trash } = split(group);
  const summary = panel.querySelector(".group-summary");
  if (summary) summary.textContent = `${number.format(keep.length)} kept, ${plural(trash.length, "file")} to the Trash`;
  const apply = panel.querySelector(".apply");
  if (apply instanceof HTMLButtonElement) {
    apply.textContent = trash.length ? `Apply: ${plural(trash.length, "file")} to the Trash` : "Apply";
    apply.disabled = !trash.length;
  }
}

/** @param {Group} group */
function split(group) {
  const keep = group.members.filter((member) => view.marks.get(member.image) !== "trash");
  const trash = group.members.filter((member) => view.marks.get(member.image) === "trash");
  return { keep, trash };
}

/**
 * Send a group's marks: the files marked Trash go, the suggested keeper (or the first picture
 * marked Keep) is the one they are checked against. The undo bar says what happened.
 * @param {Group} group
 * @param {HTMLElement} panel
 */
async function applyGroup(group, panel) {
  const { keep, trash } = split(group);
  const message = /** @type {HTMLElement} */ (panel.querySelector("[data-group-message]"));
  if (!keep.length) {
    setMessage(message, "Mark at least one picture Keep: a group is never trashed whole.", "error");
    return;
  }
  const keeper = keep.find((member) => isKeeper(group, member)) || keep[0];
  setMessage(message, `Moving ${plural(trash.length, "file")} to the Trash…`, "busy");
  const outcome = await resolve([{ keep: keeper.image, others: trash.map((member) => member.image) }], false);
  if (!outcome.answers.length) {
    setMessage(message, `Nothing was done: ${outcome.error}`, "error");
    return;
  }
  done(outcome);
}

/**
 * After an action: its files leave the groups shown at once, the undo bar says what happened,
 * and the groups are asked again (Undo brings the files back into them).
 * @param {import("./resolve.js").Outcome} outcome
 */
function done(outcome) {
  for (const answer of outcome.answers) for (const file of answer.files) if (file.state === "done") view.gone.add(file.image);
  showDone(outcome, (restored) => {
    for (const path of restored) view.gone.delete(path);
    reload();
  });
  reload();
}

/** The page of groups shown, asked again (after an action, or its undo). */
function reload() {
  loadDuplicates(state.dup.offset);
}

/**
 * Every group of the tab (and folder), for "resolve all".
 * @returns {Promise<Group[]>}
 */
async function everyGroup() {
  /** @type {Group[]} */
  const all = [];
  for (let offset = 0; ; ) {
    /** @type {{status: number, body: DuplicatesAnswer}} */
    const { status, body } = await api(`/duplicates?${query({ ...formParams(), offset, limit: ALL_PAGE })}`);
    if (status === 202) throw new Error("the daemon is comparing the pictures again: try once it is done");
    all.push(...body.groups);
    if (body.next_offset === null) return all;
    offset = body.next_offset;
  }
}

/** "Resolve all with the suggested keepers": a dry run, its plan in words, and the confirmation. */
async function resolveAll() {
  const message = $("#dup-message");
  setMessage(message, "Planning: which files would go where…", "busy");
  /** @type {Resolution[]} */
  let plan;
  try {
    plan = (await everyGroup()).map((group) => {
      const keeper = group.members.find((member) => isKeeper(group, member)) || group.members[0];
      return { keep: keeper.image, others: group.members.filter((member) => member !== keeper).map((member) => member.image) };
    });
  } catch (e) {
    setMessage(message, e instanceof Error ? e.message : String(e), "error");
    return;
  }
  const dry = await resolve(plan, true);
  if (dry.error) {
    setMessage(message, `Could not plan it: ${dry.error}`, "error");
    return;
  }
  setMessage(message, "");
  // the Similar tab's files are other pictures than their keepers: the confirmation says so
  const shots = view.kind === "similar" ? planned(dry) : 0;
  const go = async () => {
    setMessage(message, `Moving ${plural(planned(dry), "file")} to the Trash…`, "busy");
    done(await resolve(plan, false));
  };
  confirmAll(planWords(dry, plan), planned(dry), go, shots ? shotsWarning(shots) : "");
}

/**
 * The compare view on a member and the group's keeper (the keeper: with the next picture).
 * @param {Group} group
 * @param {HTMLElement} members
 * @param {number} at
 */
function compare(group, members, at) {
  if (group.members.length < 2) return;
  const keeper = Math.max(0, group.members.findIndex((member) => isKeeper(group, member)));
  const right = at === keeper ? (at + 1) % group.members.length : at;
  openCompare({
    group,
    left: keeper,
    right,
    mark: (member) => view.marks.get(member.image) || "keep",
    setMark,
    closed: (index) => focusCard(members, index),
  });
}

/**
 * The viewer on a group's member, its Previous and Next the group's other members.
 * @param {Group} group
 * @param {HTMLElement} members the group's list of cards: the focus returns to one of them
 * @param {number} index
 */
function showMember(group, members, index) {
  openViewer({ items: () => group.members, more: moreLikeThis, closed: (at) => focusCard(members, at) }, index);
}

/**
 * A tab chosen (a click, or the arrow keys on the tabs): its groups from the first page.
 * @param {Tier} kind
 */
function chooseTab(kind) {
  view.kind = kind;
  view.chosen = true;
  renderTabs();
  $(`#dup-tab-${kind}`).focus();
  loadDuplicates(0);
}

/** The form, the tabs, the pager, "resolve all", the compare view and the undo bar (once, at start). */
export function bindDuplicates() {
  bindCompare();
  bindResolve();
  $("#dup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadDuplicates(0);
  });
  for (const tab of $$("#dup-tabs [role=tab]")) {
    const kind = /** @type {Tier} */ (tab.dataset.kind);
    tab.addEventListener("click", () => chooseTab(kind));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      event.preventDefault();
      chooseTab(TIERS[(TIERS.indexOf(kind) + step + TIERS.length) % TIERS.length]);
    });
  }
  $("#dup-prev").addEventListener("click", () => loadDuplicates(Math.max(0, state.dup.offset - DUP_PAGE)));
  $("#dup-next").addEventListener("click", () => state.dup.next !== null && loadDuplicates(state.dup.next));
  $("#dup-resolve-all").addEventListener("click", resolveAll);
}
