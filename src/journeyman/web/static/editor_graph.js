// journeyman console: a journey document as a graph, laid out as web/layout.py lays out
// a journey for the journey page, so that the editor draws what the journey page draws.
// It reads the document as written, broken or not: a link to no step is left out (the
// editor's problems list names it). Plain functions, used by editor.js.
"use strict";

const ENTRY = "__entry__";
const COMPLETED = "__completed__";

// --- the journey as a graph: its boxes and the ways out of each step ---

function stepTypeOf(step, types) {
  return types.find((type) => type in step) || "step";
}

function belowOf(steps, index) {
  for (let i = index + 1; i < steps.length; i++) {
    if (isObject(steps[i]) && typeof steps[i].id === "string") return steps[i].id;
  }
  return null;
}

function nextOf(steps, index) {
  const step = steps[index];
  return typeof step.next === "string" && step.next ? step.next : belowOf(steps, index);
}

function percent(part, total) {
  return `${Math.round((100 * part) / total)}%`;
}

// Every way out of a step: {label, target (null: the path runs out), path to the key}.
function exitsOf(steps, index, types) {
  const step = steps[index];
  const type = stepTypeOf(step, types);
  const next = nextOf(steps, index);
  const list = (key) => (Array.isArray(step[key]) ? step[key] : []);
  if (type === "end") return [];
  if (type === "branch") {
    return list("branch").filter(isObject).map((c, i) => ("otherwise" in c
      ? { label: "otherwise", target: c.otherwise || null, path: ["branch", i, "otherwise"] }
      : { label: String(c.when ?? ""), target: c.goto || null, path: ["branch", i, "goto"] }));
  }
  if (type === "split") {
    const arms = list("split").filter(isObject);
    const total = arms.reduce((sum, a) => sum + (Number(a.weight) || 0), 0) || 1;
    return arms.map((a, i) => ({ label: percent(Number(a.weight) || 0, total), target: a.goto || null, path: ["split", i, "goto"] }));
  }
  if (type === "experiment") {
    const variants = list("experiment").filter(isObject);
    const total = variants.reduce((sum, v) => sum + (Number(v.weight) || 0), 0) || 1;
    return variants.map((v, i) => ({
      label: `${v.name} ${percent(Number(v.weight) || 0, total)}${v.send ? ` ${v.send}` : ""}`,
      target: v.goto || next, path: v.goto ? ["experiment", i, "goto"] : ["next"] }));
  }
  if (type === "wait_for") {
    const spec = isObject(step.wait_for) ? step.wait_for : {};
    const found = [{ label: String(spec.reaction || spec.event || ""), target: step.on_event || next, path: [step.on_event ? "on_event" : "next"] }];
    if (spec.timeout) found.push({ label: `after ${spec.timeout}`, target: step.on_timeout || next, path: [step.on_timeout ? "on_timeout" : "next"] });
    return found;
  }
  const found = [{ label: "", target: next, path: ["next"] }];
  if ((type === "send" || type === "call") && step.on_error) {
    found.push({ label: "error", target: step.on_error, path: ["on_error"] });
  }
  return found;
}

function summaryOf(step, type) {
  const value = step[type];
  if (type === "wait") {
    if (!isObject(value)) return `wait ${value ?? ""}`;
    if (value.until) return `wait until ${value.until}`;
    const days = Array.isArray(value.days) && value.days.length < 7 ? ` ${value.days.join(",")}` : "";
    return `wait until ${value.until_local ?? ""} local${days}`;
  }
  if (type === "wait_for") {
    const spec = isObject(value) ? value : {};
    const awaited = spec.event || (spec.reaction ? `${spec.reaction} ${spec.to ?? ""}`.trim() : "");
    return `wait for ${awaited}${spec.timeout ? ` up to ${spec.timeout}` : ""}`;
  }
  if (type === "send") return `send ${value ?? ""}`;
  if (type === "experiment") return `experiment ${(Array.isArray(value) ? value : []).map((v) => v?.name).join(", ")}`;
  if (type === "call") return `call ${value ?? ""}`;
  if (type === "jump") return `jump to ${value ?? ""}`;
  if (type === "end") return `end: ${value ?? "completed"}`;
  return type.replace(/_/g, " ");
}

function entryOf(doc) {
  const entry = isObject(doc.entry) ? doc.entry : {};
  let what = entry.event ?? "";
  if (entry.schedule !== undefined) what = "scheduled";
  else if (entry.segment) what = "segment_entered";
  const text = entry.when !== undefined ? `when ${entry.when}` : "every event enters";
  return { title: `entry: ${what}`, text };
}

// The graph the layout needs: node -> [kind, title, text], node -> [[label, target]].
function graphOf(doc, types) {
  const steps = Array.isArray(doc.steps) ? doc.steps : [];
  const kinds = new Map();
  const out = new Map();
  const ids = new Set(steps.filter((s) => isObject(s) && typeof s.id === "string").map((s) => s.id));
  const entry = entryOf(doc);
  kinds.set(ENTRY, ["entry", entry.title, entry.text]);
  const first = steps.findIndex((s) => isObject(s) && typeof s.id === "string");
  out.set(ENTRY, first >= 0 ? [["", steps[first].id]] : []);
  steps.forEach((step, index) => {
    if (!isObject(step) || typeof step.id !== "string" || kinds.has(step.id)) return;
    const type = stepTypeOf(step, types);
    kinds.set(step.id, [type === "end" ? "end" : type, step.id, summaryOf(step, type)]);
    const labels = new Map();  // cases that lead to the same step share an edge
    for (const { label, target } of exitsOf(steps, index, types)) {
      let to = target;
      if (to === null) {
        to = COMPLETED;
        if (!kinds.has(COMPLETED)) kinds.set(COMPLETED, ["end", "end: completed", "the path ran out"]);
        if (!out.has(COMPLETED)) out.set(COMPLETED, []);
      } else if (!ids.has(to)) {
        continue;  // no such step: the problems list says so
      }
      if (!labels.has(to)) labels.set(to, []);
      labels.get(to).push(label);
    }
    out.set(step.id, [...labels].map(([to, ls]) => [ls.filter(Boolean).join(" / "), to]));
  });
  return { kinds, out };
}

// --- the layout: web/layout.py, line for line, so both pages draw a journey alike ---

const WIDTH = 232, HEIGHT = 96, WAYPOINT = 24, GAP_X = 36, GAP_Y = 62, MARGIN = 24, LABEL_AT = 0.7;

function layOut(doc, types) {
  const graph = graphOf(doc, types);
  const [forward, back] = splitBackEdges(graph);
  const layers = layersOf(graph, forward);
  const [rows, chains] = rowsWithWaypoints(layers, forward);
  reduceCrossings(rows, chains);
  const places = place(rows);
  return drawing(graph, places, rows, chains, back);
}

function splitBackEdges(graph) {
  const forward = [];
  const back = [];
  const state = new Map();
  function visit(node) {
    state.set(node, 1);
    for (const [label, target] of graph.out.get(node) || []) {
      if (state.get(target) === 1) { back.push([node, target, label]); continue; }
      forward.push([node, target, label]);
      if (!state.has(target)) visit(target);
    }
    state.set(node, 2);
  }
  visit(ENTRY);
  for (const node of graph.kinds.keys()) if (!state.has(node)) visit(node);
  return [forward, back];
}

function layersOf(graph, forward) {
  const parents = new Map([...graph.kinds.keys()].map((node) => [node, []]));
  for (const [source, target] of forward) parents.get(target).push(source);
  const layer = new Map();
  function depth(node) {
    if (!layer.has(node)) {
      const found = parents.get(node).map((p) => depth(p) + 1);
      layer.set(node, found.length ? Math.max(...found) : 0);
    }
    return layer.get(node);
  }
  for (const node of graph.kinds.keys()) depth(node);
  return layer;
}

function rowsWithWaypoints(layers, forward) {
  const rows = Array.from({ length: Math.max(...layers.values()) + 1 }, () => []);
  for (const [node, row] of layers) rows[row].push(node);
  const chains = forward.map(([source, target], index) => {
    const chain = [source];
    for (let row = layers.get(source) + 1; row < layers.get(target); row++) {
      const waypoint = `~${index}~${row}`;
      rows[row].push(waypoint);
      chain.push(waypoint);
    }
    return [...chain, target];
  });
  return [rows, chains];
}

function reduceCrossings(rows, chains) {
  const above = new Map();
  const below = new Map();
  const add = (links, key, value) => { if (!links.has(key)) links.set(key, []); links.get(key).push(value); };
  for (const chain of chains) {
    for (let i = 0; i + 1 < chain.length; i++) { add(below, chain[i], chain[i + 1]); add(above, chain[i + 1], chain[i]); }
  }
  for (let round = 0; round < 4; round++) {
    for (let i = 1; i < rows.length; i++) sortByNeighbours(rows[i], rows[i - 1], above);
    for (let i = rows.length - 2; i >= 0; i--) sortByNeighbours(rows[i], rows[i + 1], below);
  }
}

function sortByNeighbours(row, other, links) {
  const position = new Map(other.map((node, i) => [node, i]));
  const keyed = row.map((node, index) => {
    const near = (links.get(node) || []).filter((n) => position.has(n)).map((n) => position.get(n));
    return [near.length ? near.reduce((a, b) => a + b, 0) / near.length : index, node];
  });
  keyed.sort((a, b) => a[0] - b[0]);  // stable, as Python's sort
  row.splice(0, row.length, ...keyed.map(([, node]) => node));
}

const widthOf = (node) => (node.startsWith("~") ? WAYPOINT : WIDTH);

function place(rows) {
  const widths = rows.map((row) => row.reduce((sum, n) => sum + widthOf(n), 0) + GAP_X * (row.length - 1));
  const widest = Math.max(...widths);
  const places = new Map();
  rows.forEach((row, index) => {
    let x = MARGIN + (widest - widths[index]) / 2;
    const y = MARGIN + index * (HEIGHT + GAP_Y);
    for (const node of row) { places.set(node, [x, y]); x += widthOf(node) + GAP_X; }
  });
  return places;
}

function drawing(graph, places, rows, chains, back) {
  const boxes = rows.flat().filter((node) => graph.kinds.has(node)).map((node) => {
    const [kind, title, text] = graph.kinds.get(node);
    const [x, y] = places.get(node);
    return { id: node, kind, title, text, x, y };
  });
  const labels = new Map();
  for (const [source, items] of graph.out) for (const [label, target] of items) labels.set(`${source}\n${target}`, label);
  const lines = chains.map((chain) => forwardLine(chain, places, labels));
  const right = Math.max(...[...places].map(([node, [x]]) => x + widthOf(node)));
  for (const [source, target, label] of back) lines.push(backLine(source, target, label, places, right));
  const width = right + MARGIN + (back.length ? 60 : 0);
  const height = MARGIN * 2 + rows.length * HEIGHT + (rows.length - 1) * GAP_Y;
  return { boxes, lines, width, height };
}

const f1 = (n) => n.toFixed(1);

function forwardLine(chain, places, labels) {
  const points = [];
  chain.forEach((node, index) => {
    const [x, y] = places.get(node);
    const centre = x + widthOf(node) / 2;
    if (node.startsWith("~")) points.push([centre, y], [centre, y + HEIGHT]);
    else if (index === 0) points.push([centre, y + HEIGHT]);
    else points.push([centre, y]);
  });
  let path = `M${f1(points[0][0])},${f1(points[0][1])}`;
  for (let i = 0; i + 1 < points.length; i++) {
    const [[x1, y1], [x2, y2]] = [points[i], points[i + 1]];
    const middle = (y1 + y2) / 2;
    path += ` C${f1(x1)},${f1(middle)} ${f1(x2)},${f1(middle)} ${f1(x2)},${f1(y2)}`;
  }
  const source = chain[0];
  const target = chain[chain.length - 1];
  const [x, y] = onCurve(points[0], points[1], LABEL_AT);
  return { source, target, label: labels.get(`${source}\n${target}`) || "", path, x, y, back: false };
}

function onCurve([x0, y0], [x1, y1], t) {
  const middle = (y0 + y1) / 2;
  const weights = [(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3];
  const xs = [x0, x0, x1, x1];
  const ys = [y0, middle, middle, y1];
  return [weights.reduce((s, w, i) => s + w * xs[i], 0), weights.reduce((s, w, i) => s + w * ys[i], 0)];
}

function backLine(source, target, label, places, right) {
  const [sx, sy] = places.get(source);
  const [tx, ty] = places.get(target);
  const start = [sx + WIDTH, sy + HEIGHT / 2];
  const end = [tx + WIDTH, ty + HEIGHT / 2];
  const lane = right + 40;
  const path = `M${f1(start[0])},${f1(start[1])} C${f1(lane)},${f1(start[1])} ${f1(lane)},${f1(end[1])} ${f1(end[0])},${f1(end[1])}`;
  return { source, target, label, path, x: lane - 6, y: (start[1] + end[1]) / 2, back: true };
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
