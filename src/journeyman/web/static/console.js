// journeyman console: live numbers on the journey graph, and self-refreshing lists.
// Plain JavaScript, no library. Pages work without it; it only keeps them current.
"use strict";

const ISSUES = ["skipped", "capped", "dropped", "left", "failed"];

async function fetchJson(url) {
  const answer = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!answer.ok) throw new Error(`${answer.status}`);
  return answer.json();
}

// The journey page: every few seconds, the counts of every box from the page's JSON twin.
function liveGraph(canvas) {
  const url = canvas.dataset.liveUrl;
  const seconds = Number(canvas.dataset.live) || 3;
  const status = document.querySelector("[data-live-status]");
  const state = document.querySelector("[data-state]");
  async function refresh() {
    try {
      const data = await fetchJson(url);
      for (const node of canvas.querySelectorAll("[data-node]")) {
        const counts = data.nodes[node.dataset.node];
        if (counts) updateNode(node, counts);
      }
      if (state) { state.textContent = data.state; state.className = `badge state-${data.state}`; }
      if (status) status.classList.remove("stale");
    } catch (error) {
      if (status) status.classList.add("stale");
    }
  }
  setInterval(refresh, seconds * 1000);
}

function updateNode(node, counts) {
  let changed = false;
  for (const cell of node.querySelectorAll("[data-count]")) {
    const value = String(counts[cell.dataset.count] ?? 0);
    if (cell.textContent !== value) { cell.textContent = value; changed = true; }
  }
  const issues = node.querySelector("[data-issues]");
  if (issues) {
    const text = ISSUES.filter((k) => counts[k]).map((k) => `${counts[k]} ${k}`).join(" · ");
    if (issues.dataset.full !== text) { issues.dataset.full = text; fit(issues); }
  }
  for (const line of node.querySelectorAll("[data-squeeze]")) squeeze(line);
  if (changed) {
    node.classList.remove("flash");
    void node.getBBox();
    node.classList.add("flash");
  }
}

// Text of a graph's box that is wider than the box: as much of it as fits, then "…".
// The whole text stays in the box's tooltip and label.
function fit(text) {
  const width = Number(text.dataset.fit);
  const full = text.dataset.full ?? text.textContent;
  text.dataset.full = full;
  text.textContent = full;
  if (!width || text.getComputedTextLength() <= width) return;
  let low = 0;
  let high = full.length - 1;
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    text.textContent = `${full.slice(0, middle)}…`;
    if (text.getComputedTextLength() <= width) low = middle; else high = middle - 1;
  }
  text.textContent = `${full.slice(0, low).trimEnd()}…`;
}

// A line of numbers wider than its box (large numbers) is drawn a little narrower.
function squeeze(text) {
  text.removeAttribute("textLength");
  const width = Number(text.dataset.squeeze);
  if (width && text.getComputedTextLength() > width) {
    text.setAttribute("lengthAdjust", "spacingAndGlyphs");
    text.setAttribute("textLength", String(width));
  }
}

// An email shown in a closed <details> is only drawn once opened: a page of many emails
// would otherwise load a frame for each of them.
function openFrames(event) {
  const details = event.target;
  if (!(details instanceof HTMLDetailsElement) || !details.open) return;
  for (const frame of details.querySelectorAll("template.frame")) {
    frame.replaceWith(frame.content.cloneNode(true));
  }
}

// A list that refreshes: fetch this page again and swap in the element with the same id.
function liveRegion(region) {
  const seconds = Number(region.dataset.refresh) || 3;
  const toggle = document.querySelector("[data-live-toggle]");
  setInterval(async () => {
    if (toggle && !toggle.checked) return;
    try {
      const answer = await fetch(location.href, { credentials: "same-origin" });
      if (!answer.ok) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.getElementById(region.id);
      if (fresh) region.replaceChildren(...fresh.childNodes);
    } catch (error) {
      // The server is away for a moment: try again at the next tick.
    }
  }, seconds * 1000);
}

document.addEventListener("toggle", openFrames, true);  // toggle does not bubble

document.addEventListener("DOMContentLoaded", () => {
  for (const text of document.querySelectorAll("text[data-fit]")) fit(text);
  for (const text of document.querySelectorAll("text[data-squeeze]")) squeeze(text);
  for (const canvas of document.querySelectorAll("[data-live-url]")) liveGraph(canvas);
  for (const region of document.querySelectorAll("[data-refresh]")) liveRegion(region);
});
