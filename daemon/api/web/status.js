// @ts-check
// The status view, drawn from /stats: tiles, a model change in progress, folder jobs, watched
// folders, models and their indexes, failures, thumbnails, a duplicate search in progress.

import { $, bar, h } from "./dom.js";
import { fmtBytes, fmtSeconds, fmtWhen, number, plural } from "./format.js";

/** @typedef {import("./types.js").Stats} Stats */
/** @typedef {import("./types.js").Job} Job */
/** @typedef {import("./types.js").Watch} Watch */
/** @typedef {import("./types.js").Failures} Failures */
/** @typedef {import("./dom.js").Child} Child */

/**
 * @param {string} label
 * @param {string} value
 * @param {string | null} [note]
 * @param {string} [kind]
 */
function tile(label, value, note, kind = "") {
  return h("div", { class: `tile ${kind}`.trim() }, h("span", { class: "value" }, value), h("span", { class: "label" }, label), note ? h("span", { class: "muted small" }, note) : null);
}

/**
 * @param {string} title
 * @param {...Child} content
 */
function section(title, ...content) {
  return h("section", { class: "panel status-part" }, h("h2", {}, title), ...content);
}

/** @param {Stats} stats */
export function renderStatus(stats) {
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
      tile(stats.images === 1 ? "picture indexed" : "pictures indexed", stats.images === null || stats.images === undefined ? "–" : number.format(stats.images)),
      tile("waiting", number.format(stats.pending || 0)),
      tile("pictures / s", stats.pending ? String(indexing.images_per_second ?? 0) : "idle", stats.pending ? "embedding now" : `last: ${indexing.images_per_second ?? 0} / s`),
      tile("failed", number.format(failed.total || 0), failed.total ? "see Failures below" : null, failed.total ? "bad" : ""),
      tile("up", fmtSeconds(stats.uptime_s), `version ${stats.version}`),
    ),
  );
  if (stats.fallback) parts.push(fallbackAdvice(stats.fallback));
  for (const [name, ex] of Object.entries(stats.extractors || {})) if (ex.change) parts.push(changePart(name, ex.change));
  parts.push(jobsPart(stats.jobs || []));
  parts.push(foldersPart(stats.watch || []));
  parts.push(modelsPart(stats));
  if (failed.total) parts.push(failuresPart(failed));
  if (stats.thumbnails) parts.push(thumbnailsPart(stats.thumbnails));
  const dup = stats.duplicates && stats.duplicates.computing;
  if (dup) parts.push(section("Duplicate search", h("p", {}, `${dup.extractor}: ${dup.phase}, ${dup.done} of ${dup.total}`), bar(dup.progress, "duplicate search progress")));
  $("#status-body").replaceChildren(...parts);
}

/**
 * A model change: from which model to which, how far the new one has embedded the library (a
 * bar, done of total, its rate and the time left) and that searches use the old one until the
 * switch; a failed change says why and that the old model goes on serving.
 * @param {string} name
 * @param {import("./types.js").ModelChange} change
 */
function changePart(name, change) {
  const failed = change.state === "failed";
  // `to` is null when the configured model did not load (its id is not known then)
  const to = change.to ? h("code", {}, change.to) : "the configured model";
  const models = failed
    ? h("p", { class: "change-models" }, "Could not change the model from ", h("code", {}, change.from), " to ", to, ".")
    : h("p", { class: "change-models" }, "Changing model: ", h("code", {}, change.from), " → ", to);
  // done and total count contents: copies of a picture share one vector, so they count once
  const facts = [`${number.format(change.done)} of ${number.format(change.total)} different pictures embedded`];
  if (change.rate) facts.push(`${change.rate.toFixed(1)} a second`);
  if (change.eta_seconds !== null && change.eta_seconds !== undefined) facts.push(`${fmtSeconds(change.eta_seconds)} left`);
  const memory = change.old_model_bytes ? ` (the old model holds ${fmtBytes(change.old_model_bytes)} meanwhile)` : "";
  const body = failed
    ? [h("p", { class: "message error" }, `Why: ${(change.error || "no reason given").replace(/\.$/, "")}.`), h("p", {}, `${change.from} goes on serving searches.`)]
    : [
        bar(change.total ? change.done / change.total : 0, `${name} model change progress`),
        h("p", { class: "change-facts" }, facts.join(" · ")),
        h("p", { class: "muted" }, change.state === "switching" ? "Switching searches to the new model now…" : `Searches use ${change.from} until then${memory}.`),
        change.error ? h("p", { class: "message warn" }, change.error) : null, // why searches have a gap meanwhile
      ];
  return h("section", { class: `panel status-part model-change${failed ? " failed" : ""}`, "data-extractor": name }, h("h2", {}, `${name}: a new model`), models, ...body);
}

/** @param {Job[]} jobs */
function jobsPart(jobs) {
  if (!jobs.length) return section("Folder jobs", h("p", { class: "muted" }, "No folder jobs since the daemon started (adding a folder starts one)."));
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
        `${number.format(job.done)} of ${plural(job.found, "file")} · ${fmtSeconds(job.seconds)}`,
        outcomes.length ? ` · ${outcomes.join(", ")}` : "",
      ),
      job.error ? h("div", { class: "message error" }, job.error) : null,
    );
  });
  return section("Folder jobs", h("ul", { class: "jobs" }, ...rows));
}

/** @param {Watch[]} watch */
function foldersPart(watch) {
  if (!watch.length) return section("Watched folders", h("p", { class: "muted" }, "No watched folders: ", h("a", { href: "#folders" }, "add one"), "."));
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
  const head = h("tr", {}, h("th", {}, "folder"), h("th", {}, "state"), h("th", {}, "how / why"), h("th", {}, "since"), h("th", { class: "num" }, "events"));
  const manage = h("p", { class: "small" }, h("a", { href: "#folders" }, "Add or remove folders"));
  return section("Watched folders", h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), h("tbody", {}, ...rows))), manage);
}

/**
 * A model's facts: [name, value, why] rows.
 * @param {string} name
 * @param {import("./types.js").Extractor} ex
 * @param {Stats} stats
 * @returns {[string, string, (string | null | undefined)?][]}
 */
function modelFacts(name, ex, stats) {
  const precision = ex.precision || {};
  const recall = ex.recall_at_10;
  const effort = ex.ef !== null && ex.ef !== undefined ? `ef ${ex.ef}` : ex.search_k ? `search_k ${ex.search_k}` : null;
  const took = ex.last_build_seconds !== null && ex.last_build_seconds !== undefined ? `, took ${fmtSeconds(ex.last_build_seconds)}` : "";
  return [
    ["model", `${ex.model}${name === stats.active_extractor ? " (default)" : ""}`],
    ["precision", `${precision.used || "?"}${precision.asked && precision.asked !== precision.used ? ` (asked ${precision.asked})` : ""}`, precision.reason],
    ["runs on", `${ex.device || "?"}${precision.engine ? ` · ${precision.engine}` : ""} · ${ex.dim || "?"} dimensions${ex.text ? " · text search" : ""}`],
    ["index", `${ex.mode || "?"} · ${plural(ex.vectors || 0, "vector")} · ${number.format(ex.fresh || 0)} since the build · ${number.format(ex.tombstones || 0)} removed`],
    ["last build", ex.building ? "building now…" : `${fmtWhen(ex.last_build)}${took}`],
    [
      "recall@10",
      recall === null || recall === undefined ? "not measured yet" : `${recall.toFixed(3)} (target ${ex.target_recall}${ex.target_met === false ? ", not met" : ""})`,
      ex.recall_note,
    ],
    ["search time", ex.p50_ms !== null && ex.p50_ms !== undefined ? `p50 ${ex.p50_ms} ms · p95 ${ex.p95_ms} ms${effort ? ` · ${effort}` : ""}` : effort || "–"],
  ];
}

/** @param {Stats} stats */
function modelsPart(stats) {
  const cards = Object.entries(stats.extractors || {}).map(([name, ex]) =>
    h(
      "div",
      { class: "model" },
      h("h3", {}, name),
      h("dl", {}, ...modelFacts(name, ex, stats).flatMap(([k, v, why]) => [h("dt", {}, k), h("dd", {}, v, why ? h("span", { class: "muted small why" }, why) : null)])),
    ),
  );
  return section("Models and indexes", h("div", { class: "models" }, ...cards));
}

/**
 * A model that could not load: which, why, what to fetch (file, size, from where), where to put
 * it, that the library is embedded again, how to keep the fallback: the daemon's own sentences.
 * @param {import("./types.js").Fallback} fallback
 */
export function fallbackAdvice(fallback) {
  const lines = fallback.advice?.length ? fallback.advice : [`Running ${fallback.running} instead of ${fallback.configured}: ${fallback.reason}`];
  const fetch = fallback.fetch;
  return h(
    "section",
    { class: "panel status-part advice", id: "fallback-advice" },
    h("h2", {}, `${fallback.configured} is not running: ${fallback.running} stands in`),
    // `commands` in the daemon's sentences as code
    h("ol", {}, ...lines.map((line) => h("li", {}, ...line.split("`").map((piece, i) => (i % 2 ? h("code", {}, piece) : piece))))),
    fetch ? h("p", { class: "small" }, "Download: ", h("a", { href: fetch.url, rel: "noopener noreferrer" }, fetch.file), fetch.size || fetch.bytes ? ` (${fetch.size || fmtBytes(fetch.bytes)})` : "") : null,
  );
}

/** @param {Failures} failed */
function failuresPart(failed) {
  const reasons = Object.entries(failed.by_reason || {}).map(([reason, count]) => h("li", {}, h("span", { class: "badge failed" }, reason), ` ${number.format(count)}`));
  const recent = (failed.recent || []).map((f) => h("li", {}, h("span", { class: "path", title: f.path }, f.path), h("span", { class: "muted small" }, ` ${f.reason}${f.detail ? `: ${f.detail}` : ""}`)));
  return section(`Failures (${number.format(failed.total || 0)})`, h("ul", { class: "reasons" }, ...reasons), recent.length ? h("ul", { class: "recent" }, ...recent) : null);
}

/** @param {{count: number, bytes: number, max_bytes: number}} t */
function thumbnailsPart(t) {
  return section(
    "Thumbnails",
    h("p", {}, `${plural(t.count, "thumbnail")}, ${fmtBytes(t.bytes)} of ${fmtBytes(t.max_bytes)}`),
    bar(t.max_bytes ? t.bytes / t.max_bytes : 0, "thumbnail space used"),
  );
}
