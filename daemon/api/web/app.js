// @ts-check
// imgsearchd's page. Hand-written native ES modules, no library and no build step (README,
// "The web page"): four views (search, folders, duplicates, status) over the daemon's own HTTP
// API. This module starts the page and wires what belongs to no single view: the login, the
// address (which view, which search), the keyboard.
//
//   dom, format, types, state     helpers and the shared state
//   api                           fetch with the cookie; picture URLs
//   card, viewer                  one picture as a card (a grid of them is one Tab stop); the viewer
//   query, search, address, drop  the search view: the query's parts, results, the address, drag and paste
//   folders, duplicates, status   the other views; /stats feeds them all (stats)
//   views, login                  which view shows; the token login

import { onUnauthorised } from "./api.js";
import { readAddress } from "./address.js";
import { $, $input, setBanner } from "./dom.js";
import { bindDrop } from "./drop.js";
import { bindDuplicates, loadDuplicates } from "./duplicates.js";
import { bindFolders } from "./folders.js";
import { bindLogin, showLogin } from "./login.js";
import { bindSearch, restoreFromAddress, useFile } from "./search.js";
import { MAX_RETRY_MS, POLL_MS, VIEWS, state } from "./state.js";
import { poll } from "./stats.js";
import { bindViewer, closeViewer } from "./viewer.js";
import { showSearch, showView, whenShown } from "./views.js";

/** The view and the search the address names (at start, and on Back and Forward). */
function route() {
  closeViewer();
  const { view } = readAddress();
  if (view === "search" || !VIEWS.includes(view)) restoreFromAddress();
  else showView(view);
}

function begin() {
  state.started = true;
  $("#nav").hidden = false;
  route();
  poll();
}

function bindPage() {
  onUnauthorised(showLogin);
  bindLogin(begin);
  whenShown("duplicates", () => !state.dup.loaded && state.stats && loadDuplicates(0));
  whenShown("status", poll);
  whenShown("folders", poll);
  // A link to a view, Back and Forward: only a view's name changes the view ("#main", the skip
  // link, moves the focus; nothing else).
  window.addEventListener("popstate", () => {
    const { view } = readAddress();
    if (state.started && VIEWS.includes(view)) route();
  });
  $(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    $("#main").focus();
  });
  document.addEventListener("visibilitychange", () => state.started && !document.hidden && poll());
  // "/" jumps to the search box (or the picture button when text search is off), as on many sites.
  document.addEventListener("keydown", (event) => {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement?.tagName || "");
    if (event.key === "/" && !typing && state.started && !document.querySelector("dialog[open]")) {
      event.preventDefault();
      showSearch();
      $("#search-form").classList.remove("folded");
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

/** Whether the page must sign in, asked again (less and less often) while the daemon is away. */
async function connect(tries = 0) {
  let who = null;
  try {
    const response = await fetch("/login", { credentials: "same-origin" });
    if (response.ok) who = await response.json();
  } catch {
    const wait = Math.min(MAX_RETRY_MS, POLL_MS * 2 ** (tries + 1));
    setBanner(`Cannot reach the daemon (is it running?): asking again in ${Math.round(wait / 1000)} s.`, "error");
    setTimeout(() => connect(tries + 1), wait);
    return;
  }
  setBanner("");
  who = who || { token_required: false, authorised: true };
  $("#logout").hidden = !who.token_required;
  if (who.token_required && !who.authorised) showLogin();
  else begin();
}

bindPage();
bindSearch();
bindDrop(useFile);
bindDuplicates();
bindFolders();
bindViewer();
connect();
