"""Side-by-side diffs of two runs' source (``source_code/diff``, the files under ``source_code/``) and
environment (``environment/packages``): a package table (added, removed, changed versions) and
two-column text diffs built with difflib, escaped by the template.

Inputs are bounded: each file is read up to MAX_BYTES and MAX_LINES lines, at most MAX_FILES files
are compared, and a diff shows at most MAX_ROWS rows; the page says when it cut something.
"""

import difflib
import re

from django.db.models import Q
from django.http import Http404
from django.template.response import TemplateResponse
from django.views import View

from ..models import AttributeType, FileEntry
from ..paths import safe_relpath
from ..storage import open_blob
from .base import ProjectScopedMixin

MAX_BYTES = 1_000_000
MAX_LINES = 20_000
MAX_ROWS = 5_000
MAX_FILES = 20
CONTEXT = 3  # unchanged lines kept around each change
MAX_INLINE = 400  # characters of a changed line compared character by character
PACKAGES = "environment/packages"
SOURCE_PREFIX = "source_code/"

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*$")


def read_text(entry: FileEntry | None) -> dict:
    """The lines of a logged file, cut at MAX_BYTES and MAX_LINES; binary files are not read as text."""
    if entry is None:
        return {"lines": [], "missing": True, "truncated": False, "binary": False}
    with open_blob(entry.blob.storage_key) as stream:
        data = stream.read(MAX_BYTES + 1)
    truncated = len(data) > MAX_BYTES
    data = data[:MAX_BYTES]
    if b"\0" in data[:8192]:
        return {"lines": [], "missing": False, "truncated": False, "binary": True}
    lines = data.decode("utf-8", "replace").splitlines()
    if truncated and lines:
        lines.pop()  # the last line was cut in the middle
    if len(lines) > MAX_LINES:
        lines, truncated = lines[:MAX_LINES], True
    return {"lines": lines, "missing": False, "truncated": truncated, "binary": False}


def side_by_side(left: list[str], right: list[str], context: int = CONTEXT, max_rows: int | None = None) -> dict:
    """Rows of a two-column diff: ``kind`` is equal, delete, insert, replace or skip (a run of
    unchanged lines folded away); each row has the line numbers and text of both sides."""
    max_rows = MAX_ROWS if max_rows is None else max_rows
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    rows: list[dict] = []
    added = removed = 0
    groups = matcher.get_grouped_opcodes(context)
    last_a = 0
    for group in groups:
        first = group[0]
        if first[1] > last_a:
            rows.append({"kind": "skip", "count": first[1] - last_a})
        for tag, a0, a1, b0, b1 in group:
            if tag == "equal":
                for i, j in zip(range(a0, a1), range(b0, b1), strict=True):
                    rows.append({"kind": "equal", "lno": i + 1, "left": left[i], "rno": j + 1, "right": right[j]})
                continue
            removed += a1 - a0
            added += b1 - b0
            for k in range(max(a1 - a0, b1 - b0)):
                i, j = a0 + k, b0 + k
                row: dict[str, object] = {"kind": tag}
                if i < a1:
                    row.update(lno=i + 1, left=left[i])
                if j < b1:
                    row.update(rno=j + 1, right=right[j])
                if tag == "replace" and (i >= a1 or j >= b1):
                    row["kind"] = "delete" if j >= b1 else "insert"
                elif tag == "replace":
                    row["lseg"], row["rseg"] = inline_changes(left[i], right[j])
                rows.append(row)
        last_a = group[-1][2]
    if rows and last_a < len(left):
        rows.append({"kind": "skip", "count": len(left) - last_a})
    cut = len(rows) > max_rows
    return {
        "rows": rows[:max_rows],
        "rows_cut": cut,
        "added": added,
        "removed": removed,
        "identical": left == right,
    }


def inline_changes(a: str, b: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """The two sides of a changed line as (text, changed) pieces, so the characters that differ stand
    out; long lines are marked changed whole (a character diff of them costs more than it shows)."""
    if len(a) > MAX_INLINE or len(b) > MAX_INLINE:
        return [(a, True)], [(b, True)]
    left: list[tuple[str, bool]] = []
    right: list[tuple[str, bool]] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.ratio() < 0.5:  # a different line rather than an edited one: marks would be noise
        return [(a, False)], [(b, False)]
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if a1 > a0:
            left.append((a[a0:a1], tag != "equal"))
        if b1 > b0:
            right.append((b[b0:b1], tag != "equal"))
    return left, right


def parse_packages(lines: list[str]) -> dict[str, tuple[str, str]]:
    """``requirements.txt``-style lines: normalised name -> (name as written, version or spec)."""
    out: dict[str, tuple[str, str]] = {}
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        match = _REQUIREMENT.match(text)
        if not match:
            continue
        name, spec = match.groups()
        spec = spec[2:].strip() if spec.startswith("==") else spec
        out[re.sub(r"[-_.]+", "-", name).lower()] = (name, spec)
    return out


def package_changes(left: dict, right: dict) -> dict:
    rows = []
    unchanged = 0
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key), right.get(key)
        if a and b and a[1] == b[1]:
            unchanged += 1
            continue
        change = "added" if a is None else "removed" if b is None else "changed"
        name = b[0] if b else a[0] if a else key
        rows.append({"name": name, "left": a[1] if a else "", "right": b[1] if b else "", "change": change})
    counts = {kind: sum(1 for r in rows if r["change"] == kind) for kind in ("added", "removed", "changed")}
    return {"rows": rows, "unchanged": unchanged, **counts}


def _file_diff(label: str, a: FileEntry | None, b: FileEntry | None, texts: tuple[dict, dict] | None = None) -> dict:
    item: dict[str, object] = {"label": label, "left_size": a.size if a else None, "right_size": b.size if b else None}
    if a is not None and b is not None and a.blob_id == b.blob_id:
        return {**item, "same_content": True}
    left, right = texts or (read_text(a), read_text(b))
    item.update(
        left_missing=left["missing"],
        right_missing=right["missing"],
        truncated=left["truncated"] or right["truncated"],
        binary=left["binary"] or right["binary"],
    )
    if not item["binary"]:
        item["diff"] = side_by_side(left["lines"], right["lines"])
    return item


class RunDiffView(ProjectScopedMixin, View):
    """Two runs' source and environment side by side (the compare page's "Source & environment").

    ``runs``: the compared runs (for the choosers); ``left``/``right``: the two to diff (default:
    the first two of ``runs``)."""

    template_name = "runs/_diff.html"

    def get(self, request, workspace, project):
        ids = [i for part in request.GET.getlist("runs") for i in part.split(",") if i]
        runs = self.runs_by_ids(ids)
        if not runs:
            raise Http404("no runs to compare")
        by_id = {r.human_id: r for r in runs}
        left = by_id.get(request.GET.get("left", "")) or runs[0]
        right = by_id.get(request.GET.get("right", "")) or (runs[1] if len(runs) > 1 else runs[0])
        context = {
            "project": self.get_project(),
            "runs": runs,
            "run_ids": ",".join(r.human_id for r in runs),
            "left": left,
            "right": right,
            "limits": {"bytes": MAX_BYTES, "lines": MAX_LINES, "rows": MAX_ROWS, "files": MAX_FILES},
        }
        if left.pk != right.pk:
            context.update(self.compare(left, right))
        return TemplateResponse(request, self.template_name + "#diffs", context)

    def compare(self, left, right) -> dict:
        entries = (
            FileEntry.objects.filter(
                attribute__run__in=[left, right],
                attribute__type__in=[AttributeType.FILE, AttributeType.FILE_SET],
                step__isnull=True,
            )
            .filter(Q(attribute__path=PACKAGES) | Q(attribute__path__startswith=SOURCE_PREFIX))
            .select_related("attribute", "blob")
            .order_by("attribute__path", "relpath")
        )
        files: dict[tuple[str, str], dict[int, FileEntry]] = {}
        for entry in entries:
            key = (entry.attribute.path, safe_relpath(entry.relpath))
            files.setdefault(key, {})[entry.attribute.run_id] = entry
        packages = files.pop((PACKAGES, ""), {})
        out: dict = {}
        if packages:
            a, b = packages.get(left.pk), packages.get(right.pk)
            left_text, right_text = read_text(a), read_text(b)
            out["packages"] = {
                **package_changes(parse_packages(left_text["lines"]), parse_packages(right_text["lines"])),
                "text": _file_diff(PACKAGES, a, b, texts=(left_text, right_text)),
                "left_missing": a is None,
                "right_missing": b is None,
            }
        keys = sorted(files, key=lambda k: (k[0] != SOURCE_PREFIX + "diff", k))
        out["source_files"] = [
            _file_diff(
                path + ("/" + rel if rel else ""), files[(path, rel)].get(left.pk), files[(path, rel)].get(right.pk)
            )
            for path, rel in keys[:MAX_FILES]
        ]
        out["source_files_more"] = max(0, len(keys) - MAX_FILES)
        return out
