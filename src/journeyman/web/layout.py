"""A journey laid out top to bottom, like a canvas: boxes in layers, edges between them.

A small layered (Sugiyama-style) layout done on the server, so the console needs no
JavaScript graph library: back edges (loops through a wait) are set aside, every node
goes one layer below its lowest parent, edges that skip layers get invisible waypoints
so they route around boxes, a few barycentre sweeps reduce crossings, and each layer is
centred. Journeys are small (tens of steps), so plain loops are fast enough.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from journeyman.domain import model as m
from journeyman.domain.graph import edges, summary

__all__ = ["ENTRY", "Box", "Line", "Picture", "lay_out"]

ENTRY = "__entry__"
COMPLETED = "__completed__"
WIDTH, HEIGHT = 232, 96  # a step's box: title, summary, counts and issues, a line each
WAYPOINT = 24  # the width a long edge takes in a layer it crosses
GAP_X, GAP_Y, MARGIN = 36, 62, 24
LABEL_AT = 0.7  # how far along its first stretch an edge's label sits


@dataclass(frozen=True, slots=True)
class Box:
    id: str  # the step id, or ENTRY, or COMPLETED
    kind: str  # entry, end, or the step type
    title: str
    text: str
    x: float  # the top-left corner
    y: float


@dataclass(frozen=True, slots=True)
class Line:
    source: str
    target: str
    label: str
    path: str  # SVG path data
    label_x: float
    label_y: float
    back: bool  # goes back up (a loop)


@dataclass(frozen=True, slots=True)
class Picture:
    boxes: list[Box]
    lines: list[Line]
    width: float
    height: float
    box_width: int = WIDTH
    box_height: int = HEIGHT


@dataclass
class _Graph:
    kinds: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # kind, title, text
    out: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # (label, target)


def lay_out(journey: m.Journey) -> Picture:
    graph = _graph(journey)
    forward, back = _split_back_edges(graph)
    layers = _layers(graph, forward)
    rows, chains = _rows_with_waypoints(layers, forward)
    _reduce_crossings(rows, chains)
    places = _place(rows)
    return _draw(graph, places, rows, chains, back)


def _graph(journey: m.Journey) -> _Graph:
    graph = _Graph()
    when = journey.entry_when
    entry = f"when {when.source}" if when is not None else "every event enters"
    graph.kinds[ENTRY] = ("entry", f"entry: {journey.entry_event}", entry)
    graph.out[ENTRY] = [("", journey.first)]
    for step in journey.steps.values():
        kind = "end" if isinstance(step, m.End) else step.kind
        graph.kinds[step.id] = (kind, step.id, summary(step))
        labels: dict[str, list[str]] = {}  # cases that lead to the same step share an edge
        for label, target in edges(step):
            if target is None:
                target = COMPLETED
                graph.kinds[COMPLETED] = ("end", "end: completed", "the path ran out")
                graph.out.setdefault(COMPLETED, [])
            labels.setdefault(target, []).append(label)
        graph.out[step.id] = [(" / ".join(filter(None, ls)), t) for t, ls in labels.items()]
    return graph


def _split_back_edges(
    graph: _Graph,
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(source, target, label) edges, split by depth-first search into forward and back."""
    forward: list[tuple[str, str, str]] = []
    back: list[tuple[str, str, str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str) -> None:
        state[node] = 1
        for label, target in graph.out[node]:
            if state.get(target) == 1:
                back.append((node, target, label))
                continue
            forward.append((node, target, label))
            if target not in state:
                visit(target)
        state[node] = 2

    visit(ENTRY)
    for node in graph.kinds:  # steps nothing reaches (validation forbids them) still show
        if node not in state:
            visit(node)
    return forward, back


def _layers(graph: _Graph, forward: list[tuple[str, str, str]]) -> dict[str, int]:
    parents: dict[str, list[str]] = {node: [] for node in graph.kinds}
    for source, target, _ in forward:
        parents[target].append(source)
    layer: dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in layer:
            layer[node] = max((depth(p) + 1 for p in parents[node]), default=0)
        return layer[node]

    for node in graph.kinds:
        depth(node)
    return layer


def _rows_with_waypoints(
    layers: dict[str, int], forward: list[tuple[str, str, str]]
) -> tuple[list[list[str]], list[list[str]]]:
    """Nodes per layer, in first-seen order, with a waypoint wherever an edge skips one.

    Each chain is the nodes one forward edge passes: source, waypoints, target.
    """
    rows: list[list[str]] = [[] for _ in range(max(layers.values()) + 1)]
    for node, row in layers.items():
        rows[row].append(node)
    chains = []
    for index, (source, target, _) in enumerate(forward):
        chain = [source]
        for row in range(layers[source] + 1, layers[target]):
            waypoint = f"~{index}~{row}"
            rows[row].append(waypoint)
            chain.append(waypoint)
        chains.append([*chain, target])
    return rows, chains


def _reduce_crossings(rows: list[list[str]], chains: list[list[str]]) -> None:
    """Order each layer by the mean position of its neighbours, down then up, a few times."""
    above: dict[str, list[str]] = {}
    below: dict[str, list[str]] = {}
    for chain in chains:
        for upper, lower in itertools.pairwise(chain):
            below.setdefault(upper, []).append(lower)
            above.setdefault(lower, []).append(upper)
    for _ in range(4):
        for index in range(1, len(rows)):
            _sort_by_neighbours(rows[index], rows[index - 1], above)
        for index in range(len(rows) - 2, -1, -1):
            _sort_by_neighbours(rows[index], rows[index + 1], below)


def _sort_by_neighbours(row: list[str], other: list[str], links: dict[str, list[str]]) -> None:
    position = {node: i for i, node in enumerate(other)}

    def key(item: tuple[int, str]) -> float:
        index, node = item
        near = [position[n] for n in links.get(node, []) if n in position]
        return sum(near) / len(near) if near else float(index)

    row[:] = [node for _, node in sorted(enumerate(row), key=key)]


def _width(node: str) -> int:
    return WAYPOINT if node.startswith("~") else WIDTH


def _place(rows: list[list[str]]) -> dict[str, tuple[float, float]]:
    """The top-left corner of every node: layers centred on the widest one."""
    widths = [sum(_width(n) for n in row) + GAP_X * (len(row) - 1) for row in rows]
    widest = max(widths)
    places: dict[str, tuple[float, float]] = {}
    for index, (row, width) in enumerate(zip(rows, widths, strict=True)):
        x = MARGIN + (widest - width) / 2
        y = MARGIN + index * (HEIGHT + GAP_Y)
        for node in row:
            places[node] = (x, y)
            x += _width(node) + GAP_X
    return places


def _draw(
    graph: _Graph,
    places: dict[str, tuple[float, float]],
    rows: list[list[str]],
    chains: list[list[str]],
    back: list[tuple[str, str, str]],
) -> Picture:
    boxes = [
        Box(node, *graph.kinds[node], *places[node])
        for row in rows
        for node in row
        if node in graph.kinds
    ]
    labels = {(s, t): label for s, items in graph.out.items() for label, t in items}
    lines = [_forward_line(chain, places, labels) for chain in chains]
    right = max(x + _width(n) for n, (x, _) in places.items())
    lines += [_back_line(s, t, label, places, right) for s, t, label in back]
    width = right + MARGIN + (60 if back else 0)
    height = MARGIN * 2 + len(rows) * HEIGHT + (len(rows) - 1) * GAP_Y
    return Picture(boxes, lines, width, height)


def _forward_line(
    chain: list[str], places: dict[str, tuple[float, float]], labels: dict[tuple[str, str], str]
) -> Line:
    points = []
    for index, node in enumerate(chain):
        x, y = places[node]
        centre = x + _width(node) / 2
        if node.startswith("~"):
            points += [(centre, y), (centre, y + HEIGHT)]
        elif index == 0:
            points.append((centre, y + HEIGHT))
        else:
            points.append((centre, y))
    path = f"M{points[0][0]:.1f},{points[0][1]:.1f}"
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        middle = (y1 + y2) / 2
        path += f" C{x1:.1f},{middle:.1f} {x2:.1f},{middle:.1f} {x2:.1f},{y2:.1f}"
    label = labels.get((chain[0], chain[-1]), "")
    x, y = _on_curve(points[0], points[1], LABEL_AT)
    return Line(chain[0], chain[-1], label, path, x, y, False)


def _on_curve(
    start: tuple[float, float], end: tuple[float, float], t: float
) -> tuple[float, float]:
    """The point at ``t`` (0 to 1) along the S-curve drawn from ``start`` to ``end``.

    Labels sit low on the curve, where the edges of one branch have already parted.
    """
    (x0, y0), (x1, y1) = start, end
    middle = (y0 + y1) / 2
    weights = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3)
    xs, ys = (x0, x0, x1, x1), (y0, middle, middle, y1)
    return (
        sum(w * v for w, v in zip(weights, xs, strict=True)),
        sum(w * v for w, v in zip(weights, ys, strict=True)),
    )


def _back_line(
    source: str,
    target: str,
    label: str,
    places: dict[str, tuple[float, float]],
    right: float,
) -> Line:
    """A loop: out of the source's right side, up the right margin, into the target's."""
    sx, sy = places[source]
    tx, ty = places[target]
    start = (sx + WIDTH, sy + HEIGHT / 2)
    end = (tx + WIDTH, ty + HEIGHT / 2)
    lane = right + 40
    path = (
        f"M{start[0]:.1f},{start[1]:.1f} C{lane:.1f},{start[1]:.1f} {lane:.1f},{end[1]:.1f} "
        f"{end[0]:.1f},{end[1]:.1f}"
    )
    return Line(source, target, label, path, lane - 6, (start[1] + end[1]) / 2, True)
