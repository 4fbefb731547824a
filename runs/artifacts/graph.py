"""The run page's lineage graph laid out for a server-rendered SVG: five columns (producer runs,
inputs, the run, outputs, consumer runs), boxes and the curves between them."""

from dataclasses import dataclass, field

from django.urls import reverse

from .queries import GRAPH_NODES

BOX_W, BOX_H, GAP_Y, COL_W, PAD = 176, 40, 12, 212, 8


@dataclass
class Node:
    key: str
    label: str
    sub: str
    kind: str  # run | version | focus | more
    title: str = ""
    href: str = ""
    expand: str = ""  # the graph of this run, for HTMX
    x: int = 0
    y: int = 0
    text_x: int = 0
    text_y: int = 0
    sub_y: int = 0


@dataclass
class Edge:
    d: str
    kind: str = ""


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: int = 0
    height: int = 0
    box_w: int = BOX_W
    box_h: int = BOX_H
    neighbours: list[Node] = field(default_factory=list)


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _run_node(run, key: str) -> Node:
    project = run.project
    args = (project.workspace.slug, project.slug, run.human_id)
    return Node(
        key=key,
        label=run.human_id,
        sub=_short(run.name or project.slug),
        kind="run",
        title=f"{project.workspace.slug}/{project.slug} {run.human_id} {run.name} ({run.state})",
        href=reverse("runs:run_detail", args=args),
        expand=reverse("artifact-run-graph", args=args),
    )


def _version_node(link, key: str) -> Node:
    version = link.version
    name = link.artifact.name if link.artifact_id and link.artifact else ""
    href = ""
    if name:
        href = reverse("artifact-page", args=(link.run.project.workspace.slug, name)) + f"?v={version.hash}"
    return Node(
        key=key,
        label=_short(name or link.path),
        sub=f"{link.path if name else version.hash[:12]} · {version.file_count} file{'' if version.file_count == 1 else 's'}",
        kind="version",
        title=f"{link.path}: {version.hash} ({version.size} bytes, {version.file_count} files)",
        href=href,
    )


def _place(column: list[Node], x: int, height: int) -> None:
    total = len(column) * BOX_H + max(0, len(column) - 1) * GAP_Y
    top = PAD + (height - 2 * PAD - total) // 2
    for i, node in enumerate(column):
        node.x, node.y = x, top + i * (BOX_H + GAP_Y)
        node.text_x, node.text_y, node.sub_y = x + 10, node.y + 17, node.y + 32


def _curve(a: Node, b: Node, kind: str = "") -> Edge:
    x1, y1 = a.x + BOX_W, a.y + BOX_H // 2
    x2, y2 = b.x, b.y + BOX_H // 2
    mid = (x1 + x2) // 2
    return Edge(f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}", kind)


def _capped(nodes: list[Node], key: str) -> list[Node]:
    if len(nodes) <= GRAPH_NODES:
        return nodes
    more = len(nodes) - (GRAPH_NODES - 1)
    return [*nodes[: GRAPH_NODES - 1], Node(key=key, label=f"+{more} more", sub="", kind="more")]


def layout(run, data: dict) -> Graph:
    """Boxes and curves of the graph of ``run`` (``queries.run_graph``'s answer)."""
    graph = Graph()
    focus = _run_node(run, "run")
    focus.kind, focus.expand = "focus", ""
    inputs = _capped([_version_node(link, f"in{i}") for i, link in enumerate(data["inputs"])], "in-more")
    outputs = _capped([_version_node(link, f"out{i}") for i, link in enumerate(data["outputs"])], "out-more")
    producers: list[Node] = []
    consumers: list[Node] = []
    seen: dict[tuple[str, int], Node] = {}
    edges: list[tuple[Node, Node, str]] = []
    for side, links, column, versions in (
        ("p", data["inputs"], producers, inputs),
        ("c", data["outputs"], consumers, outputs),
    ):
        others = data["producers"] if side == "p" else data["consumers"]
        for version_node, link in zip(versions, links, strict=False):
            if version_node.kind == "more":
                continue
            for other in others.get(link.version.hash, []):
                node = seen.get((side, other.run_id))
                if node is None:
                    node = seen[(side, other.run_id)] = _run_node(other.run, f"{side}{other.run_id}")
                    column.append(node)
                if side == "p":
                    edges.append((node, version_node, "produced"))
                else:
                    edges.append((version_node, node, "consumed"))
    producers = _capped(producers, "p-more")
    consumers = _capped(consumers, "c-more")
    columns = [producers, inputs, [focus], outputs, consumers]
    rows = max(len(c) for c in columns)
    graph.height = max(BOX_H + 2 * PAD, rows * BOX_H + (rows - 1) * GAP_Y + 2 * PAD)
    graph.width = 5 * COL_W - (COL_W - BOX_W) + 2 * PAD
    for i, column in enumerate(columns):
        _place(column, PAD + i * COL_W, graph.height)
    placed = {id(n) for c in columns for n in c}
    graph.nodes = [n for c in columns for n in c]
    graph.edges = [_curve(a, b, kind) for a, b, kind in edges if id(a) in placed and id(b) in placed]
    graph.edges += [_curve(n, focus, "input") for n in inputs]
    graph.edges += [_curve(focus, n, "output") for n in outputs]
    graph.neighbours = [n for n in producers + consumers if n.kind == "run"]
    return graph
