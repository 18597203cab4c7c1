// journeyman console: the journey editor. Plain JavaScript, no library, no build.
//
// The page edits one journey as a JSON object shaped as its YAML document. Every change
// is made to that object (kept for undo and redo), drawn at once on the canvas (laid out
// by editor_graph.js as the journey page lays out a journey), and sent to the server,
// which merges it into the YAML file and answers the diff and the problems. Saving stores
// a draft; nothing runs until it is published. Uses fit() from console.js for the boxes.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

// --- the schema: the server's, with what a form needs filled in where it says less ---

const F = (type, extra = {}) => ({ type, required: false, help: "", ...extra });
const NEXT = F("step", { help: "the step that follows (by default, the one below)" });
const ABOUT = F("string", { help: "what the step is for" });
const FALLBACK = {
  journey: {
    description: F("string"),
    entry: { type: "object", required: true, help: "what brings a profile in", fields: {
      event: F("event"), segment: F("segment"), when: F("expression"),
      schedule: { type: "object", help: "enter on a schedule", fields: {
        every: F("string"), cron: F("string"), at: F("string"), timezone: F("string"), rate: F("number") } } } },
    reentry: F("string", { help: "never, always or after <duration>" }),
    timeout: F("duration", { help: "the longest an instance may run" }),
    exit: { type: "list", help: "leave the journey on these", items: { type: "object", fields: {
      event: F("event"), segment_exited: F("segment"), when: F("expression") } } },
    ignore_caps: F("boolean"),
    goals: { type: "list", items: { type: "object", fields: {
      name: F("string", { required: true }), event: F("event", { required: true }),
      within: F("duration", { required: true }), when: F("expression"), value: F("expression"),
      primary: F("boolean"), description: F("string") } } },
    exit_on_goal: F("boolean"),
    holdout: F("string", { help: "a share of entries held out, such as 10%" }),
  },
  steps: {
    wait: { fields: { wait: F("duration", { required: true }), next: NEXT, description: ABOUT }, edges: ["next"] },
    wait_for: { fields: {
      wait_for: { type: "object", required: true, fields: {
        event: F("event"), reaction: F("enum", { enum: ["sent", "delivered", "failed", "opened", "clicked", "bounced", "complained", "unsubscribed"] }),
        to: F("step"), url: F("string"), machine: F("boolean"), when: F("expression"), timeout: F("duration") } },
      on_event: F("step"), on_timeout: F("step"), next: NEXT, description: ABOUT }, edges: ["on_event", "on_timeout", "next"] },
    branch: { fields: { branch: { type: "list", required: true, items: { type: "object", fields: {
      when: F("expression"), goto: F("step"), otherwise: F("step") } } }, description: ABOUT }, edges: ["branch[].goto", "branch[].otherwise"] },
    split: { fields: { split: { type: "list", required: true, items: { type: "object", fields: {
      weight: F("number", { required: true }), goto: F("step", { required: true }), name: F("string"), holdout: F("boolean") } } }, description: ABOUT }, edges: ["split[].goto"] },
    experiment: { fields: {
      experiment: { type: "list", required: true, items: { type: "object", fields: {
        name: F("string", { required: true }), weight: F("number", { required: true }), send: F("template"), goto: F("step") } } },
      winner: { type: "object", fields: { metric: F("string"), min_per_variant: F("integer"), min_time: F("duration"), confidence: F("number") } },
      next: NEXT, description: ABOUT }, edges: ["experiment[].goto", "next"] },
    send: { fields: { send: F("template", { required: true }), on_error: F("step"), next: NEXT, description: ABOUT }, edges: ["next", "on_error"] },
    call: { fields: { call: F("string", { required: true }), on_error: F("step"), next: NEXT, description: ABOUT }, edges: ["next", "on_error"] },
    update_profile: { fields: { update_profile: { type: "object", required: true, fields: {
      set: { type: "object" }, unset: { type: "list", items: F("string") } } }, next: NEXT, description: ABOUT }, edges: ["next"] },
    jump: { fields: { jump: F("string", { required: true }), next: NEXT, description: ABOUT }, edges: ["next"] },
    end: { fields: { end: F("string", { help: "the end state" }), description: ABOUT }, edges: [] },
  },
  completions: { events: [], traits: [], templates: [], segments: [], steps: {} },
};

// A list's items as a field of their own: the server may say `items: "object"` with the
// items' fields beside it.
function normal(spec) {
  if (!spec || spec.type !== "list" || isObject(spec.items)) return spec;
  const items = spec.items || (spec.fields ? "object" : "");
  if (!items) return spec;
  return { ...spec, items: items === "object" ? { type: "object", fields: spec.fields || {} } : { type: items } };
}

function fillIn(given, fallback) {
  // The server's field, with the sub-fields of the fallback where the server gives none.
  const spec = normal(given);
  if (!spec) return fallback;
  if (!fallback) return spec;
  const merged = { ...spec };
  if (fallback.fields && (spec.type === "object" || spec.fields)) merged.fields = fillFields(spec.fields, fallback.fields);
  if (spec.type === "list" && fallback.items) {
    merged.items = !spec.items || (spec.items.type === "object" && !Object.keys(spec.items.fields || {}).length)
      ? fallback.items : fillIn(spec.items, fallback.items);
  }
  return merged;
}

function fillFields(fields, fallback) {
  const merged = {};
  const given = fields && Object.keys(fields).length ? fields : fallback || {};
  for (const [key, spec] of Object.entries(given)) merged[key] = fillIn(spec, (fallback || {})[key]);
  return merged;
}

function completeSchema(given) {
  const schema = { journey: fillFields(given.journey, FALLBACK.journey), steps: {} };
  for (const [type, step] of Object.entries(given.steps || FALLBACK.steps)) {
    const fallback = FALLBACK.steps[type] || { fields: {}, edges: ["next"] };
    const fields = fillFields(step.fields, fallback.fields);
    // The keys every step may have, where the server lists them once for all.
    const edges = step.edges || fallback.edges;
    if (edges.includes("next") && !fields.next) fields.next = NEXT;
    if (!fields.description) fields.description = ABOUT;
    delete fields.id;
    // The form shows what the step does first, what it is for last.
    const { [type]: own, description, ...rest } = fields;
    const ordered = own ? { [type]: own, ...rest, description } : { ...rest, description };
    schema.steps[type] = { ...step, edges, fields: ordered };
  }
  schema.completions = { ...FALLBACK.completions, ...(given.completions || {}) };
  return schema;
}

// --- small helpers ---

function stepType(step) {
  return stepTypeOf(step, Object.keys(E.schema.steps));
}

function copy(value) {
  return JSON.parse(JSON.stringify(value));
}

function s(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

function pathText(path) {
  return path.reduce((text, key) => (typeof key === "number" ? `${text}[${key}]` : text ? `${text}.${key}` : key), "");
}

// A field's element id: f-steps-2-wait_for-timeout.
function fieldId(path) {
  return `f-${path.map((key) => String(key).replace(/[^\w]/g, "_")).join("-")}`;
}

function getAt(root, path) {
  return path.reduce((value, key) => (value === null || value === undefined ? undefined : value[key]), root);
}

function setAt(root, path, value) {
  const parent = getAt(root, path.slice(0, -1));
  const key = path[path.length - 1];
  if (value === undefined) {
    if (Array.isArray(parent)) parent.splice(key, 1); else delete parent[key];
  } else {
    parent[key] = value;
  }
}

// --- the editor's state ---

const E = {
  name: "", csrf: "", fresh: false, published: false, readOnly: false,
  schema: null, draft: null, doc: null, saved: "", theirs: null,
  undo: [], redo: [], typing: null,
  selected: ENTRY, problems: [], trial: null, profile: "", width: "desktop",
  checking: 0,
};

const journeyPath = (tail = "") => `/journeys/${encodeURIComponent(E.name)}/draft${tail}`;

// The draft's flow, as the template editor's (editing.js), with undo kept over a discard
// and over loading their draft.
const DRAFT = draftFlow(E, {
  kind: "journey",
  path: journeyPath,
  note: "nothing runs until you publish.",
  adopted() {
    if (E.selected !== ENTRY && indexOf(E.selected) < 0) E.selected = ENTRY;
    showDraft(E.draft);
    drawInspector();
    fillSteps();
    showState();
  },
  showDraft,
  drawProblems() { drawProblems(); drawCanvas(); },
  counts: (p) => ours(p) && isError(p),
  keepsServerDocument: true,
  history: {
    keep: () => E.undo.push(JSON.stringify(E.doc)),
    drop: () => E.undo.pop(),
    cut: () => { E.redo = []; },
  },
  shown() {
    document.querySelector("[data-action=undo]").disabled = !E.undo.length;
    document.querySelector("[data-action=redo]").disabled = !E.redo.length;
  },
  published: (version) => ["Published as workspace version ", String(version ?? "?"), ". ", h("a", { href: `/journeys/${encodeURIComponent(E.name)}` }, "See it run")],
});
const { load, showState } = DRAFT;

// --- changes, undo and redo ---

// Change the document: one step of undo, unless it goes on typing into the same field.
function change(mutate, typing = null) {
  if (E.readOnly) return;
  if (typing === null || typing !== E.typing) {
    E.undo.push(JSON.stringify(E.doc));
    if (E.undo.length > 200) E.undo.shift();
    E.redo = [];
  }
  E.typing = typing;
  mutate(E.doc);
  changed(typing === null);
}

function changed(rebuildForm) {
  previewSoon();
  drawCanvas();
  if (rebuildForm) drawInspector();
  fillSteps();
  showState();
  checkSoon();
}

function undo() { travel(E.undo, E.redo); }
function redo() { travel(E.redo, E.undo); }

function travel(from, to) {
  if (E.readOnly || !from.length) return;
  to.push(JSON.stringify(E.doc));
  E.doc = JSON.parse(from.pop());
  E.typing = null;
  if (E.selected !== ENTRY && indexOf(E.selected) < 0) E.selected = ENTRY;
  changed(true);
}

function steps() {
  if (!Array.isArray(E.doc.steps)) E.doc.steps = [];
  return E.doc.steps;
}

function indexOf(id) {
  return steps().findIndex((step) => isObject(step) && step.id === id);
}

// --- steps: add, delete, move, rename, connect ---

function freshId(type) {
  const taken = new Set(steps().map((step) => step?.id));
  let n = 1;
  while (taken.has(`${type}_${n}`)) n++;
  return `${type}_${n}`;
}

function starter(type, after) {
  const c = E.schema.completions;
  const goto = after || "";
  switch (type) {
    case "wait": return { wait: "1d" };
    case "wait_for": return { wait_for: { event: c.events[0] || "", timeout: "2d" } };
    case "branch": return { branch: [{ when: "true", goto }, { otherwise: goto }] };
    case "split": return { split: [{ weight: 50, goto }, { weight: 50, goto }] };
    case "experiment": return { experiment: [{ name: "a", weight: 50, send: c.templates[0] || "" }, { name: "b", weight: 50, send: c.templates[0] || "" }] };
    case "send": return { send: c.templates[0] || "" };
    case "update_profile": return { update_profile: { set: {} } };
    case "end": return { end: "completed" };
    default: return { [type]: "" };
  }
}

function addStep(type) {
  const id = freshId(type);
  change((doc) => {
    const list = steps();
    // After the selected step; with the entry selected, first.
    const at = E.selected === ENTRY ? -1 : indexOf(E.selected);
    const above = at >= 0 ? list[at] : null;
    // The step it follows led somewhere on its own: the new step leads there now.
    const follows = above && typeof above.next === "string" ? above.next : null;
    const step = { id, ...starter(type, follows || belowOf(list, at)) };
    if (follows && "next" in (E.schema.steps[type]?.fields || {})) step.next = follows;
    if (follows) above.next = id;
    list.splice(at + 1, 0, step);
  });
  select(id, true);
  say(`Added ${id}.`, "ok");
}

const STEP_LINKS = ["next", "on_event", "on_timeout", "on_error"];

// Every place a step names another: [object, key] pairs, for renames and deletes.
function links(doc) {
  const found = [];
  for (const step of doc.steps || []) {
    if (!isObject(step)) continue;
    for (const key of STEP_LINKS) if (typeof step[key] === "string") found.push([step, key]);
    for (const key of ["branch", "split", "experiment"]) {
      for (const item of Array.isArray(step[key]) ? step[key] : []) {
        if (!isObject(item)) continue;
        for (const k of ["goto", "otherwise"]) if (typeof item[k] === "string") found.push([item, k]);
      }
    }
    if (isObject(step.wait_for) && typeof step.wait_for.to === "string") found.push([step.wait_for, "to"]);
  }
  return found;
}

function deleteStep(id) {
  const at = indexOf(id);
  if (at < 0 || E.readOnly) return;
  change((doc) => {
    const list = steps();
    const step = list[at];
    const type = stepType(step);
    const onward = ["branch", "split", "end"].includes(type) ? null : nextOf(list, at);
    const above = at > 0 ? list[at - 1] : null;
    const aboveLed = above && isObject(above) && !("next" in above) && !["branch", "split", "end"].includes(stepType(above));
    list.splice(at, 1);
    // Who went to it goes where it went; the step above keeps leading there too.
    for (const [holder, key] of links(doc)) {
      if (holder[key] !== id) continue;
      if (onward && onward !== id) holder[key] = onward;
      else if (STEP_LINKS.includes(key)) delete holder[key];
      else holder[key] = "";
    }
    if (aboveLed && onward && belowOf(list, at - 1) !== onward) above.next = onward;
  });
  select(ENTRY);
  say(`Deleted ${id}. Ctrl+Z brings it back.`, "ok");
}

function moveStep(id, by) {
  const at = indexOf(id);
  const to = at + by;
  if (at < 0 || to < 0 || to >= steps().length) return;
  change(() => {
    const list = steps();
    const [step] = list.splice(at, 1);
    list.splice(to, 0, step);
  });
  focusNode(id);
}

function renameStep(from, to) {
  if (!to || to === from) return;
  if (indexOf(to) >= 0) { say(`There is a step ${to} already.`, "error"); drawInspector(); return; }
  change((doc) => {
    steps()[indexOf(from)].id = to;
    for (const [holder, key] of links(doc)) if (holder[key] === from) holder[key] = to;
  });
  E.selected = to;
  drawCanvas();
  drawInspector();
}

// The ways out a step may be given, to choose from when an edge is drawn to a step.
function slotsOf(id) {
  const at = indexOf(id);
  const step = steps()[at];
  const type = stepType(step);
  const found = [];
  const list = (key) => (Array.isArray(step[key]) ? step[key] : []);
  if (type === "branch") {
    list("branch").forEach((c, i) => {
      if (!isObject(c)) return;
      if ("otherwise" in c) found.push({ label: "otherwise", path: ["branch", i, "otherwise"] });
      else found.push({ label: `when ${c.when ?? ""}`, path: ["branch", i, "goto"] });
    });
    found.push({ label: "a new case", add: "branch" });
  } else if (type === "split") {
    list("split").forEach((a, i) => found.push({ label: `arm ${i + 1} (weight ${a?.weight ?? "?"})`, path: ["split", i, "goto"] }));
    found.push({ label: "a new arm", add: "split" });
  } else if (type !== "end") {
    if (type === "wait_for") {
      found.push({ label: "when it comes (on_event)", path: ["on_event"] });
      found.push({ label: "on timeout", path: ["on_timeout"] });
    }
    if (type === "experiment") {
      list("experiment").forEach((v, i) => { if (isObject(v) && "goto" in v) found.push({ label: `variant ${v.name}`, path: ["experiment", i, "goto"] }); });
    }
    found.push({ label: "next", path: ["next"] });
    if (type === "send" || type === "call") found.push({ label: "on error", path: ["on_error"] });
  }
  return found;
}

function connect(source, target, slot) {
  change(() => {
    const step = steps()[indexOf(source)];
    if (slot.add === "branch") {
      const cases = step.branch;
      const last = cases.length && isObject(cases[cases.length - 1]) && "otherwise" in cases[cases.length - 1];
      cases.splice(last ? cases.length - 1 : cases.length, 0, { when: "true", goto: target });
    } else if (slot.add === "split") {
      step.split.push({ weight: 50, goto: target });
    } else {
      setAt(step, slot.path, target);
    }
  });
  say(`${source}: ${slot.label} goes to ${target}.`, "ok");
  select(source);
}

function offerConnect(source, target, x, y) {
  const slots = slotsOf(source);
  if (!slots.length) { say(`${source} ends the journey: it leads nowhere.`, "error"); return; }
  if (slots.length === 1) { connect(source, target, slots[0]); return; }
  const menu = document.querySelector("[data-connect-menu]");
  const close = () => { menu.hidden = true; focusNode(source); };
  menu.replaceChildren(
    h("p", { class: "small strong" }, `${source} → ${target}: which way out?`),
    ...slots.map((slot) => h("button", { type: "button", onclick: () => { menu.hidden = true; connect(source, target, slot); } }, slot.label)),
    h("button", { type: "button", class: "link-button", onclick: close }, "Cancel"),
  );
  menu.onkeydown = (event) => { if (event.key === "Escape") close(); };
  menu.style.left = `${Math.max(8, Math.min(x, window.innerWidth - 280))}px`;
  menu.style.top = `${y + window.scrollY}px`;
  menu.hidden = false;
  menu.querySelector("button").focus();
}

// --- the canvas ---

function drawCanvas() {
  if (E.dragging) { E.redraw = true; return; }  // drawn again once the edge is dropped
  const holder = document.querySelector("[data-canvas]");
  const focused = document.activeElement?.closest?.("[data-node]")?.dataset.node;
  const picture = layOut(E.doc, Object.keys(E.schema.steps));
  const width = Math.round(picture.width);
  const height = Math.round(picture.height);
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "group", "aria-label": `Steps of ${E.name}` });
  const arrow = s("marker", {
    id: "arrow-edit", viewBox: "0 0 10 10", refX: 9, refY: 5, markerUnits: "userSpaceOnUse",
    markerWidth: 10, markerHeight: 10, orient: "auto-start-reverse",
  }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  svg.append(s("defs", {}, arrow));
  const taken = new Set((E.trial?.taken || []).map(([a, b]) => `${a}\n${b}`));
  for (const line of picture.lines) {
    const classes = ["edge", line.back && "back", taken.has(`${line.source}\n${line.target}`) && "taken"].filter(Boolean).join(" ");
    svg.append(s("path", { class: classes, d: line.path, "marker-end": "url(#arrow-edit)", "data-edge": `${line.source}>${line.target}` }));
  }
  for (const line of picture.lines.filter((l) => l.label)) {
    const shown = line.label.length > 34 ? `${line.label.slice(0, 33)}…` : line.label;
    svg.append(s("text", { class: "edge-label", x: f1(line.x), y: f1(line.y), "text-anchor": line.back ? "end" : "middle" }, shown, s("title", {}, line.label)));
  }
  const troubled = problemsByStep();
  const visited = new Set(E.trial?.visited || []);
  picture.boxes.forEach((box, index) => svg.append(drawBox(box, index, troubled, visited)));
  holder.replaceChildren(svg);
  for (const text of svg.querySelectorAll("text[data-fit]")) if (typeof fit === "function") fit(text);
  if (focused) focusNode(focused, false);
}

function drawBox(box, index, troubled, visited) {
  const classes = ["node", `kind-${box.kind}`, box.id === E.selected && "chosen", visited.has(box.id) && "visited"];
  const clickable = box.id !== COMPLETED;
  const label = `${box.title}: ${box.text}`;
  const node = s("g", { class: classes.filter(Boolean).join(" "), "data-node": box.id, "aria-label": label });
  if (clickable) {
    node.setAttribute("tabindex", "0");
    node.setAttribute("role", "button");
    if (box.id === E.selected) node.setAttribute("aria-pressed", "true");
  }
  const fits = WIDTH - 26;
  const clip = `clip-edit-${index}`;
  node.append(
    s("rect", { x: box.x, y: box.y, width: WIDTH, height: HEIGHT, rx: 10 }),
    s("rect", { class: "stripe", x: box.x, y: box.y, width: 6, height: HEIGHT, rx: 3 }),
    s("clipPath", { id: clip }, s("rect", { x: box.x + 8, y: box.y, width: fits + 16, height: HEIGHT })),
  );
  const texts = s("g", { "clip-path": `url(#${clip})` },
    s("text", { class: "title", x: box.x + 16, y: box.y + 22, "data-fit": fits }, box.title),
    s("text", { class: "summary", x: box.x + 16, y: box.y + 41, "data-fit": fits }, box.text));
  const count = troubled.get(box.id) || 0;
  if (count) texts.append(s("text", { class: "issues", x: box.x + 16, y: box.y + 84, "data-fit": fits }, `${count} problem${count > 1 ? "s" : ""}`));
  node.append(texts, s("title", {}, `${box.title} — ${box.text}`));
  if (clickable && !E.readOnly && box.id !== ENTRY && box.kind !== "end") {
    const handle = s("circle", { class: "handle", cx: box.x + WIDTH / 2, cy: box.y + HEIGHT, r: 7, "data-handle": box.id });
    handle.append(s("title", {}, `Drag to a step to connect ${box.id} to it`));
    node.append(handle);
  }
  return node;
}

function focusNode(id, scroll = true) {
  const node = document.querySelector(`[data-canvas] [data-node="${CSS.escape(id)}"]`);
  if (node) node.focus({ preventScroll: !scroll });
}

function select(id, focusForm = false) {
  E.selected = id;
  for (const node of document.querySelectorAll("[data-canvas] [data-node]")) {
    node.classList.toggle("chosen", node.dataset.node === id);
    if (node.hasAttribute("role")) node.setAttribute("aria-pressed", String(node.dataset.node === id));
  }
  drawInspector();
  if (focusForm) document.querySelector("[data-inspector] input, [data-inspector] select")?.focus();
  preview();
}

function svgPoint(svg, event) {
  const point = new DOMPoint(event.clientX, event.clientY);
  return point.matrixTransform(svg.getScreenCTM().inverse());
}

// Drag from a box's handle to another box: connect them.
function startDrag(event, handle) {
  event.preventDefault();
  event.stopPropagation();
  const svg = handle.ownerSVGElement;
  const source = handle.dataset.handle;
  const start = [Number(handle.getAttribute("cx")), Number(handle.getAttribute("cy"))];
  const line = s("path", { class: "edge dragging", "marker-end": "url(#arrow-edit)" });
  svg.append(line);
  handle.setPointerCapture(event.pointerId);
  E.dragging = true;
  const move = (e) => {
    const p = svgPoint(svg, e);
    line.setAttribute("d", `M${f1(start[0])},${f1(start[1])} L${f1(p.x)},${f1(p.y)}`);
  };
  const up = (e) => {
    handle.removeEventListener("pointermove", move);
    handle.removeEventListener("pointerup", up);
    handle.releasePointerCapture(e.pointerId);
    line.remove();
    const target = document.elementFromPoint(e.clientX, e.clientY)?.closest("[data-node]")?.dataset.node;
    E.dragging = false;
    if (E.redraw) { E.redraw = false; drawCanvas(); }
    if (target && target !== ENTRY && target !== COMPLETED) offerConnect(source, target, e.clientX, e.clientY);
  };
  const cancel = () => {
    handle.removeEventListener("pointermove", move);
    line.remove();
    E.dragging = false;
    if (E.redraw) { E.redraw = false; drawCanvas(); }
  };
  handle.addEventListener("pointermove", move);
  handle.addEventListener("pointerup", up);
  handle.addEventListener("pointercancel", cancel, { once: true });
}

function canvasEvents(holder) {
  holder.addEventListener("pointerdown", (event) => {
    const handle = event.target.closest?.("[data-handle]");
    if (handle) startDrag(event, handle);
  });
  holder.addEventListener("click", (event) => {
    const node = event.target.closest?.("[data-node]");
    if (node && node.dataset.node !== COMPLETED && !event.target.closest("[data-handle]")) select(node.dataset.node);
  });
  holder.addEventListener("keydown", (event) => {
    const node = event.target.closest?.("[data-node]");
    if (!node) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      select(node.dataset.node);
    } else if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      event.preventDefault();
      moveStep(node.dataset.node, event.key === "ArrowUp" ? -1 : 1);
    }
  });
}

// A problem of the journey's own file (others name the workspace's other files).
function ours(problem) {
  return !problem.file || !E.draft?.file || problem.file === E.draft.file;
}

function problemsByStep() {
  const found = new Map();
  for (const problem of E.problems.filter((p) => ours(p) && isError(p))) {
    const at = /^steps\[(\d+)\]/.exec(problem.path || "");
    const id = at ? steps()[Number(at[1])]?.id : problem.path && !String(problem.path).startsWith("steps") ? ENTRY : null;
    if (id) found.set(id, (found.get(id) || 0) + 1);
  }
  return found;
}

// --- the forms: a step's, or the journey's settings ---

function drawInspector() {
  const inspector = document.querySelector("[data-inspector]");
  const focused = inspector.contains(document.activeElement) ? document.activeElement.id : "";
  buildInspector(inspector);
  if (focused) document.getElementById(focused)?.focus();
}

function buildInspector(inspector) {
  const form = h("form", { class: "fields", onsubmit: (event) => event.preventDefault() });
  const disabled = h("fieldset", { class: "bare", disabled: E.readOnly });
  form.append(disabled);
  if (E.selected === ENTRY || indexOf(E.selected) < 0) {
    inspector.replaceChildren(h("h2", {}, "Journey settings"),
      h("p", { class: "muted small" }, "Select a step on the canvas (Tab, then Enter) to edit it."), form);
    const fields = E.schema.journey;
    for (const [key, spec] of Object.entries(fields)) {
      if (["kind", "name", "steps"].includes(key)) continue;
      disabled.append(field(spec, [key], key, E.doc));
    }
    return;
  }
  const at = indexOf(E.selected);
  const step = steps()[at];
  const type = stepType(step);
  const spec = E.schema.steps[type] || { fields: {} };
  const id = h("input", { id: "f-step-id", value: step.id, autocomplete: "off", required: true,
    onchange: (event) => renameStep(step.id, event.target.value.trim()) });
  disabled.append(h("div", { class: "field-row" }, h("label", { for: "f-step-id" }, "id"), id,
    h("p", { class: "help" }, "Renaming updates every step that leads here.")));
  for (const [key, fieldSpec] of Object.entries(spec.fields)) {
    if (key === "id") continue;
    disabled.append(field(fieldSpec, ["steps", at, key], key, E.doc, step.id));
  }
  const tools = h("div", { class: "row step-tools" },
    h("button", { type: "button", onclick: () => moveStep(step.id, -1), disabled: at === 0 || E.readOnly, "aria-keyshortcuts": "Alt+ArrowUp" }, "Move up"),
    h("button", { type: "button", onclick: () => moveStep(step.id, 1), disabled: at === steps().length - 1 || E.readOnly, "aria-keyshortcuts": "Alt+ArrowDown" }, "Move down"),
    h("button", { type: "button", class: "danger", onclick: () => deleteStep(step.id), disabled: E.readOnly, "aria-keyshortcuts": "Delete" }, "Delete step"));
  const template = typeof step.send === "string" && step.send ? step.send : null;
  inspector.replaceChildren(
    h("h2", {}, "Step ", h("code", {}, step.id), " ", h("span", { class: "badge" }, type)),
    h("p", { class: "muted small" }, "Changes show on the canvas at once."),
    form, template ? h("p", {}, templateLink(template)) : null, tools,
    h("p", {}, h("button", { type: "button", class: "link-button", onclick: () => { select(ENTRY); focusNode(ENTRY); } }, "Journey settings")));
}

function templateLink(template) {
  const href = `/templates/${encodeURIComponent(template)}/edit?journey=${encodeURIComponent(E.name)}`;
  return h("a", { href, "data-edit-template": template }, `Edit template ${template}`);
}

// What each type of field is completed with (a datalist of the schema's completions).
const LISTS = {
  event: "complete-events", template: "complete-templates", segment: "complete-segments",
  action: "complete-actions", journey: "complete-journeys", expression: "complete-traits",
};

// One field of the form, from its spec: an input, a select, a checkbox, a group or a list.
function field(spec, path, label, root, self = null) {
  const value = getAt(root, path);
  const id = fieldId(path);
  const help = spec.help ? h("p", { class: "help", id: `${id}-help` }, spec.help) : null;
  const scalar = !isObject(value) && !Array.isArray(value);
  if (spec.fields && (isObject(value) || (spec.type === "object" && value === undefined))) return group(spec, path, label, root, self);
  if (spec.type === "list" && spec.items && (value === undefined || Array.isArray(value))) return listField(spec, path, label, root, self);
  if (!scalar || spec.type === "object" || spec.type === "list") return jsonField(spec, path, label, value, id, help);
  let control;
  const typing = pathText(path);
  const set = (v) => change(() => setAt(E.doc, path, v), typing);
  if (spec.type === "boolean") {
    const tick = (e) => change(() => setAt(E.doc, path, e.target.checked || (spec.required ? false : undefined)));
    control = h("input", { id, type: "checkbox", checked: value === true, onchange: tick });
    return h("div", { class: "field-row check" }, control, h("label", { for: id }, label), help);
  }
  if (spec.type === "enum") {
    control = h("select", { id, onchange: (e) => change(() => setAt(E.doc, path, e.target.value || undefined)) },
      h("option", { value: "" }, "(none)"),
      ...(spec.enum || []).map((option) => h("option", { value: option, selected: option === value }, String(option))));
  } else if (spec.type === "step") {
    control = stepSelect(path, value, self, id);
  } else {
    const numeric = spec.type === "integer" || spec.type === "number";
    control = h(spec.type === "liquid" ? "textarea" : "input", {
      id, type: numeric ? "number" : null, step: numeric ? "any" : null, list: LISTS[spec.type] || null,
      autocomplete: "off", spellcheck: "false", "aria-describedby": help ? `${id}-help` : null, required: spec.required,
      oninput: (e) => {
        const text = e.target.value;
        set(text === "" && !spec.required ? undefined : numeric && text !== "" ? Number(text) : text);
        if (spec.type === "expression" || spec.type === "liquid") checkField(e.target, spec.type);
      },
    });
    control.value = value === undefined || value === null ? "" : String(value);
    if (spec.type === "expression" || spec.type === "liquid") {
      control.dataset.check = spec.type;
      if (control.value) checkField(control, spec.type);
    }
  }
  const name = h("label", { for: id }, label, spec.required ? h("span", { class: "muted" }, " *") : null);
  const row = h("div", { class: "field-row", "data-path": pathText(path) }, name, control, help);
  if (control.dataset.check) row.append(h("p", { class: "check-result", id: `${id}-check`, "aria-live": "polite" }));
  return row;
}

function stepSelect(path, value, self, id) {
  const key = path[path.length - 1];
  const at = path[0] === "steps" ? path[1] : -1;
  const below = at >= 0 ? belowOf(steps(), at) : null;
  const none = key === "next" ? `(the step below: ${below || "none, the journey completes"})` : "(none)";
  const ids = steps().filter(isObject).map((step) => step.id).filter((step) => typeof step === "string");
  const options = [h("option", { value: "" }, none)];
  for (const step of ids) options.push(h("option", { value: step, selected: step === value }, step === self ? `${step} (itself)` : step));
  if (value && !ids.includes(value)) options.push(h("option", { value, selected: true }, `${value} (no such step)`));
  return h("select", { id, onchange: (e) => change(() => {
    const chosen = e.target.value;
    const list = path.length > 3 && typeof path[path.length - 2] === "number";
    setAt(E.doc, path, chosen || (list ? "" : undefined));
  }) }, ...options);
}

function group(spec, path, label, root, self) {
  const value = getAt(root, path) || {};
  const shown = Object.keys(spec.fields).filter((key) => key in value || spec.fields[key].required || !Object.keys(value).length);
  const box = h("fieldset", { class: "group", "data-path": pathText(path) }, h("legend", {}, label));
  if (spec.help) box.append(h("p", { class: "help" }, spec.help));
  for (const key of shown) box.append(field(spec.fields[key], [...path, key], key, root, self));
  const absent = Object.keys(spec.fields).filter((key) => !shown.includes(key));
  if (absent.length) {
    const id = `${fieldId(path)}-add`;
    box.append(h("div", { class: "field-row add-field" }, h("label", { for: id, class: "visually-hidden" }, `Add a field to ${label}`),
      h("select", { id, onchange: (e) => {
        const key = e.target.value;
        if (!key) return;
        change(() => {
          if (!isObject(getAt(E.doc, path))) setAt(E.doc, path, {});
          setAt(E.doc, [...path, key], emptyOf(spec.fields[key]));
        });
        document.getElementById(fieldId([...path, key]))?.focus();
      } }, h("option", { value: "" }, `Add to ${label}…`), ...absent.map((key) => h("option", { value: key }, key)))));
  }
  return box;
}

function emptyOf(spec) {
  if (spec.type === "boolean") return true;
  if (spec.type === "object") return {};
  if (spec.type === "list") return [];
  return "";
}

const ITEM_NAMES = { branch: "case", split: "arm", experiment: "variant", exit: "exit", goals: "goal" };

const ITEM_STARTERS = {
  branch: () => ({ when: "true", goto: "" }),
  split: () => ({ weight: 50, goto: "" }),
  experiment: () => ({ name: "", weight: 50, send: "" }),
  exit: () => ({ event: "" }),
  goals: () => ({ name: "", event: "", within: "7d" }),
};

function listField(spec, path, label, root, self) {
  const items = getAt(root, path) || [];
  const key = path[path.length - 1];
  const box = h("fieldset", { class: "group list", "data-path": pathText(path) }, h("legend", {}, label));
  if (spec.help) box.append(h("p", { class: "help" }, spec.help));
  items.forEach((item, i) => {
    const name = isObject(item) && "otherwise" in item ? "otherwise" : `${ITEM_NAMES[key] || label} ${i + 1}`;
    const inner = field(spec.items, [...path, i], name, root, self);
    const remove = h("button", { type: "button", class: "small", onclick: () => change(() => getAt(E.doc, path).splice(i, 1)) }, `Remove ${name}`);
    box.append(h("div", { class: "item" }, inner, remove));
  });
  box.append(h("button", { type: "button", class: "small", onclick: () => change(() => {
    if (!Array.isArray(getAt(E.doc, path))) setAt(E.doc, path, []);
    const list = getAt(E.doc, path);
    const item = ITEM_STARTERS[key] ? ITEM_STARTERS[key]() : emptyOf(spec.items);
    const last = list[list.length - 1];
    // A branch's `otherwise` stays its last case.
    if (key === "branch" && isObject(last) && "otherwise" in last) list.splice(list.length - 1, 0, item);
    else list.push(item);
  }) }, `Add ${label === "branch" ? "a case" : `to ${label}`}`));
  return box;
}

// A value the form has no control for: edited as JSON.
function jsonField(spec, path, label, value, id, help) {
  const area = h("textarea", { id, class: "json", spellcheck: "false", rows: 3, "aria-describedby": `${id}-json` });
  area.value = value === undefined ? "" : JSON.stringify(value, null, 1);
  const note = h("p", { class: "help", id: `${id}-json` }, "As JSON.");
  area.addEventListener("input", () => {
    try {
      const parsed = area.value.trim() === "" ? undefined : JSON.parse(area.value);
      note.textContent = "As JSON.";
      area.removeAttribute("aria-invalid");
      change(() => setAt(E.doc, path, parsed), pathText(path));
    } catch (error) {
      note.textContent = `Not JSON yet: ${error.message}`;
      area.setAttribute("aria-invalid", "true");
    }
  });
  return h("div", { class: "field-row", "data-path": pathText(path) }, h("label", { for: id }, label), area, help, note);
}

// Expressions and Liquid are checked as they are typed, with the server's messages.
const checks = new WeakMap();
function checkField(input, kind) {
  const run = checks.get(input) || debounce(async () => {
    const text = input.value;
    const result = document.getElementById(`${input.id}-check`);
    if (!text.trim()) { if (result) result.textContent = ""; input.removeAttribute("aria-invalid"); return; }
    const answer = await api("POST", "/check", { kind, text });
    if (input.value !== text || !result) return;
    const problems = answer.ok ? answer.data.problems || [] : [];
    if (problems.length) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    result.classList.toggle("bad", problems.length > 0);
    result.textContent = !answer.ok ? "" : problems.length
      ? problems.map((p) => (p.column && !p.message.includes(`column ${p.column}`) ? `column ${p.column}: ${p.message}` : p.message)).join("; ")
      : "✓ reads well";
  }, 300);
  checks.set(input, run);
  run();
}

// --- what the server says of the draft: diff and problems ---

const checkSoon = debounce(async () => {
  const sent = ++E.checking;
  const answer = await api("POST", journeyPath("/check"), { document: E.doc });
  if (sent !== E.checking || !answer.ok) return;
  showDraft(answer.data);
}, 250);

function showDraft(data) {
  E.problems = data.problems || [];
  drawDiff(data.diff || "");
  drawProblems();
  drawCanvas();
}

function drawProblems() {
  drawProblemList(E.problems, {
    where: (p) => [ours(p) ? "" : p.file, p.line ? `line ${p.line}` : "", p.column ? `column ${p.column}` : ""],
    goTo: (p) => (ours(p) ? () => goToProblem(p) : null),
  });
}

function goToProblem(problem) {
  const at = /^steps\[(\d+)\]/.exec(problem.path || "");
  const id = at ? steps()[Number(at[1])]?.id : ENTRY;
  select(id && indexOf(id) >= 0 ? id : ENTRY);
  const row = [...document.querySelectorAll("[data-inspector] [data-path]")].reverse().find((r) => (problem.path || "").startsWith(r.dataset.path));
  row?.querySelector("input, select, textarea")?.focus();
}

function fillSteps() {
  const list = document.getElementById("complete-steps");
  if (!list) return;
  list.replaceChildren(...steps().filter(isObject).map((step) => h("option", { value: step.id })));
}

// --- tests, trying with a profile, template preview ---

async function runTests() {
  const holder = document.querySelector("[data-tests]");
  holder.replaceChildren(h("p", { class: "muted" }, "Running…"));
  const answer = await api("POST", journeyPath("/tests"), { document: E.doc });
  if (!answer.ok) { holder.replaceChildren(h("p", { class: "alert error" }, errorText(answer))); return; }
  const { passed = 0, failed = 0, results = [] } = answer.data;
  holder.replaceChildren(
    h("p", { class: `alert ${failed ? "error" : results.length ? "ok" : ""}`, "data-test-summary": "" },
      results.length ? `${passed} passed, ${failed} failed.` : "The workspace has no test of this journey."),
    h("ul", { class: "plain tests" }, ...results.map((r) => h("li", { "data-test": r.name },
      h("span", { class: `outcome ${r.passed ? "o-ended" : "o-failed"}` }, r.passed ? "passed" : "failed"), " ", h("strong", {}, r.name),
      r.failures?.length ? h("pre", { class: "code" }, r.failures.join("\n")) : null))));
}

async function tryProfile(profile) {
  const holder = document.querySelector("[data-try]");
  if (!profile) { holder.replaceChildren(h("p", { class: "alert error" }, "Name a profile to try.")); return; }
  holder.replaceChildren(h("p", { class: "muted" }, "Replaying…"));
  const answer = await api("POST", journeyPath("/try"), { profile, document: E.doc });
  if (!answer.ok) {
    holder.replaceChildren(h("p", { class: "alert error" }, answer.status === 404 ? `There is no profile ${profile}.` : errorText(answer)));
    return;
  }
  E.profile = profile;
  E.trial = answer.data;
  E.previewed = null;
  drawCanvas();
  const t = answer.data;
  const messages = t.messages || [];
  const path = (t.visited || []).filter((id) => id !== ENTRY).join(" → ");
  const state = `${t.state}${t.end_state ? ` (${t.end_state})` : ""}`;
  holder.replaceChildren(
    h("p", { class: "alert path", "data-try-summary": "" }, `${profile} would go through ${path || "no step"}; then ${state}. Nothing was sent.`),
    h("h3", {}, `Messages (${messages.length})`),
    messages.length ? h("ul", { class: "plain" }, ...messages.map((m) => h("li", { "data-try-message": m.step },
      h("code", {}, m.step), ` ${m.channel} to ${m.to ?? "?"}`, m.subject ? h("div", { class: "strong" }, m.subject) : null,
      m.text ? h("div", { class: "reason" }, m.text) : null))) : h("p", { class: "muted" }, "None."),
    h("h3", {}, "Why"),
    h("ol", { class: "timeline compact" }, ...(t.trace || []).map((line) => h("li", { class: "reason" }, typeof line === "string" ? line : JSON.stringify(line)))),
    h("button", { type: "button", class: "link-button", onclick: () => { E.trial = null; drawCanvas(); holder.replaceChildren(); } }, "Clear the path"));
  preview();
}

const previewSoon = debounce(() => preview(), 400);

async function preview(force = false) {
  const holder = document.querySelector("[data-preview]");
  const about = document.querySelector("[data-preview-about]");
  const at = E.selected === ENTRY ? -1 : indexOf(E.selected);
  const step = at >= 0 ? steps()[at] : null;
  const known = E.schema.completions.templates || [];
  const template = step && typeof step.send === "string" && (!known.length || known.includes(step.send)) ? step.send : null;
  if (template && template === E.previewed && !force) return;
  E.previewed = template;
  if (!template) { holder.replaceChildren(); about.textContent = "Select a send step to preview its template; it uses the profile tried last, else a sample."; return; }
  // A template with a stored draft previews as drafted: that is what a publish sends.
  const drafted = await api("GET", `/templates/${encodeURIComponent(template)}/draft`);
  const stored = drafted.ok && drafted.data.stored ? drafted.data : null;
  if (E.previewed !== template) return;  // another step was selected meanwhile
  const which = stored ? `Template ${template} (the draft ${stored.by} saved at ${stored.at})` : `Template ${template}`;
  about.replaceChildren(`${which} for ${E.profile ? `profile ${E.profile}` : "a sample profile"}. `, templateLink(template));
  const profile = E.profile || null;
  const answer = await api("POST", "/preview", stored ? { template: stored.document, profile } : { name: template, profile });
  if (!answer.ok) { holder.replaceChildren(h("p", { class: "alert error" }, errorText(answer))); return; }
  const p = answer.data;
  const parts = [];
  if (p.missing?.length) parts.push(h("p", { class: "alert error missing" }, "Missing for this profile: ", ...p.missing.map((name) => h("code", { class: "chip" }, name))));
  if (p.subject) parts.push(h("p", { class: "field" }, h("span", { class: "muted" }, "subject"), " ", p.subject));
  if (p.html) {
    const frame = h("iframe", { class: `preview ${E.width}`, sandbox: "", title: `The ${template} email as rendered` });
    frame.srcdoc = p.html;
    parts.push(h("div", { class: "frame-holder" }, frame));
  }
  if (p.text && !p.html) parts.push(h("pre", { class: "code sms" }, p.text));
  if (p.sms) {
    const segments = `${p.sms.segments} segment${p.sms.segments === 1 ? "" : "s"}`;
    parts.push(h("p", { class: "small", "data-sms": "" }, `${p.sms.length} characters, ${segments} (${p.sms.encoding})`));
  }
  holder.replaceChildren(h("p", { class: "muted small" }, `${p.channel} template`), ...parts);
}

// --- the keyboard ---

function typingInto(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function keys(event) {
  const ctrl = event.ctrlKey || event.metaKey;
  const key = event.key.toLowerCase();
  if (ctrl && (key === "z" || key === "y")) {
    if (typingInto(event.target) && event.target.tagName !== "SELECT") return;  // the field's own undo
    event.preventDefault();
    if (key === "y" || event.shiftKey) redo(); else undo();
    return;
  }
  if (event.key === "Delete" && !typingInto(event.target) && E.selected !== ENTRY && !E.readOnly) {
    event.preventDefault();
    deleteStep(E.selected);
  }
}

// --- start ---

function palette() {
  const holder = document.querySelector("[data-palette]");
  holder.replaceChildren(...Object.keys(E.schema.steps).map((type) => h("button", {
    type: "button", class: `palette-item kind-${type}`, "data-add": type, onclick: () => addStep(type),
    title: E.schema.steps[type].help || `Add a ${type} step after the selected one`,
  }, type.replace(/_/g, " "))));
}

function completions() {
  const c = E.schema.completions;
  const root = document.getElementById("editor");
  for (const [key, values] of Object.entries(c)) {
    if (!Array.isArray(values)) continue;
    const id = `complete-${key}`;
    const list = document.getElementById(id) || root.appendChild(h("datalist", { id }));
    list.replaceChildren(...values.map((v) => h("option", { value: key === "traits" ? `profile.${v}` : v })));
  }
}

async function start(root) {
  E.name = root.dataset.journey;
  E.csrf = EDITING.csrf = root.dataset.csrf;
  E.fresh = root.dataset.new === "true";
  E.published = root.dataset.published === "true";
  const narrow = window.matchMedia("(max-width: 700px)");
  E.readOnly = narrow.matches;
  root.classList.toggle("read-only", E.readOnly);
  const schema = await api("GET", "/editor/schema");
  E.schema = completeSchema(schema.ok ? schema.data : {});
  E.doc = { kind: "journey", name: E.name, steps: [] };
  palette();
  completions();
  canvasEvents(document.querySelector("[data-canvas]"));
  listenForActions(root, { ...DRAFT.actions, undo, redo, tests: runTests }, E);
  root.addEventListener("focusin", (event) => { if (!event.target.closest?.("[data-path]")) E.typing = null; });
  root.addEventListener("focusout", () => { E.typing = null; });
  document.addEventListener("keydown", keys);
  const search = root.querySelector("[data-try-profile]");
  search.addEventListener("input", () => searchProfiles(search.value));
  root.querySelector("[data-try-form]").addEventListener("submit", (event) => { event.preventDefault(); tryProfile(search.value.trim()); });
  if (!schema.ok) say(`The editor schema could not be read (${errorText(schema)}): the forms show what this page knows.`, "error");
  await load();
  root.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("editor");
  if (root) start(root);
});
