// journeyman console: what the journey editor and the template editor share, loaded
// before either: building elements, the /editor/api calls (with the page's CSRF token,
// set in EDITING.csrf), the status line, error texts, diffs, the preview's width, the
// profile search, and the draft's flow (draftFlow). Plain JavaScript.
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

const isError = (problem) => (problem.severity || "error") === "error";

// --- what the server says of a draft: its diff against the file, its problems ---

function drawDiff(diff) {
  const pre = document.querySelector("[data-diff]");
  if (!diff.trim()) { pre.replaceChildren(h("span", { class: "muted" }, "The draft is the same as the file.")); return; }
  pre.replaceChildren(...diffLines(diff));
}

// The problems panel: the count of errors, then each problem with where(problem), the
// words that place it, and its path as a button where goTo(problem) answers a click's run.
function drawProblemList(problems, { where, goTo }) {
  const list = document.querySelector("[data-problems]");
  const errors = problems.filter(isError).length;
  const count = document.querySelector("[data-problem-count]");
  count.textContent = String(errors);
  count.className = `badge${errors ? " sev-error" : ""}`;
  if (!problems.length) { list.replaceChildren(h("li", { class: "muted" }, "None: the draft is valid.")); return; }
  list.replaceChildren(...problems.map((p) => {
    const severity = p.severity || "error";
    const place = where(p).filter(Boolean).join(", ");
    const go = p.path ? goTo(p) : null;
    return h("li", { "data-severity": severity }, h("span", { class: `badge sev-${severity}` }, severity), " ",
      go ? h("button", { type: "button", class: "link-button", onclick: go }, p.path) : null,
      place ? h("span", { class: "muted small" }, ` ${place}: `) : " ", p.message);
  }));
}

// --- the preview's width and the page's buttons ---

function chooseWidth(state, width) {
  state.width = width;
  for (const button of document.querySelectorAll("[data-width]")) button.setAttribute("aria-pressed", String(button.dataset.width === width));
  for (const frame of document.querySelectorAll("[data-preview] iframe")) frame.className = `preview ${width}`;
}

// A [data-action] button runs actions[its action]; a [data-width] button sets state.width.
function listenForActions(root, actions, state) {
  root.addEventListener("click", (event) => {
    const button = event.target.closest?.("[data-action]");
    if (button && actions[button.dataset.action]) actions[button.dataset.action]();
    const width = event.target.closest?.("[data-width]");
    if (width) chooseWidth(state, width.dataset.width);
  });
}

const searchProfiles = debounce(async (text) => {
  if (!text.trim()) return;
  try {
    const answer = await fetch(`/profiles?q=${encodeURIComponent(text)}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!answer.ok) return;
    const data = await answer.json();
    document.querySelector("[data-profile-options]").replaceChildren(...(data.profiles || []).map((id) => h("option", { value: id })));
  } catch (error) {
    // A search is only a help: the box takes any id as typed.
  }
}, 250);

// --- the draft: load, save, discard, save to the folder, publish, two people at once ---
//
// Both editors keep their draft alike (markup in templates/_editing.html). The
// editor's state holds name, fresh, published, draft, doc, saved, problems and theirs;
// what differs comes in as options:
//   kind            "journey" or "template": the texts and the link to start a new one
//   path(tail)      the draft's API path, such as /journeys/x/draft plus tail
//   note            what the state line says the draft holds back until a publish
//   adopted(draft)  redraw the editor for a document just loaded (state.doc is set)
//   showDraft(data) show the server's diff and problems of the draft
//   drawProblems()  show state.problems
//   counts(problem) a problem that keeps the draft from being published (else an error)
//   keepsServerDocument  after a save, edit on the document the server answers
//   history         an editor with undo: { keep(), drop(), cut() } so that discarding and
//                   loading their draft can be undone with Ctrl+Z
//   shown()         after the state line is drawn
//   published(version)  what the status line says after a publish
function draftFlow(state, options) {
  const { kind, path, history } = options;
  const counts = options.counts || isError;
  const dirty = () => JSON.stringify(state.doc) !== state.saved;

  function showState() {
    const draft = state.draft || {};
    let said = draft.stored ? "draft" : state.fresh && !state.published ? "new" : "as in the folder";
    if (dirty()) said += " · unsaved changes";
    const badge = document.querySelector("[data-draft-state]");
    badge.textContent = said;
    badge.className = `badge${dirty() ? " state-paused" : ""}`;
    document.querySelector("[data-draft-about]").textContent = draft.stored
      ? `Draft saved by ${draft.by} at ${draft.at}.`
      : `Edits go to a draft of ${draft.file || `the ${kind}'s file`}; ${options.note}`;
    document.querySelector("[data-file]").textContent = draft.file || "the file";
    options.shown?.();
  }

  function adopt(draft) {
    state.draft = draft;
    state.doc = JSON.parse(JSON.stringify(draft.document || {}));
    state.saved = JSON.stringify(state.doc);
    options.adopted(draft);
  }

  async function load() {
    const answer = await api("GET", path(state.fresh ? "?new=1" : ""));
    if (!answer.ok) {
      const create = h("a", { href: `/${kind}s/${encodeURIComponent(state.name)}/edit?new=1` }, `start a new ${kind} of this name`);
      say(answer.status === 404 ? [`There is no ${kind} `, h("code", {}, state.name), ": ", create, "."] : errorText(answer), "error");
      return false;
    }
    adopt(answer.data);
    return true;
  }

  async function saveDraft() {
    const answer = await api("PUT", path(), { document: state.doc, revision: state.draft?.revision ?? null });
    if (answer.status === 409) { conflict(answer.data); return false; }
    if (!answer.ok) { say(errorText(answer), "error"); return false; }
    const answered = options.keepsServerDocument ? answer.data.document : null;
    state.draft = answer.data;
    state.saved = JSON.stringify(answered ?? state.doc);
    if (answered) state.doc = JSON.parse(JSON.stringify(answered));
    hideConflict();
    options.showDraft(answer.data);
    showState();
    return true;
  }

  async function save() {
    if (await saveDraft()) {
      const count = (state.draft.problems || []).filter(counts).length;
      say(count ? `Draft saved, with ${count} error${count > 1 ? "s" : ""} to fix before it can be published.` : "Draft saved.", count ? "" : "ok");
    }
  }

  async function discard() {
    history?.keep();
    const answer = await api("DELETE", path());
    if (!answer.ok && answer.status !== 404) { history?.drop(); say(errorText(answer), "error"); return; }
    const undo = history ? " Ctrl+Z brings your edits back as unsaved changes." : "";
    if (await load()) say(`Draft discarded: the editor shows the file again.${undo}`, "ok");
    if (history) { history.cut(); showState(); }
  }

  // The draft as edited, stored first where it is not.
  async function saved() {
    return dirty() || !state.draft?.stored ? saveDraft() : true;
  }

  // Save to the folder or publish: the stored draft at the revision this page has.
  async function send(tail) {
    if (!(await saved())) return null;
    const answer = await api("POST", path(tail), { revision: state.draft.revision });
    if (answer.status === 409) { conflict(answer.data); return null; }
    if (!answer.ok) { refused(answer); return null; }
    return answer.data;
  }

  async function toFolder() {
    const done = await send("/save");
    if (done) say(`Saved to ${done.file || state.draft.file}: commit it with git to keep it.`, "ok");
  }

  async function publish() {
    const done = await send("/publish");
    if (!done) return;
    state.fresh = false;
    state.published = true;
    await load();
    say(options.published(done.workspace), "ok");
  }

  function refused(answer) {
    if (Array.isArray(answer.data.problems)) {
      state.problems = answer.data.problems;
      options.drawProblems();
    }
    say(errorText(answer), "error");
  }

  function conflict(data) {
    state.theirs = data.theirs || null;
    const said = typeof data.error === "string" ? data.error : data.error?.message;
    document.querySelector("[data-conflict-message]").textContent = said ? `${said}.` : "Someone else saved this draft since you opened it.";
    document.querySelector("[data-conflict-diff]").replaceChildren(...diffLines(String(data.diff || "")));
    const panel = document.querySelector("[data-conflict]");
    panel.hidden = false;
    say("");
    panel.querySelector("button").focus();
  }

  function hideConflict() {
    document.querySelector("[data-conflict]").hidden = true;
  }

  function takeTheirs() {
    if (!state.theirs) return;
    if (history) { history.keep(); history.cut(); }
    adopt(state.theirs);
    hideConflict();
    say(`Their draft is loaded.${history ? " Ctrl+Z brings yours back as unsaved changes." : ""}`, "ok");
  }

  async function keepMine() {
    if (state.theirs) state.draft = { ...state.draft, revision: state.theirs.revision };
    hideConflict();
    await save();
  }

  return {
    load, showState,
    actions: { save, discard, folder: toFolder, publish, theirs: takeTheirs, mine: keepMine },
  };
}
