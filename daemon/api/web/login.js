// @ts-check
// The token login: the form shown when the daemon asks for its token (a 401, or /login says
// so), POST /login for the session cookie, POST /logout to end it. The form names the file
// that holds the token (GET /login's token_file), never the token.

import { ApiError, api } from "./api.js";
import { $, $$, $input, h } from "./dom.js";
import { state } from "./state.js";

/** Show the login form instead of the views. */
export function showLogin() {
  if (!$("#login-view").hidden) return;
  clearTimeout(state.pollTimer);
  $("#nav").hidden = true;
  for (const panel of $$("[data-panel]")) panel.hidden = true;
  $("#login-view").hidden = false;
  $input("#token").focus();
  showTokenFile();
}

/** Where the token is kept, under the form's first line: the settings file the daemon read. */
async function showTokenFile() {
  /** @type {{token_file?: string | null}} */
  let who = {};
  try {
    const response = await fetch("/login", { credentials: "same-origin" });
    if (response.ok) who = await response.json();
  } catch {
    return; // the form works without it
  }
  if (who.token_file === undefined) return;
  const where = who.token_file
    ? ["The token is server.token in ", h("code", null, who.token_file), "."]
    : ["The token was given to the daemon when it started (not read from a settings file)."];
  const line = document.querySelector("#login-file") || h("p", { id: "login-file", class: "muted" });
  line.replaceChildren(...where);
  if (!line.isConnected) $("#login-form").insertBefore(line, $("#login-form").querySelector("label"));
}

/**
 * The form and the sign-out button; ``begin`` starts the page once signed in.
 * @param {() => void} begin
 */
export function bindLogin(begin) {
  $("#login-form").addEventListener("submit", (event) => login(event, begin));
  $("#logout").addEventListener("click", logout);
}

/**
 * @param {Event} event
 * @param {() => void} begin
 */
async function login(event, begin) {
  event.preventDefault();
  const error = $("#login-error");
  const token = $input("#token");
  error.hidden = true;
  try {
    await api("/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: token.value }),
    });
  } catch (e) {
    error.textContent = e instanceof ApiError && e.status === 401 ? "That is not the token. Try again." : e instanceof Error ? e.message : String(e);
    error.hidden = false;
    token.select();
    return;
  }
  token.value = "";
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
