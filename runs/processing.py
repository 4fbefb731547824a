"""Blob processing: verify the content hash, sniff the type, make previews.

Previews are stored next to the original (``storage.preview_key``): a
thumbnail of images (PNG, at most RUNSTORE_THUMBNAIL_SIZE px), HTML of Jupyter
notebooks (nbconvert) and of source and text files (Pygments), and for videos
(MP4, MOV, WebM, Matroska, AVI: whatever the FFmpeg bundled with PyAV reads) a
poster frame (JPEG, at most twice RUNSTORE_THUMBNAIL_SIZE px) plus their
metadata: duration, size, codec, frame rate. HTML previews are served with a
sandboxing Content-Security-Policy.

Uploads are untrusted, so a preview has bounds (RUNSTORE_PREVIEW_MAX_PIXELS of
an image or video frame, RUNSTORE_PREVIEW_MAX_CELLS and
RUNSTORE_PREVIEW_MAX_OUTPUT_BYTES of a notebook, checked before decoding or
rendering) and runs in its own task under RUNSTORE_MEDIA_SOFT_TIME_LIMIT. A
preview that is refused, breaks or runs out of time is recorded in
``BlobInfo.preview_error``; the blob itself stays ready and downloadable.
"""

import io
import json
import logging
import mimetypes
import warnings

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from . import storage
from .models import Blob, BlobInfo, BlobPreview, BlobState, FileEntry, Upload

logger = logging.getLogger(__name__)

POSTER_SECONDS = 1.0
POSTER_MAX_FRAMES = 300  # stop there even if timestamps never reach POSTER_SECONDS
# Uploads are untrusted: FFmpeg may only use the demuxers of the types sniff() calls video, and
# may open no other file or URL (playlists or references inside a file would otherwise be followed).
FFMPEG_OPTIONS = {"format_whitelist": "mov,matroska,avi", "protocol_whitelist": "none"}

SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"BM", "image/bmp"),
    (b"\x93NUMPY", "application/x-npy"),
]
# ISO base media files that are not videos; any other brand is MP4 ("qt  " is QuickTime).
FTYP_BRANDS = {
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
}
SOURCE_TYPES = {
    "application/json",
    "application/x-yaml",
    "application/xml",
    "application/javascript",
    "application/toml",
}


class PreviewRefused(ValueError):
    """A file over one of the preview bounds: no preview is made of it, on purpose."""


def sniff(head: bytes, name: str = "") -> str:
    """The MIME type of content starting with ``head`` (file name as a hint for text)."""
    for magic, mime in SIGNATURES:
        if head.startswith(magic):
            return mime
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: the DocType near the start says WebM or Matroska
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head[4:8] == b"ftyp":
        return FTYP_BRANDS.get(head[8:12], "video/mp4")
    if _is_text(head):
        guessed = mimetypes.guess_type(name)[0] if name else None
        if name.endswith(".ipynb") or _looks_like_notebook(head):
            return "application/x-ipynb+json"
        if guessed and (guessed.startswith("text/") or guessed in SOURCE_TYPES):
            return guessed
        stripped = head.lstrip()
        if stripped[:1] in (b"{", b"["):
            return "application/json"
        return guessed if guessed and guessed.startswith("text/") else "text/plain"
    return "application/octet-stream"


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # cut inside a multi-byte character at the end


def _looks_like_notebook(head: bytes) -> bool:
    text = head[:4096].decode("utf-8", "ignore")
    return text.lstrip().startswith("{") and '"cells"' in text and '"nbformat"' in head.decode("utf-8", "ignore")


def _name_of(blob: Blob) -> str:
    entry = FileEntry.objects.filter(blob=blob).exclude(name="").values_list("name", flat=True).first()
    if entry:
        return entry
    return Upload.objects.filter(blob=blob).exclude(name="").values_list("name", flat=True).first() or ""


def _store(blob: Blob, kind: str, data: bytes, mime: str) -> None:
    key = storage.preview_key(blob.sha256, kind)
    storage.save_bytes(key, data)
    BlobPreview.objects.update_or_create(
        blob=blob,
        kind=kind,
        defaults={"storage_key": key, "mime_type": mime, "size": len(data), "created_at": timezone.now()},
    )


def _read_all(blob: Blob) -> bytes:
    return b"".join(storage.iter_blob(blob.storage_key))


def _thumbnail(blob: Blob, meta: dict) -> None:
    from PIL import Image

    limit = settings.RUNSTORE_PREVIEW_MAX_PIXELS
    Image.MAX_IMAGE_PIXELS = limit  # Pillow refuses more than twice this when it reads the header
    with storage.open_blob(blob.storage_key) as stream, warnings.catch_warnings():
        # Between the limit and twice it Pillow only warns, and a worker goes on after a warning:
        # a decompression bomb must stop here, before any pixel is decoded.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BufferedReader(stream) if not hasattr(stream, "peek") else stream)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PreviewRefused(f"image over the preview limit of {limit:,} pixels ({exc})") from None
        meta.update({"width": image.width, "height": image.height, "format": image.format, "mode": image.mode})
        if image.width * image.height > limit:
            raise PreviewRefused(
                f"image of {image.width}x{image.height} pixels is over the preview limit of {limit:,} pixels"
            )
        # JPEG decodes at a reduced scale (draft); other formats are reduced in integer steps before resampling.
        image.draft("RGB", (settings.RUNSTORE_THUMBNAIL_SIZE * 2,) * 2)
        image.thumbnail((settings.RUNSTORE_THUMBNAIL_SIZE,) * 2, reducing_gap=2.0)
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA")  # type: ignore[assignment]  # an Image, no longer the file it came from
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
    _store(blob, "thumbnail", out.getvalue(), "image/png")


def _check_notebook_bounds(raw: bytes, meta: dict) -> None:
    """Count cells and output bytes from the plain JSON, before nbformat validates or nbconvert renders it."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"not a notebook: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a notebook: not a JSON object")
    cells = data.get("cells")
    if cells is None:  # nbformat 3 keeps its cells in worksheets
        cells = [c for ws in data.get("worksheets") or [] if isinstance(ws, dict) for c in ws.get("cells") or []]
    if not isinstance(cells, list):
        raise ValueError("not a notebook: its cells are not a list")
    meta["cells"] = len(cells)
    max_cells = settings.RUNSTORE_PREVIEW_MAX_CELLS
    if len(cells) > max_cells:
        raise PreviewRefused(f"notebook of {len(cells):,} cells is over the preview limit of {max_cells:,} cells")
    output_bytes = sum(len(json.dumps(cell.get("outputs") or [])) for cell in cells if isinstance(cell, dict))
    max_bytes = settings.RUNSTORE_PREVIEW_MAX_OUTPUT_BYTES
    if output_bytes > max_bytes:
        raise PreviewRefused(
            f"notebook outputs of {output_bytes:,} bytes are over the preview limit of {max_bytes:,} bytes"
        )


def _notebook_html(blob: Blob, meta: dict) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    raw = _read_all(blob)
    _check_notebook_bounds(raw, meta)
    with warnings.catch_warnings():
        # Notebooks from older tools lack cell ids; nbformat fills them in and warns.
        warnings.simplefilter("ignore")
        notebook = nbformat.reads(raw.decode("utf-8"), as_version=4)
        meta.update({"cells": len(notebook.cells), "kernel": notebook.metadata.get("kernelspec", {}).get("name")})
        html, _ = HTMLExporter(template_name="classic").from_notebook_node(notebook)
    _store(blob, "html", html.encode("utf-8"), "text/html")


def _source_html(blob: Blob, name: str, meta: dict) -> None:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, get_lexer_for_filename, guess_lexer
    from pygments.util import ClassNotFound

    text = _read_all(blob).decode("utf-8", "replace")
    try:
        lexer = get_lexer_for_filename(name, stripnl=False) if name else guess_lexer(text)
    except ClassNotFound:
        lexer = TextLexer(stripnl=False)
    meta.update({"lines": text.count("\n") + (0 if text.endswith("\n") else 1), "language": lexer.name})
    html = highlight(text, lexer, HtmlFormatter(full=True, linenos="table", title=name or blob.sha256))
    _store(blob, "html", html.encode("utf-8"), "text/html")


def _video(blob: Blob, meta: dict) -> None:
    """Metadata and a poster frame of a video, read with PyAV (FFmpeg) from the stored object.

    Only the container header and the first second or so are read (the store
    is seeked, never downloaded whole). ``meta`` is filled as reading goes, so a
    truncated or corrupt file keeps whatever could be read when this raises.
    """
    import av

    try:
        with (
            storage.open_blob(blob.storage_key) as stream,
            av.open(stream, mode="r", options=dict(FFMPEG_OPTIONS)) as container,
        ):
            video = _video_metadata(container, meta)
            if video is None:
                return
            limit = settings.RUNSTORE_PREVIEW_MAX_PIXELS
            if (video.width or 0) * (video.height or 0) > limit:
                raise PreviewRefused(
                    f"video frames of {video.width}x{video.height} pixels are over the preview limit of {limit:,} pixels"
                )
            frame = _poster_frame(container, video, meta.get("duration_seconds"))
            image, rotation = frame.to_image(), frame.rotation
    except av.FFmpegError as exc:  # FFmpeg's message without the "[Errno …]" and "'<none>'" around it
        raise ValueError(f"unreadable video: {exc.strerror or exc}") from exc
    if rotation:
        meta["rotation"] = rotation  # degrees counter-clockwise that players turn it by
        image = image.rotate(rotation, expand=True)
    image.thumbnail((settings.RUNSTORE_THUMBNAIL_SIZE * 2,) * 2)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85, optimize=True)
    _store(blob, "poster", out.getvalue(), "image/jpeg")


def _video_metadata(container, meta: dict):
    """Fill ``meta`` from the container header; returns the first video stream (None: audio only)."""
    import av

    meta["container"] = container.format.name
    if container.duration is not None:
        meta["duration_seconds"] = round(container.duration / av.time_base, 3)
    if container.bit_rate:
        meta["bit_rate"] = container.bit_rate
    if container.metadata.get("major_brand"):
        meta["brand"] = container.metadata["major_brand"].strip()
    if container.streams.audio:
        meta["audio_codec"] = container.streams.audio[0].codec_context.name
    if not container.streams.video:
        meta["video_streams"] = 0
        return None
    video = container.streams.video[0]
    meta.update({"codec": video.codec_context.name, "width": video.width, "height": video.height})
    if video.profile:
        meta["profile"] = video.profile
    if video.codec_context.pix_fmt:
        meta["pixel_format"] = video.codec_context.pix_fmt
    rate = video.average_rate or video.guessed_rate
    if rate:
        meta["frame_rate"] = round(float(rate), 3)
    if video.frames:
        meta["frames"] = video.frames
    if "duration_seconds" not in meta and video.duration is not None and video.time_base:
        meta["duration_seconds"] = round(float(video.duration * video.time_base), 3)
    return video


def _poster_frame(container, video, duration):
    """The frame at POSTER_SECONDS (half-way through shorter videos), since first frames are often
    black; or the last one decoded before the stream ended or broke off."""
    import av

    target = min(POSTER_SECONDS, duration / 2) if duration else 0.0
    start = float(video.start_time * video.time_base) if video.start_time is not None and video.time_base else 0.0
    frame = None
    try:
        for count, decoded in enumerate(container.decode(video), 1):
            frame = decoded
            if decoded.time is None or decoded.time - start >= target or count >= POSTER_MAX_FRAMES:
                break
    except av.FFmpegError as exc:
        if frame is None:
            raise
        logger.info("video decoding stopped early (%s), poster taken at %.3f s", exc.strerror, frame.time or 0.0)
    if frame is None:
        raise ValueError("no video frame could be decoded")
    return frame


def _preview_maker(detected: str, size: int):
    """The function that makes this blob's preview, or None (no preview for this type or size)."""
    if detected.startswith("image/") and size <= settings.RUNSTORE_PREVIEW_MAX_BYTES * 5:
        return _thumbnail
    if detected == "application/x-ipynb+json" and size <= settings.RUNSTORE_PREVIEW_MAX_BYTES:
        return _notebook_html
    if (detected.startswith("text/") or detected in SOURCE_TYPES) and size <= settings.RUNSTORE_PREVIEW_MAX_BYTES:
        return _source_html
    if detected.startswith("video/"):
        return _video
    return None


def process_blob(sha256: str, *, inline_previews: bool = True) -> str:
    """Verify, sniff and (``inline_previews``) make the previews of one blob; returns the resulting state.

    Without ``inline_previews`` the preview is queued as its own task (``runs.tasks.preview_blob``,
    under the media soft time limit): verifying a large blob reads all of it and may take longer.
    """
    blob = Blob.objects.filter(pk=sha256).first()
    if blob is None:
        return "missing"
    info, _ = BlobInfo.objects.get_or_create(blob=blob)
    # processed before: verified again (for a project that uploaded the same bytes), previews kept
    reprocess = info.state == BlobState.READY and info.processed_at is not None
    try:
        digest, size, head = storage.hash_blob(blob.storage_key)
    except FileNotFoundError:
        digest, size, head = None, 0, b""
    except Exception as exc:
        if "NoSuchKey" in str(exc) or "404" in str(exc):
            digest, size, head = None, 0, b""
        else:
            raise
    if digest != blob.sha256 or size != blob.size:
        info.state = BlobState.CORRUPT
        info.error = (
            "stored object is missing" if digest is None else f"stored content hashes to {digest} ({size} bytes)"
        )
        info.processed_at = timezone.now()
        info.save()
        logger.error("blob %s: %s", blob.sha256, info.error)
        return info.state
    detected = sniff(head, _name_of(blob))
    with transaction.atomic():
        info.detected_mime_type = detected
        if not reprocess:
            info.metadata = {"verified": True}
            info.error = info.preview_error = ""
        info.state = BlobState.READY
        info.processed_at = timezone.now()
        info.save()
        if blob.mime_type == "application/octet-stream" and detected != blob.mime_type:
            Blob.objects.filter(pk=blob.pk).update(mime_type=detected)
    if _preview_maker(detected, blob.size) is not None and not reprocess:
        if inline_previews:
            make_preview(blob.sha256)
        else:
            enqueue_preview(blob.sha256)
    return info.state


def make_preview(sha256: str) -> str:
    """Make the preview of a verified blob; returns ``"ready"``, ``"failed"`` or ``"none"``.

    Whatever stops it (a bound, a broken file, the task's soft time limit) is recorded in
    ``preview_error`` (and, as before, ``error``): the blob stays ready and downloadable.
    """
    info = BlobInfo.objects.select_related("blob").filter(blob_id=sha256, state=BlobState.READY).first()
    maker = _preview_maker(info.detected_mime_type, info.blob.size) if info else None
    if maker is None or info is None:
        return "none"
    blob, meta, failure = info.blob, dict(info.metadata), ""
    try:
        if maker is _source_html:
            _source_html(blob, _name_of(blob), meta)
        else:
            maker(blob, meta)
    except SoftTimeLimitExceeded:
        failure = f"took longer than the {settings.RUNSTORE_MEDIA_SOFT_TIME_LIMIT} s time limit"
    except Exception as exc:  # a bomb, a broken image, notebook or video: the blob is fine, only the preview failed
        failure = str(exc) or type(exc).__name__
    if failure:
        logger.warning("blob %s: no preview: %s", sha256, failure)
    BlobInfo.objects.filter(blob_id=sha256).update(
        metadata=meta,
        preview_error=failure,
        error=f"preview failed: {failure}" if failure else "",
        processed_at=timezone.now(),
    )
    return "failed" if failure else "ready"


def enqueue(sha256: str) -> None:
    """Process the blob after the current transaction commits (broker failures are logged)."""

    def send():
        from .tasks import process_blob as task

        task.delay(sha256)

    transaction.on_commit(send, robust=True)


def enqueue_preview(sha256: str) -> None:
    """Make the blob's preview in its own task, after the current transaction commits."""

    def send():
        from .tasks import preview_blob

        preview_blob.delay(sha256)

    transaction.on_commit(send, robust=True)


def sweep(limit: int = 1000) -> int:
    pending = list(Blob.objects.filter(info__isnull=True).values_list("pk", flat=True)[:limit])
    pending += list(BlobInfo.objects.filter(state=BlobState.PENDING).values_list("blob_id", flat=True)[:limit])
    for sha in pending:
        process_blob(sha, inline_previews=False)
    return len(pending)


def processed_for(blob_id: str, project_id: int) -> bool:
    """Whether the blob was processed after this project first uploaded it.

    Blobs are shared by content across projects. What processing learnt before (state, sniffed
    type, metadata, previews) would tell this project that another one holds the same bytes, so
    until processing has run again for its own upload the project sees the blob as pending.
    """
    first = Upload.objects.filter(blob_id=blob_id, run__project_id=project_id).aggregate(first=Min("created_at"))[
        "first"
    ]
    processed = BlobInfo.objects.filter(blob_id=blob_id).values_list("processed_at", flat=True).first()
    return processed is not None and (first is None or processed >= first)


def processed_before_upload(blob_id: str, project_id: int) -> bool:
    """The blob was processed for another project's upload only: this project's upload needs a run of its own
    (a blob still waiting for its first processing needs none: that run comes after every upload so far)."""
    processed = BlobInfo.objects.filter(blob_id=blob_id).values_list("processed_at", flat=True).first()
    return processed is not None and not processed_for(blob_id, project_id)


def blob_summary(blob: Blob, project_id: int) -> dict:
    info = BlobInfo.objects.filter(blob=blob).first() if processed_for(blob.pk, project_id) else None
    return {
        "state": info.state if info else BlobState.PENDING,
        "detected_mime_type": info.detected_mime_type if info else None,
        "metadata": info.metadata if info else {},
        "error": (info.error or None) if info else None,
        "preview_error": (info.preview_error or None) if info else None,
        "previews": sorted(BlobPreview.objects.filter(blob=blob).values_list("kind", flat=True)) if info else [],
    }
