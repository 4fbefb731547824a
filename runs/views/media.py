"""Media of file series: a run's image, audio and HTML series as a grid at one step (with a step
slider and a lightbox), their thumbnails, and the same series side by side across compared runs.

A series shows, at the chosen step, the file logged at that step or else at the nearest lower
step; one query finds that file for every series on screen.
"""

import mimetypes
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from .. import processing
from ..downloads import ranged_response
from ..models import Attribute, AttributeType, BlobInfo, BlobPreview, FileEntry
from ..palette import RUN_COLORS
from ..storage import open_blob
from .base import ProjectScopedMixin, _int_param
from .compare import chosen_colors
from .files import RAW_FILE_CSP, _entry_name, _file_entry

MEDIA_MAX_SERIES = 24  # series in a run's grid
MEDIA_MAX_STEPS = 2000  # the slider's most recent steps
MEDIA_MAX_PATHS = 200  # series paths offered in compare
TEMPLATE = "runs/_media.html"

AUDIO_EXTENSIONS = {".wav", ".mp3", ".ogg", ".oga", ".flac", ".m4a", ".aac", ".opus", ".weba"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg", ".avif"}
VIDEO_EXTENSIONS = {".mp4", ".webm", ".ogv", ".mov", ".mkv"}


def media_kind(name: str, mime: str) -> str:
    """How a file of a series is shown: ``image``, ``audio``, ``video``, ``html`` or ``file`` (a download link)."""
    lower = name.lower()
    ext = "." + lower.rsplit(".", 1)[-1] if "." in lower else ""
    if mime.startswith("image/") or ext in IMAGE_EXTENSIONS:
        return "image"
    if mime.startswith("audio/") or ext in AUDIO_EXTENSIONS:
        return "audio"
    if mime.startswith("video/") or ext in VIDEO_EXTENSIONS:
        return "video"
    if mime in ("text/html", "application/xhtml+xml") or ext in (".html", ".htm"):
        return "html"
    return "file"


def series_steps(attrs) -> list[int]:
    """The distinct steps of these file series, ascending, at most the MEDIA_MAX_STEPS most recent."""
    steps = (
        FileEntry.objects.filter(attribute__in=attrs, step__isnull=False)
        .values_list("step", flat=True)
        .distinct()
        .order_by("-step")[:MEDIA_MAX_STEPS]
    )
    return [step for step in steps if step is not None][::-1]


def entries_at(attrs, step: int) -> dict[int, FileEntry]:
    """Per attribute id: its file at ``step`` or at the nearest lower step (absent: none that early)."""
    nearest = (
        FileEntry.objects.filter(attribute=OuterRef("attribute"), step__lte=step).order_by("-step").values("step")[:1]
    )
    return {
        e.attribute_id: e
        for e in FileEntry.objects.filter(attribute__in=attrs, step__isnull=False, step=Subquery(nearest))
    }


def chosen_step(request, steps: list[int]) -> int | None:
    """The step the request asks for (``step``), or the last one; None when there are no steps."""
    if not steps:
        return None
    return _int_param(request, "step", steps[-1])


def tile(run, attr, entry, step, base: str) -> dict:
    """What a grid cell shows: the file of ``attr`` nearest below ``step`` (``entry``, may be None)."""
    if entry is None:
        return {"path": attr.path, "run": run, "kind": "missing", "step": step}
    name = entry_name(entry, attr)
    kind = media_kind(name, entry.mime_type)
    query = urlencode({"path": attr.path, "step": entry.step})
    return {
        "path": attr.path,
        "run": run,
        "kind": kind,
        "name": name,
        "step": entry.step,
        "exact": entry.step == step,
        "size": entry.size,
        "raw_url": f"{base}raw?{query}",
        "thumb_url": f"{base}thumb?{query}" if kind == "image" else "",
    }


def entry_name(entry, attr) -> str:
    entry.attribute = attr
    return _entry_name(entry)


class RunGalleryView(ProjectScopedMixin, View):
    """A run's file series (images, audio, HTML) as a grid at one step: a step slider over the steps
    they were logged at, thumbnails that open a lightbox. ``path`` (repeatable) narrows it to those
    series; ``fragment=tiles`` answers only the grid's cells (the slider asks for them)."""

    def get(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        attrs = Attribute.objects.filter(run=run, type=AttributeType.FILE_SERIES).order_by("path")
        paths = [p for p in request.GET.getlist("path") if p]
        if paths:
            attrs = attrs.filter(path__in=paths)
            if not attrs.exists():
                raise Http404("no such file series")
        total = attrs.count()
        attrs = list(attrs[:MEDIA_MAX_SERIES])
        steps = series_steps(attrs)
        step = chosen_step(request, steps)
        base = reverse("runs:run_detail", args=[workspace, project, run_id])
        found = entries_at(attrs, step) if step is not None else {}
        tiles = [tile(run, attr, found.get(attr.pk), step, base) for attr in attrs]
        context = {
            "run": run,
            "project": self.get_project(),
            "paths": paths,
            "tiles": tiles,
            "steps": steps,
            "step": step,
            "step_index": _index_at_or_below(steps, step),
            "series_total": total,
            "series_more": max(0, total - len(attrs)),
            "media_url": request.path,
        }
        partial = "tiles" if request.GET.get("fragment") == "tiles" else "grid"
        return TemplateResponse(request, f"{TEMPLATE}#{partial}", context)


def _index_at_or_below(steps: list[int], step: int | None) -> int:
    if step is None:
        return 0
    below = [i for i, s in enumerate(steps) if s <= step]
    return below[-1] if below else 0


class RunFileThumbView(ProjectScopedMixin, View):
    """The thumbnail of an image of a file series (made by blob processing, RUNSTORE_THUMBNAIL_SIZE px).

    Before processing has made it, a small enough image is served as it is; an image processing
    refused (too many pixels, unreadable) has no thumbnail: 404, the lightbox still offers the file."""

    def get(self, request, workspace, project, run_id):
        run = self.get_run(run_id)
        entry = _file_entry(run, request)
        name = _entry_name(entry)
        if media_kind(name, entry.mime_type) != "image":
            raise Http404("not an image")
        visible = processing.processed_for(entry.blob_id, run.project_id)
        preview = BlobPreview.objects.filter(blob_id=entry.blob_id, kind="thumbnail").first() if visible else None
        if preview is not None:
            return ranged_response(
                request,
                open_blob(preview.storage_key),
                size=preview.size,
                content_type=preview.mime_type,
                filename=f"{name}.png",
                inline=True,
                csp=RAW_FILE_CSP,
            )
        failed = visible and BlobInfo.objects.filter(blob_id=entry.blob_id).exclude(preview_error="").exists()
        if failed or entry.size > settings.RUNSTORE_PREVIEW_MAX_BYTES:
            raise Http404("no thumbnail of this image")
        content_type = entry.mime_type
        if not content_type.startswith("image/"):
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return ranged_response(
            request,
            open_blob(entry.blob.storage_key),
            size=entry.size,
            content_type=content_type,
            filename=name,
            inline=True,
            csp=RAW_FILE_CSP,
        )


class CompareMediaView(ProjectScopedMixin, View):
    """The compare view's media: one file series (``path``) of every compared run side by side, one
    column per run, at one step (``step``, nearest lower step per run)."""

    def get(self, request, workspace, project):
        ids = [i for part in request.GET.getlist("runs") for i in part.split(",") if i]
        runs = self.runs_by_ids(ids)
        if not runs:
            raise Http404("no runs to compare")
        chosen = chosen_colors(request)
        for index, run in enumerate(runs):
            run.color = chosen.get(run.human_id) or RUN_COLORS[index % len(RUN_COLORS)]
        paths = list(
            Attribute.objects.filter(run__in=runs, type=AttributeType.FILE_SERIES)
            .values_list("path", flat=True)
            .distinct()
            .order_by("path")[:MEDIA_MAX_PATHS]
        )
        path = request.GET.get("path") or (paths[0] if paths else "")
        attrs = list(Attribute.objects.filter(run__in=runs, path=path, type=AttributeType.FILE_SERIES))
        if path and not attrs:
            raise Http404("no such file series in these runs")
        by_run = {a.run_id: a for a in attrs}
        steps = series_steps(attrs)
        step = chosen_step(request, steps)
        found = entries_at(attrs, step) if step is not None else {}
        tiles = []
        for run in runs:
            attr = by_run.get(run.pk)
            base = reverse("runs:run_detail", args=[workspace, project, run.human_id])
            if attr is None:
                tiles.append({"path": path, "run": run, "kind": "absent", "step": step})
            else:
                tiles.append(tile(run, attr, found.get(attr.pk), step, base))
        context = {
            "project": self.get_project(),
            "runs": runs,
            "run_ids": ",".join(r.human_id for r in runs),
            "paths": paths,
            "path": path,
            "tiles": tiles,
            "steps": steps,
            "step": step,
            "step_index": _index_at_or_below(steps, step),
            "media_url": request.path,
            "compare": True,
        }
        partial = "tiles" if request.GET.get("fragment") == "tiles" else "compare"
        return TemplateResponse(request, f"{TEMPLATE}#{partial}", context)
