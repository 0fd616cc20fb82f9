// @ts-check
// imgsearchd's page. Hand-written native ES modules, no library and no build step (README,
// "The web page"): three views (search, duplicates, status) over the daemon's own HTTP API.
// This module starts the page and wires what belongs to no single view: the login, the views'
// links, the keyboard.
//
//   dom, format, types, state     helpers and the shared state
//   api                           fetch with the cookie; picture URLs
//   card                          one picture as a card: search results and duplicates alike
//   query, search, drop           the search view: the query's parts, results, drag and paste
//   duplicates, status, stats     the other views; /stats feeds them all
//   views, login                  which view shows; the token login

import { onUnauthorised } from "./api.js";
import { $, $input, setMessage } from "./dom.js";
import { bindDrop } from "./drop.js";
import { bindDuplicates, loadDuplicates } from "./duplicates.js";
import { bindLogin, showLogin } from "./login.js";
import { bindSearch, useFile } from "./search.js";
import { VIEWS, state } from "./state.js";
import { poll } from "./stats.js";
import { showSearch, showView, whenShown } from "./views.js";

function begin() {
  state.started = true;
  $("#nav").hidden = false;
  showView(location.hash.slice(1));
  poll();
}

function bindPage() {
  onUnauthorised(showLogin);
  bindLogin(begin);
  whenShown("duplicates", () => !state.dup.loaded && state.stats && loadDuplicates(0));
  whenShown("status", poll);
  // Only a view's name changes the view: "#main" (the skip link) moves the focus, nothing else.
  window.addEventListener("hashchange", () => {
    const name = location.hash.slice(1);
    if (state.started && VIEWS.includes(name)) showView(name);
  });
  $(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    $("#main").focus();
  });
  document.addEventListener("visibilitychange", () => state.started && !document.hidden && poll());
  // "/" jumps to the search box (or the picture button when text search is off), as on many sites.
  document.addEventListener("keydown", (event) => {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement?.tagName || "");
    if (event.key === "/" && !typing && state.started) {
      event.preventDefault();
      showSearch();
      ($input("#text").disabled ? $("#file-label") : $input("#text")).focus();
    }
  });
  const fileLabel = $("#file-label");
  fileLabel.tabIndex = 0;
  fileLabel.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $input("#file").click();
    }
  });
}

async function start() {
  bindPage();
  bindSearch();
  bindDrop(useFile);
  bindDuplicates();
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
