// @ts-check
// Small DOM helpers: typed look-ups of the page's elements, h() to build elements, and the
// message line and progress bar every view uses.

/**
 * The page's element for a selector, checked to be of the expected kind: a renamed id in
 * index.html fails here, by name, rather than as "cannot read properties of null" later.
 * @template {Element} T
 * @param {string} selector
 * @param {{new (): T}} type
 * @param {ParentNode} [root]
 * @returns {T}
 */
export function find(selector, type, root = document) {
  const el = root.querySelector(selector);
  if (!(el instanceof type)) throw new Error(`the page has no ${type.name} ${selector}`);
  return el;
}

/** @param {string} selector @returns {HTMLElement} */
export const $ = (selector) => find(selector, HTMLElement);
/** @param {string} selector @returns {HTMLInputElement} */
export const $input = (selector) => find(selector, HTMLInputElement);
/** @param {string} selector @returns {HTMLSelectElement} */
export const $select = (selector) => find(selector, HTMLSelectElement);
/** @param {string} selector @returns {HTMLButtonElement} */
export const $button = (selector) => find(selector, HTMLButtonElement);

/**
 * Every element a selector matches.
 * @param {string} selector
 * @returns {HTMLElement[]}
 */
export const $$ = (selector) => Array.from(document.querySelectorAll(selector)).filter((el) => el instanceof HTMLElement);

/** @typedef {Node | string | number | null | undefined | false} Child */
/** @typedef {Record<string, string | number | boolean | null | undefined | ((event: Event) => void)>} Attrs */

/**
 * An element: ``class`` sets the class, ``on<event>`` adds a listener, ``true`` an empty
 * attribute; null, undefined and false leave an attribute or a child out.
 * @param {string} tag
 * @param {Attrs | null} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = String(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/**
 * A view's message line: its text and kind ("", "busy", "error", "warn").
 * @param {HTMLElement} el
 * @param {string} text
 * @param {string} [kind]
 */
export function setMessage(el, text, kind = "") {
  el.textContent = text;
  el.className = `message ${kind}`.trim();
}

/**
 * The line under the menu that says the daemon is starting or cannot be reached ("": gone).
 * @param {string} text
 * @param {string} [kind]
 */
export function setBanner(text, kind = "") {
  const banner = $("#connection");
  banner.textContent = text;
  banner.className = `banner ${kind}`.trim();
  banner.hidden = !text;
}

/**
 * A progress bar for a fraction from 0 to 1.
 * @param {number | null | undefined} fraction
 * @param {string} label
 * @returns {HTMLElement}
 */
export function bar(fraction, label) {
  const pct = Math.round(Math.max(0, Math.min(1, fraction || 0)) * 1000) / 10;
  const fill = h("span", { class: "fill" });
  fill.style.width = `${pct}%`; // CSSOM, which the page's Content-Security-Policy allows
  return h(
    "div",
    { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct, "aria-label": label },
    fill,
  );
}

/**
 * Whether the user has text selected inside an element (a copy in progress: do not redraw it).
 * @param {Element} element
 */
export function selectionIn(element) {
  const selection = document.getSelection();
  return Boolean(selection && !selection.isCollapsed && element.contains(selection.anchorNode));
}
