// @ts-check
// The views (search, folders, duplicates, status): one shown at a time, named by the URL's hash
// ("#search?text=...": the search view and its search, address.js).

import { $$ } from "./dom.js";
import { VIEWS, state } from "./state.js";

/** @type {Map<string, () => void>} what showing a view starts (the duplicates' first page, a poll) */
const onShow = new Map();

/**
 * @param {string} name
 * @param {() => void} start
 */
export function whenShown(name, start) {
  onShow.set(name, start);
}

/** @param {string} name a view's name; any other shows the search */
export function showView(name) {
  if (!VIEWS.includes(name)) name = "search";
  state.view = name;
  for (const panel of $$("[data-panel]")) panel.hidden = panel.dataset.panel !== name;
  for (const link of $$("nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `imgsearchd · ${name}`;
  onShow.get(name)?.();
}

/** The search view (from another view: a step the Back button undoes), its search kept. */
export function showSearch() {
  if (state.view === "search") return;
  showView("search");
  const link = document.querySelector("nav a[data-view=search]");
  history.pushState(null, "", link?.getAttribute("href") || "#search");
}
