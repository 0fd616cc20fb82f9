// @ts-check
// A picture dropped anywhere on the page or pasted (Ctrl+V) searches; the overlay says what
// a drop will do while a file is dragged over the page.

import { $ } from "./dom.js";
import { state } from "./state.js";

/** @param {DragEvent} event */
const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");

/**
 * @param {(file: File | undefined) => void} useFile what a dropped or pasted picture does
 */
export function bindDrop(useFile) {
  const overlay = $("#drop-overlay");
  let depth = 0;
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
    if (state.started) useFile(event.dataTransfer?.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = Array.from(event.clipboardData?.files || []).find((f) => f.type.startsWith("image/"));
    if (file && state.started) {
      event.preventDefault();
      useFile(file);
    }
  });
}
