// imgsearchd's page. Hand-written, no library and no build step (README, "The web page"):
// three views (search, duplicates, status) over the daemon's own HTTP API.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
const pageParams = new URLSearchParams(location.search);
// How often the status view asks /stats; ?poll=250 for a faster one (the browser tests use it).
const POLL_MS = Math.max(100, Number(pageParams.get("poll")) || 1000);
const IDLE_POLL_MS = 5000; // other views only need the models, folders and the status dot
const VIEWS = ["search", "duplicates", "status"];
const DUP_PAGE = 20;

const state = {
  stats: null,
  view: "search",
  parts: [], // the query: {kind: "image" | "upload" | "text", weight, ...}
  searchSeq: 0,
  dup: { offset: 0, loaded: false, seq: 0 },
  pollTimer: 0,
  started: false,
};

// -- small helpers ------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `the daemon answered HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { credentials: "same-origin", ...options });
  } catch {
    throw new ApiError(0, { error: "cannot reach the daemon (is it running?)" });
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) showLogin();
  if (!response.ok) throw new ApiError(response.status, body);
  return { status: response.status, body };
}

function query(params) {
  const out = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    out.push(`${key}=${encodeURIComponent(value)}`);
  }
  return out.join("&");
}

// A result's path as a query value. A name that is not UTF-8 comes with its exact bytes
// (path_base64): percent-encode those, as the daemon decodes them like the file system does.
function pathParam(item) {
  if (item.path_base64) {
    const bytes = atob(item.path_base64);
    let out = "";
    for (let i = 0; i < bytes.length; i++) out += "%" + bytes.charCodeAt(i).toString(16).padStart(2, "0");
    return out;
  }
  return encodeURIComponent(item.image);
}

// With the content hash a result gives, the URL names one picture: the browser keeps it.
function thumbnailURL(item) {
  const pinned = item.hash ? `&v=${encodeURIComponent(item.hash)}` : "";
  return `/thumbnail?image=${pathParam(item)}${pinned}`;
}

function splitPath(path) {
  const cut = path.lastIndexOf("/");
  return { folder: cut > 0 ? path.slice(0, cut) : "/", name: path.slice(cut + 1) };
}

const number = new Intl.NumberFormat();
function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
}
function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86400)} days`;
}
function fmtWhen(iso) {
  if (!iso) return "never";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso;
  const ago = (Date.now() - when.getTime()) / 1000;
  return ago >= 0 && ago < 172800 ? `${fmtSeconds(ago)} ago` : when.toLocaleString();
}

function setMessage(el, text, kind = "") {
  el.textContent = text;
  el.className = `message ${kind}`.trim();
}

function bar(fraction, label) {
  const pct = Math.round(Math.max(0, Math.min(1, fraction || 0)) * 1000) / 10;
  const fill = h("span", { class: "fill" });
  fill.style.width = `${pct}%`; // CSSOM, which the page's Content-Security-Policy allows
  return h(
    "div",
    { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct, "aria-label": label },
    fill,
  );
}

// -- login ----------------------------------------------------------------------------------

function showLogin() {
  if (!$("#login-view").hidden) return;
  clearTimeout(state.pollTimer);
  $("#nav").hidden = true;
  for (const panel of $$("[data-panel]")) panel.hidden = true;
  $("#login-view").hidden = false;
  $("#token").focus();
}

async function login(event) {
  event.preventDefault();
  const error = $("#login-error");
  error.hidden = true;
  try {
    await api("/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: $("#token").value }),
    });
  } catch (e) {
    error.textContent = e.status === 401 ? "That is not the token. Try again." : e.message;
    error.hidden = false;
    $("#token").select();
    return;
  }
  $("#token").value = "";
  $("#login-view").hidden = true;
  $("#logout").hidden = false;
  begin();
}

async function logout() {
  try {
    await api("/logout", { method: "POST" });
  } catch {
    // signed out here all the same: the form shows, the cookie is cleared on the next login
  }
  $("#logout").hidden = true;
  state.started = false;
  showLogin();
}

// -- views ----------------------------------------------------------------------------------

function showView(name) {
  if (!VIEWS.includes(name)) name = "search";
  state.view = name;
  for (const panel of $$("[data-panel]")) panel.hidden = panel.dataset.panel !== name;
  for (const link of $$("nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `imgsearchd · ${name}`;
  if (name === "duplicates" && !state.dup.loaded && state.stats) loadDuplicates(0);
  if (name === "status") poll();
}

function begin() {
  state.started = true;
  $("#nav").hidden = false;
  showView(location.hash.slice(1));
  poll();
}

// -- /stats: models, folders, the status view ---------------------------------------------------

async function poll() {
  clearTimeout(state.pollTimer);
  if (!$("#login-view").hidden) return;
  try {
    const { body } = await api("/stats");
    state.stats = body;
    applyStats(body);
  } catch (e) {
    if (e.status === 401) return;
    const dot = $("#status-dot");
    dot.className = "dot bad";
    if (state.view === "status") $("#status-body").replaceChildren(h("p", { class: "message error" }, e.message));
  }
  const wait = document.hidden ? IDLE_POLL_MS * 4 : state.view === "status" ? POLL_MS : IDLE_POLL_MS;
  state.pollTimer = setTimeout(poll, wait);
}

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

function applyStats(stats) {
  const names = Object.keys(stats.extractors || {});
  fillSelect($("#extractor"), names, stats);
  fillSelect($("#dup-extractor"), names, stats);
  updateTextAbility();
  const folders = (stats.watch || []).map((w) => w.folder);
  const list = $("#folders");
  if (list.dataset.folders !== folders.join("\n")) {
    list.replaceChildren(...folders.map((f) => h("option", { value: f })));
    list.dataset.folders = folders.join("\n");
  }
  const busy = stats.pending > 0 || (stats.jobs || []).some((j) => j.state !== "done" && j.state !== "failed");
  const troubled = (stats.storage && stats.storage.state !== "ok") || (stats.watch || []).some((w) => w.state === "offline");
  $("#status-dot").className = `dot ${troubled ? "warn" : busy ? "busy" : "ok"}`;
  if (state.view === "status" && !selectionIn($("#status-body"))) renderStatus(stats); // a copy in progress stays
  if (state.view === "duplicates" && !state.dup.loaded) loadDuplicates(0);
  if (state.view === "search" && !state.parts.length && !$("#results").children.length) welcome();
}

function selectionIn(element) {
  const selection = document.getSelection();
  return Boolean(selection && !selection.isCollapsed && element.contains(selection.anchorNode));
}

function activeExtractor() {
  const stats = state.stats;
  if (!stats) return null;
  const name = $("#extractor").value || stats.active_extractor;
  return name ? { name, ...(stats.extractors[name] || {}) } : null;
}

function updateTextAbility() {
  const ex = activeExtractor();
  const input = $("#text");
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

function welcome() {
  const stats = state.stats;
  if (!stats || stats.images === null || stats.images === undefined) return;
  setMessage(
    $("#search-message"),
    stats.images
      ? `${number.format(stats.images)} pictures indexed. Choose, drop or paste a picture to find ones like it.`
      : "Nothing is indexed yet: add a folder to index.watch_dirs, or GET /add?image=<folder>.",
  );
}

// -- the query ----------------------------------------------------------------------------------

function readDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function useFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setMessage($("#search-message"), `${file.name} is not a picture (${file.type}).`, "error");
    return;
  }
  const part = { kind: "upload", weight: 1, file, label: file.name || "pasted picture", preview: URL.createObjectURL(file) };
  part.dataUrl = readDataUrl(file); // needed only if the part joins a combined query
  clearParts();
  state.parts.push(part);
  showView("search");
  if (location.hash !== "#search") history.replaceState(null, "", "#search");
  runSearch();
}

function clearParts() {
  for (const part of state.parts) if (part.preview) URL.revokeObjectURL(part.preview);
  state.parts = [];
}

function imagePart(item, weight) {
  return { kind: "image", weight, image: item.image, path_base64: item.path_base64, hash: item.hash, label: splitPath(item.image).name };
}

function moreLikeThis(item) {
  clearParts();
  state.parts.push(imagePart(item, 1));
  showView("search");
  if (location.hash !== "#search") history.pushState(null, "", "#search");
  window.scrollTo({ top: 0, behavior: "smooth" });
  runSearch();
}

function refine(item, weight) {
  const same = state.parts.find((p) => p.kind === "image" && p.image === item.image);
  if (same) same.weight = weight;
  else state.parts.push(imagePart(item, weight));
  runSearch();
}

function renderParts() {
  const box = $("#parts");
  const chips = state.parts.map((part, i) => {
    const thumb =
      part.kind === "upload"
        ? h("img", { src: part.preview, alt: "" })
        : part.kind === "image"
          ? chipThumbnail(part)
          : h("span", { class: "quote", "aria-hidden": "true" }, "“”");
    const sign = h(
      "button",
      {
        type: "button",
        class: `sign ${part.weight < 0 ? "minus" : "plus"}`,
        title: part.weight < 0 ? "Away from this (click: towards)" : "Towards this (click: away)",
        "aria-label": `${part.weight < 0 ? "Away from" : "Towards"} ${part.label}: switch`,
        onclick: () => {
          part.weight = -part.weight;
          runSearch();
        },
      },
      part.weight < 0 ? "−" : "+",
    );
    const remove = h(
      "button",
      {
        type: "button",
        class: "remove",
        "aria-label": `Remove ${part.label} from the query`,
        onclick: () => {
          if (part.preview) URL.revokeObjectURL(part.preview);
          state.parts.splice(i, 1);
          if (state.parts.length) runSearch();
          else {
            renderParts();
            $("#results").replaceChildren();
            welcome();
          }
        },
      },
      "×",
    );
    return h("span", { class: "chip" }, sign, thumb, h("span", { class: "label", title: part.image || part.label }, part.label), remove);
  });
  box.replaceChildren(...chips);
  box.hidden = !chips.length;
}

function searchOptions() {
  return {
    limit: $("#limit").value,
    extractor: $("#extractor").value,
    folder: $("#folder").value.trim(),
    taken_after: $("#taken-after").value, // a day (YYYY-MM-DD): the daemon takes the whole day
    taken_before: $("#taken-before").value,
  };
}

// "2019-08-01", with a "~" and a note when it is the file's date (the photo had none).
function takenLine(item) {
  if (!item.taken) return null;
  const guessed = item.taken_from === "mtime";
  const facts = [guessed ? "file date: the photo has no date of its own" : `taken ${item.taken}`];
  if (item.camera) facts.push(item.camera);
  if (item.width) facts.push(`${item.width}×${item.height}`);
  return h("span", { class: "muted taken", title: facts.join(" · ") }, `${guessed ? "~" : ""}${item.taken.slice(0, 10)}`);
}

async function partJson(part) {
  if (part.kind === "text") return { text: part.text, weight: part.weight };
  if (part.kind === "image") return { image: part.image, weight: part.weight };
  return { image_base64: await part.dataUrl, weight: part.weight };
}

function describe() {
  if (state.parts.length === 1) {
    const part = state.parts[0];
    if (part.kind === "text") return `“${part.text}”`;
    return part.kind === "image" ? `more like ${part.label}` : part.label;
  }
  return `a query of ${state.parts.length} parts`;
}

async function runSearch() {
  renderParts();
  if (!state.parts.length) return;
  const seq = ++state.searchSeq;
  const message = $("#search-message");
  const options = searchOptions();
  setMessage(message, "Searching…", "busy");
  $("#results").setAttribute("aria-busy", "true");
  const started = performance.now();
  const only = state.parts.length === 1 && state.parts[0].weight > 0 ? state.parts[0] : null;
  let answer;
  try {
    if (only && only.kind === "image") {
      answer = await api(`/search?image=${pathParam(only)}&${query(options)}`);
    } else if (only && only.kind === "text") {
      answer = await api(`/search?${query({ text: only.text, ...options })}`);
    } else if (only) {
      const form = new FormData();
      form.append("image", only.file, only.file.name || "pasted.png");
      for (const [key, value] of Object.entries(options)) if (value) form.append(key, value);
      answer = await api("/search", { method: "POST", body: form });
    } else {
      const body = { query: await Promise.all(state.parts.map(partJson)), limit: Number(options.limit) };
      if (options.extractor) body.extractor = options.extractor;
      for (const key of ["folder", "taken_after", "taken_before"]) if (options[key]) body[key] = options[key];
      answer = await api("/search", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    }
  } catch (e) {
    if (seq !== state.searchSeq) return;
    $("#results").removeAttribute("aria-busy");
    setMessage(message, e.message, "error");
    return;
  }
  if (seq !== state.searchSeq) return;
  const results = answer.body.results || [];
  const ms = Math.round(performance.now() - started);
  let where = answer.body.folder ? ` in ${answer.body.folder}` : "";
  if (options.taken_after || options.taken_before) where += `, taken ${options.taken_after || "…"} – ${options.taken_before || "…"}`;
  setMessage(
    message,
    results.length
      ? `${results.length} pictures like ${describe()}${where} · ${answer.body.extractor || ""} · ${ms} ms`
      : `Nothing like ${describe()}${where}.`,
  );
  renderResults(results);
}

// A folder cut from the left when it is too long: its end names it best. The <bdi> keeps the
// right-to-left box from moving the path's leading "/" to its end.
function folderLine(folder) {
  return h("span", { class: "folder", title: folder, dir: "rtl" }, h("bdi", { dir: "ltr" }, folder));
}

function chipThumbnail(part) {
  const img = h("img", { src: thumbnailURL(part), alt: "" });
  img.addEventListener("error", () => img.replaceWith(h("span", { class: "quote", "aria-hidden": "true" }, "?")), { once: true });
  return img;
}

function thumbnail(item) {
  const img = h("img", { src: thumbnailURL(item), alt: "", loading: "lazy", decoding: "async" });
  img.addEventListener("error", () => img.closest(".thumb")?.classList.add("missing"), { once: true });
  return img;
}

function renderResults(results) {
  const grid = $("#results");
  $("#search-form").classList.toggle("compact", results.length > 0);
  grid.removeAttribute("aria-busy");
  grid.replaceChildren(
    ...results.map((item) => {
      const { folder, name } = splitPath(item.image);
      const score = item.score.toFixed(3);
      return h(
        "li",
        { class: "card" },
        h(
          "button",
          { type: "button", class: "thumb", title: `More like ${name}`, "aria-label": `More like ${name}`, onclick: () => moreLikeThis(item) },
          thumbnail(item),
          h("span", { class: "score", title: "cosine similarity (1 = the same picture)" }, score),
        ),
        h(
          "div",
          { class: "meta" },
          h("span", { class: "name", title: item.image }, name),
          folderLine(folder),
          takenLine(item),
        ),
        h(
          "div",
          { class: "actions" },
          h("a", { href: `/original?image=${pathParam(item)}`, target: "_blank", rel: "noopener", title: `Open ${name}` }, "Open"),
          h("button", { type: "button", title: "Add to the query: more like this one too", "aria-label": `Add ${name} to the query`, onclick: () => refine(item, 1) }, "+"),
          h("button", { type: "button", title: "Less like this one", "aria-label": `Less like ${name}`, onclick: () => refine(item, -1) }, "−"),
        ),
      );
    }),
  );
}

// -- duplicates ------------------------------------------------------------------------------

async function loadDuplicates(offset) {
  const seq = ++state.dup.seq;
  state.dup.loaded = true;
  state.dup.offset = offset;
  const message = $("#dup-message");
  const params = {
    extractor: $("#dup-extractor").value,
    kind: $("#dup-kind").value,
    threshold: $("#dup-threshold").value,
    folder: $("#dup-folder").value.trim(),
    sort: $("#dup-sort").value,
    offset,
    limit: DUP_PAGE,
  };
  setMessage(message, "Looking for duplicates…", "busy");
  let answer;
  try {
    answer = await api(`/duplicates?${query(params)}`);
  } catch (e) {
    if (seq === state.dup.seq) setMessage(message, e.message, "error");
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

function renderDuplicates(body) {
  const message = $("#dup-message");
  const first = body.offset + 1;
  const last = body.offset + body.groups.length;
  let text = body.total
    ? `${number.format(body.total)} groups of ${body.kind === "exact" ? "identical files" : body.kind === "near" ? "near duplicates" : "copies and near duplicates"}` +
      ` at similarity ≥ ${body.threshold} · ${body.extractor}`
    : `No duplicates at similarity ≥ ${body.threshold}.`;
  if (body.stale) text += " · the catalogue changed since: updating in the background";
  setMessage(message, text);
  $("#dup-groups").replaceChildren(
    ...body.groups.map((group) =>
      h(
        "article",
        { class: "group panel" },
        h(
          "header",
          {},
          h("span", { class: `badge ${group.kind}` }, group.kind === "exact" ? "identical" : "similar"),
          h("span", {}, `${group.files} files`),
          group.kind === "near" ? h("span", { class: "muted" }, `similarity ≥ ${group.similarity.toFixed(3)}`) : null,
        ),
        h("ul", { class: "members" }, ...group.members.map((member) => memberCard(member))),
      ),
    ),
  );
  const pager = $("#dup-pager");
  pager.hidden = !body.total || (body.offset === 0 && body.next_offset === null);
  $("#dup-page").textContent = body.total ? `${first}–${last} of ${number.format(body.total)}` : "";
  $("#dup-prev").disabled = body.offset === 0;
  $("#dup-next").disabled = body.next_offset === null;
  state.dup.next = body.next_offset;
}

function memberCard(member) {
  const { folder, name } = splitPath(member.image);
  const size = member.width ? `${member.width}×${member.height} · ${fmtBytes(member.size)}` : fmtBytes(member.size);
  return h(
    "li",
    { class: "card" },
    h("button", { type: "button", class: "thumb", title: `More like ${name}`, "aria-label": `More like ${name}`, onclick: () => moreLikeThis(member) }, thumbnail(member)),
    h(
      "div",
      { class: "meta" },
      h("span", { class: "name", title: member.image }, name),
      folderLine(folder),
      h("span", { class: "muted" }, size),
      takenLine(member),
    ),
    h("div", { class: "actions" }, h("a", { href: `/original?image=${pathParam(member)}`, target: "_blank", rel: "noopener" }, "Open")),
  );
}

// -- status ----------------------------------------------------------------------------------

function tile(label, value, note, kind = "") {
  return h("div", { class: `tile ${kind}`.trim() }, h("span", { class: "value" }, value), h("span", { class: "label" }, label), note ? h("span", { class: "muted small" }, note) : null);
}

function section(title, ...content) {
  return h("section", { class: "panel status-part" }, h("h2", {}, title), ...content);
}

function renderStatus(stats) {
  const indexing = stats.indexing || {};
  const failed = stats.failed || {};
  const parts = [];
  if (!stats.ready) parts.push(h("p", { class: "message busy" }, `Starting: ${stats.phase || "loading"}…`));
  if (stats.storage && stats.storage.state !== "ok") {
    parts.push(h("p", { class: "message error" }, `The catalogue cannot be written: ${stats.storage.error} (retrying; searches still work).`));
  }
  parts.push(
    h(
      "div",
      { class: "tiles" },
      tile("pictures indexed", stats.images === null ? "–" : number.format(stats.images)),
      tile("waiting", number.format(stats.pending || 0)),
      tile("pictures / s", stats.pending ? String(indexing.images_per_second ?? 0) : "idle", stats.pending ? "embedding now" : `last: ${indexing.images_per_second ?? 0} / s`),
      tile("failed", number.format(failed.total || 0), failed.total ? "see Failures below" : null, failed.total ? "bad" : ""),
      tile("up", fmtSeconds(stats.uptime_s), `version ${stats.version}`),
    ),
  );
  parts.push(jobsPart(stats.jobs || []));
  parts.push(foldersPart(stats.watch || []));
  parts.push(modelsPart(stats));
  if (failed.total) parts.push(failuresPart(failed));
  if (stats.thumbnails) parts.push(thumbnailsPart(stats.thumbnails));
  const dup = stats.duplicates && stats.duplicates.computing;
  if (dup) parts.push(section("Duplicate search", h("p", {}, `${dup.extractor}: ${dup.phase}, ${dup.done} of ${dup.total}`), bar(dup.progress, "duplicate search progress")));
  $("#status-body").replaceChildren(...parts);
}

function jobsPart(jobs) {
  if (!jobs.length) return section("Folder jobs", h("p", { class: "muted" }, "No folder jobs since the daemon started (GET /add?image=<folder> starts one)."));
  const rows = [...jobs].reverse().map((job) => {
    const outcomes = Object.entries(job.outcomes || {}).map(([k, v]) => `${k.replace("failed:", "failed (")}${k.startsWith("failed:") ? ")" : ""} ${v}`);
    return h(
      "li",
      { class: `job ${job.state}`, "data-job": job.id },
      h("div", { class: "job-head" }, h("span", { class: "path", title: job.folder }, job.folder), h("span", { class: `badge ${job.state}` }, job.state)),
      bar(job.progress, `job ${job.id} progress`),
      h(
        "div",
        { class: "muted small" },
        `${number.format(job.done)} of ${number.format(job.found)} files · ${fmtSeconds(job.seconds)}`,
        outcomes.length ? ` · ${outcomes.join(", ")}` : "",
      ),
      job.error ? h("div", { class: "message error" }, job.error) : null,
    );
  });
  return section("Folder jobs", h("ul", { class: "jobs" }, ...rows));
}

function foldersPart(watch) {
  if (!watch.length) return section("Watched folders", h("p", { class: "muted" }, "No watched folders (index.watch_dirs)."));
  const rows = watch.map((w) =>
    h(
      "tr",
      {},
      h("td", { class: "path", title: w.folder }, w.folder),
      h("td", {}, h("span", { class: `badge ${w.state}` }, w.state), w.scanning ? h("span", { class: "muted small" }, " scanning") : null),
      h("td", { class: "muted" }, [w.observer, w.reason].filter(Boolean).join(": ") || "–"),
      h("td", { class: "muted nowrap" }, fmtWhen(w.since)),
      h("td", { class: "num" }, number.format(w.events || 0)),
    ),
  );
  return section(
    "Watched folders",
    h(
      "div",
      { class: "table-wrap" },
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "folder"), h("th", {}, "state"), h("th", {}, "how / why"), h("th", {}, "since"), h("th", { class: "num" }, "events"))), h("tbody", {}, ...rows)),
    ),
  );
}

function modelsPart(stats) {
  const cards = Object.entries(stats.extractors || {}).map(([name, ex]) => {
    const precision = ex.precision || {};
    const recall = ex.recall_at_10;
    const effort = ex.ef !== null && ex.ef !== undefined ? `ef ${ex.ef}` : ex.search_k ? `search_k ${ex.search_k}` : null;
    const facts = [
      ["model", `${ex.model}${name === stats.active_extractor ? " (default)" : ""}`],
      ["precision", `${precision.used || "?"}${precision.asked && precision.asked !== precision.used ? ` (asked ${precision.asked})` : ""}`, precision.reason],
      ["runs on", `${ex.device || "?"} · ${ex.dim || "?"} dimensions${ex.text ? " · text search" : ""}`],
      ["index", `${ex.mode || "?"} · ${number.format(ex.vectors || 0)} vectors · ${number.format(ex.fresh || 0)} since the build · ${number.format(ex.tombstones || 0)} removed`],
      ["last build", ex.building ? "building now…" : `${fmtWhen(ex.last_build)}${ex.last_build_seconds !== null && ex.last_build_seconds !== undefined ? `, took ${fmtSeconds(ex.last_build_seconds)}` : ""}`],
      [
        "recall@10",
        recall === null || recall === undefined ? "not measured yet" : `${recall.toFixed(3)} (target ${ex.target_recall}${ex.target_met === false ? ", not met" : ""})`,
        ex.recall_note,
      ],
      ["search time", ex.p50_ms !== null && ex.p50_ms !== undefined ? `p50 ${ex.p50_ms} ms · p95 ${ex.p95_ms} ms${effort ? ` · ${effort}` : ""}` : effort || "–"],
    ];
    return h(
      "div",
      { class: "model" },
      h("h3", {}, name),
      h("dl", {}, ...facts.flatMap(([k, v, why]) => [h("dt", {}, k), h("dd", {}, v, why ? h("span", { class: "muted small why" }, why) : null)])),
    );
  });
  const fallback = stats.fallback ? h("p", { class: "message warn" }, `Running ${stats.fallback.running} instead of ${stats.fallback.configured}: ${stats.fallback.reason}`) : null;
  return section("Models and indexes", fallback, h("div", { class: "models" }, ...cards));
}

function failuresPart(failed) {
  const reasons = Object.entries(failed.by_reason || {}).map(([reason, count]) => h("li", {}, h("span", { class: "badge failed" }, reason), ` ${number.format(count)}`));
  const recent = (failed.recent || []).map((f) => h("li", {}, h("span", { class: "path", title: f.path }, f.path), h("span", { class: "muted small" }, ` ${f.reason}${f.detail ? `: ${f.detail}` : ""}`)));
  return section(`Failures (${number.format(failed.total)})`, h("ul", { class: "reasons" }, ...reasons), recent.length ? h("ul", { class: "recent" }, ...recent) : null);
}

function thumbnailsPart(t) {
  return section(
    "Thumbnails",
    h("p", {}, `${number.format(t.count)} thumbnails, ${fmtBytes(t.bytes)} of ${fmtBytes(t.max_bytes)}`),
    bar(t.max_bytes ? t.bytes / t.max_bytes : 0, "thumbnail space used"),
  );
}

// -- wiring ----------------------------------------------------------------------------------

function bindUi() {
  $("#login-form").addEventListener("submit", login);
  // Only a view's name changes the view: "#main" (the skip link) moves the focus, nothing else.
  window.addEventListener("hashchange", () => {
    const name = location.hash.slice(1);
    if (state.started && VIEWS.includes(name)) showView(name);
  });
  $(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    $("#main").focus();
  });
  $("#logout").addEventListener("click", logout);
  document.addEventListener("visibilitychange", () => state.started && !document.hidden && poll());

  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#text").value.trim();
    if (text && !$("#text").disabled) {
      clearParts();
      state.parts.push({ kind: "text", weight: 1, text, label: text });
    }
    runSearch();
  });
  $("#file").addEventListener("change", (event) => {
    useFile(event.target.files[0]);
    event.target.value = ""; // choosing the same file again searches again
  });
  $("#extractor").addEventListener("change", () => {
    updateTextAbility();
    runSearch();
  });
  $("#limit").addEventListener("change", runSearch);
  $("#folder").addEventListener("change", runSearch);
  $("#taken-after").addEventListener("change", runSearch);
  $("#taken-before").addEventListener("change", runSearch);

  // Drag and drop anywhere on the page; the overlay says what a drop does.
  const overlay = $("#drop-overlay");
  let depth = 0;
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (!hasFiles(event) || !state.started) return;
    depth++;
    overlay.hidden = false;
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) overlay.hidden = true;
  });
  document.addEventListener("dragover", (event) => {
    if (hasFiles(event)) event.preventDefault();
  });
  document.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault(); // or the browser opens the file and leaves the page
    depth = 0;
    overlay.hidden = true;
    if (state.started) useFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = Array.from(event.clipboardData?.files || []).find((f) => f.type.startsWith("image/"));
    if (file && state.started) {
      event.preventDefault();
      useFile(file);
    }
  });
  // "/" jumps to the search box (or the picture button when text search is off), as on many sites.
  document.addEventListener("keydown", (event) => {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement?.tagName || "");
    if (event.key === "/" && !typing && state.started) {
      event.preventDefault();
      showView("search");
      if (location.hash !== "#search") history.replaceState(null, "", "#search");
      ($("#text").disabled ? $("#file-label") : $("#text")).focus();
    }
  });
  $("#file-label").tabIndex = 0;
  $("#file-label").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("#file").click();
    }
  });

  $("#dup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadDuplicates(0);
  });
  $("#dup-prev").addEventListener("click", () => loadDuplicates(Math.max(0, state.dup.offset - DUP_PAGE)));
  $("#dup-next").addEventListener("click", () => state.dup.next !== null && loadDuplicates(state.dup.next));
}

async function start() {
  bindUi();
  let who = { token_required: false, authorised: true };
  try {
    const response = await fetch("/login", { credentials: "same-origin" });
    if (response.ok) who = await response.json();
  } catch {
    setMessage($("#search-message"), "Cannot reach the daemon (is it running?).", "error");
  }
  $("#logout").hidden = !who.token_required;
  if (who.token_required && !who.authorised) showLogin();
  else begin();
}

start();
