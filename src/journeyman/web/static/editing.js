// journeyman console: what the journey editor and the template editor share, loaded
// before either: building elements, the /editor/api calls (with the page's CSRF token,
// set in EDITING.csrf), the status line, error texts and diffs. Plain JavaScript.
"use strict";

const EDITING = { csrf: "" };

function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function debounce(run, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => run(...args), ms); };
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = EDITING.csrf;
  const options = { method, headers, credentials: "same-origin" };
  if (body !== undefined) options.body = JSON.stringify(body);
  try {
    const answer = await fetch(`/editor/api${path}`, options);
    let data = null;
    if (answer.status !== 204) { try { data = await answer.json(); } catch (error) { data = null; } }
    return { status: answer.status, ok: answer.ok, data: data || {} };
  } catch (error) {
    return { status: 0, ok: false, data: { error: "The server did not answer: try again in a moment." } };
  }
}

function errorText(answer) {
  const data = answer.data || {};
  const error = typeof data.error === "string" ? data.error : data.error?.message;
  return error || `The server answered ${answer.status}.`;
}

function say(text, kind = "") {
  const status = document.querySelector("[data-status]");
  status.hidden = !text;
  status.className = `alert ${kind}`;
  status.setAttribute("role", kind === "error" ? "alert" : "status");
  status.replaceChildren(...(Array.isArray(text) ? text : [text]));
}

function diffLines(diff) {
  return diff.split("\n").flatMap((line) => {
    const kind = line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : "";
    return [h("span", { class: kind }, line), "\n"];
  });
}
