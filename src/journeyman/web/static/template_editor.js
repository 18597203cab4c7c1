// journeyman console: the template editor. Plain JavaScript, no library, no build.
//
// The page edits one template as a JSON object shaped as its YAML document, beside a
// preview the server renders (POST /editor/api/preview) for a stored profile or a sample
// as it is typed. What the profile lacks is marked in the text: each field is a textarea
// over a copy of its text in which the missing variables are highlighted. Drafts work as
// the journey editor's: the server merges the document into the template's YAML file,
// answers the diff and the problems, and keeps the draft until it is published.
"use strict";

const T = {
  name: "", csrf: "", fresh: false, published: false, journey: "", readOnly: false,
  schema: null, draft: null, doc: null, saved: "", problems: [],
  profile: "", width: "desktop", missing: [], checking: 0, previewing: 0, theirs: null,
};

// The fields of each channel, where the server's schema does not say.
const CHANNELS = { email: ["subject", "html", "text"], sms: ["body"], push: ["title", "body"], webhook: ["body"] };
const ONE_LINE = new Set(["subject", "title"]);
const HELP = {
  subject: "the email's subject line",
  html: "the email's HTML: the values it outputs are escaped, unless marked | safe",
  text: "the plain-text part, for mail readers without HTML",
  body: "the message's text",
  title: "the notification's title",
};

const draftPath = (tail = "") => `/templates/${encodeURIComponent(T.name)}/draft${tail}`;

// The draft's flow, as the journey editor's (editing.js).
const DRAFT = draftFlow(T, {
  kind: "template",
  path: draftPath,
  note: "nothing is sent with them until you publish.",
  adopted(draft) {
    drawForm();
    showDraft(draft);
    showState();
    previewChecked();
  },
  showDraft,
  drawProblems,
  published: (version) => `Published as workspace version ${version ?? "?"}: the next message sent with ${T.name} reads as the preview.`,
});
const { load, showState } = DRAFT;

// --- the form: the channel, then each of its fields ---

function fieldsOf(channel) {
  const channels = T.schema?.template?.channels || CHANNELS;
  return channels[channel] || [];
}

function drawForm() {
  const form = document.querySelector("[data-form]");
  const channels = Object.keys(T.schema?.template?.channels || CHANNELS);
  const channel = h("select", { id: "t-channel", disabled: T.readOnly, onchange: (e) => setChannel(e.target.value) },
    ...channels.map((c) => h("option", { value: c, selected: c === T.doc.channel }, c)));
  form.replaceChildren(h("div", { class: "field-row" }, h("label", { for: "t-channel" }, "channel"), channel));
  for (const key of fieldsOf(T.doc.channel)) form.append(textField(key));
  highlightAll();
}

function textField(key) {
  const id = `t-${key}`;
  const area = h("textarea", {
    id, rows: ONE_LINE.has(key) ? 1 : key === "html" ? 9 : 4, spellcheck: "false", autocomplete: "off",
    disabled: T.readOnly, "aria-describedby": `${id}-help ${id}-check`, "data-field": key,
  });
  area.value = typeof T.doc[key] === "string" ? T.doc[key] : "";
  const backdrop = h("div", { class: "backdrop", "aria-hidden": "true" });
  area.addEventListener("input", () => edit(key, area));
  area.addEventListener("scroll", () => { backdrop.scrollTop = area.scrollTop; });
  if (ONE_LINE.has(key)) area.addEventListener("keydown", (e) => { if (e.key === "Enter") e.preventDefault(); });
  const row = h("div", { class: "field-row", "data-path": key },
    h("label", { for: id }, key), h("div", { class: "hl" }, backdrop, area),
    h("p", { class: "help", id: `${id}-help` }, HELP[key] || ""),
    h("p", { class: "check-result", id: `${id}-check`, "aria-live": "polite" }));
  if (area.value) check(area);
  return row;
}

function edit(key, area) {
  T.doc[key] = area.value;
  highlight(area);
  check(area);
  changed();
}

function setChannel(channel) {
  const keep = new Set(fieldsOf(channel));
  for (const key of Object.values(T.schema?.template?.channels || CHANNELS).flat()) {
    if (!keep.has(key) && key in T.doc && !T.doc[key]) delete T.doc[key];
  }
  T.doc.channel = channel;
  const first = fieldsOf(channel)[0];
  if (first && !(first in T.doc)) T.doc[first] = "";
  drawForm();
  changed();
}

function changed() {
  showState();
  checkSoon();
}

// --- Liquid checked as it is typed ---

const checks = new WeakMap();
function check(area) {
  const run = checks.get(area) || debounce(async () => {
    const text = area.value;
    const result = document.getElementById(`${area.id}-check`);
    if (!result) return;
    if (!text.trim()) { result.textContent = ""; area.removeAttribute("aria-invalid"); return; }
    const answer = await api("POST", "/check", { kind: "liquid", text, field: area.dataset.field });
    if (area.value !== text || !answer.ok) return;
    const problems = answer.data.problems || [];
    if (problems.length) area.setAttribute("aria-invalid", "true"); else area.removeAttribute("aria-invalid");
    result.classList.toggle("bad", problems.length > 0);
    result.textContent = problems.length ? problems.map((p) => p.message).join("; ") : "✓ reads well";
  }, 250);
  checks.set(area, run);
  run();
}

// --- the missing variables, marked in the text ---

function missingPattern() {
  if (!T.missing.length) return null;
  const names = T.missing.map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`(?<![\\w.])(?:${names.join("|")})(?![\\w])`, "g");
}

function highlight(area) {
  const backdrop = area.previousElementSibling;
  const text = area.value;
  const pattern = missingPattern();
  const parts = [];
  let at = 0;
  for (const found of pattern ? text.matchAll(pattern) : []) {
    parts.push(text.slice(at, found.index), h("mark", { class: "missing", title: `${found[0]} is missing for this profile` }, found[0]));
    at = found.index + found[0].length;
  }
  // A last line break shows only if something follows it.
  parts.push(text.slice(at), "\u200b");
  backdrop.replaceChildren(...parts);
  backdrop.scrollTop = area.scrollTop;
}

function highlightAll() {
  for (const area of document.querySelectorAll("[data-form] textarea")) highlight(area);
}

// --- the preview, rendered by the server as it is typed ---

// The preview follows the draft's check: a template with errors cannot be rendered.
function previewChecked() {
  const errors = T.problems.filter((p) => isError(p) && (!p.file || p.file === T.draft?.file));
  if (!errors.length) { preview(); return; }
  ++T.previewing;
  document.querySelector("[data-preview]").replaceChildren(
    h("p", { class: "alert error", "data-preview-error": "" }, "The preview waits for the template to read well:"),
    h("ul", {}, ...errors.map((p) => h("li", {}, p.message))));
}

async function preview() {
  const sent = ++T.previewing;
  const holder = document.querySelector("[data-preview]");
  const about = document.querySelector("[data-preview-about]");
  const answer = await api("POST", "/preview", { template: T.doc, profile: T.profile || null });
  if (sent !== T.previewing) return;
  about.textContent = T.profile ? `Profile ${T.profile}, as stored now.` : "A sample profile.";
  if (!answer.ok) {
    const problems = (answer.data.problems || []).map((p) => h("li", {}, p.message));
    const said = answer.status === 404 && T.profile ? `There is no profile ${T.profile}.` : errorText(answer);
    holder.replaceChildren(h("p", { class: "alert error", "data-preview-error": "" }, said), problems.length ? h("ul", {}, problems) : "");
    return;
  }
  const p = answer.data;
  T.missing = p.missing || [];
  highlightAll();
  const parts = [];
  if (T.missing.length) {
    parts.push(h("p", { class: "alert error missing", "data-missing": "" }, "Missing for this profile: ",
      ...T.missing.map((name) => h("code", { class: "chip" }, name))));
  }
  if (p.to) parts.push(h("p", { class: "field" }, h("span", { class: "muted" }, "to "), String(p.to)));
  if (p.subject !== null && p.subject !== undefined) {
    parts.push(h("p", { class: "field", "data-subject": "" }, h("span", { class: "muted" }, "subject "), h("strong", {}, p.subject)));
  }
  if (p.html) {
    const frame = h("iframe", { class: `preview ${T.width}`, sandbox: "", title: `The ${T.name} email as rendered` });
    frame.srcdoc = p.html;
    parts.push(h("div", { class: "frame-holder" }, frame));
  }
  if (p.text) parts.push(h("pre", { class: `code ${p.sms ? "sms" : "text-part"}`, "data-text": "" }, p.text));
  if (p.sms) {
    const segments = `${p.sms.segments} segment${p.sms.segments === 1 ? "" : "s"}`;
    parts.push(h("p", { class: "small", "data-sms": "" }, `${p.sms.length} characters, ${segments} (${p.sms.encoding})`));
  }
  holder.replaceChildren(h("p", { class: "muted small" }, `${p.channel} template`), ...parts);
}

// --- what the server says of the draft: diff and problems ---

const checkSoon = debounce(async () => {
  const sent = ++T.checking;
  const answer = await api("POST", draftPath("/check"), { document: T.doc });
  if (sent !== T.checking || !answer.ok) return;
  showDraft(answer.data);
  previewChecked();
}, 250);

function showDraft(data) {
  T.problems = data.problems || [];
  drawDiff(data.diff || "");
  drawProblems();
}

function drawProblems() {
  drawProblemList(T.problems, {
    where: (p) => [p.file, p.line ? `line ${p.line}` : ""],
    goTo: (p) => {
      const field = document.getElementById(`t-${p.path.split(/[.[]/)[0]}`);
      return field ? () => field.focus() : null;
    },
  });
}

// --- start ---

function templateList() {
  const names = T.schema?.completions?.templates || [];
  const back = T.journey ? `?journey=${encodeURIComponent(T.journey)}` : "";
  document.querySelector("[data-templates]").replaceChildren(...names.map((name) => h("li", {},
    h("a", { href: `/templates/${encodeURIComponent(name)}/edit${back}`, "aria-current": name === T.name ? "page" : null }, name))));
}

async function start(root) {
  T.name = root.dataset.template;
  T.csrf = EDITING.csrf = root.dataset.csrf;
  T.fresh = root.dataset.new === "true";
  T.journey = root.dataset.journey || "";
  T.readOnly = window.matchMedia("(max-width: 700px)").matches;
  root.classList.toggle("read-only", T.readOnly);
  const schema = await api("GET", "/editor/schema");
  T.schema = schema.ok ? schema.data : null;
  templateList();
  const sample = () => { T.profile = ""; document.querySelector("[data-profile]").value = ""; preview(); };
  listenForActions(root, { ...DRAFT.actions, sample }, T);
  const search = root.querySelector("[data-profile]");
  search.addEventListener("input", () => searchProfiles(search.value));
  root.querySelector("[data-profile-form]").addEventListener("submit", (event) => {
    event.preventDefault();
    T.profile = search.value.trim();
    preview();
  });
  if (!schema.ok) say(`The editor schema could not be read (${errorText(schema)}).`, "error");
  await load();
  root.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("template-editor");
  if (root) start(root);
});
