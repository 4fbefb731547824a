"""Blob processing: verify the content hash, sniff the type, make previews.

Previews are stored next to the original (``storage.preview_key``): a
thumbnail of images (PNG, at most RUNSTORE_THUMBNAIL_SIZE px), HTML of Jupyter
notebooks (nbconvert) and of source and text files (Pygments), and for videos
their metadata (duration, size) read from the MP4/QuickTime header. HTML
previews are served with a sandboxing Content-Security-Policy.
"""

import io
import logging
import mimetypes
import struct
import warnings

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import storage
from .models import Blob, BlobInfo, BlobPreview, BlobState, FileEntry, Upload

logger = logging.getLogger(__name__)

SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"BM", "image/bmp"),
    (b"\x1a\x45\xdf\xa3", "video/webm"),
    (b"\x93NUMPY", "application/x-npy"),
]
SOURCE_TYPES = {"application/json", "application/x-yaml", "application/xml", "application/javascript", "application/toml"}


def sniff(head: bytes, name: str = "") -> str:
    """The MIME type of content starting with ``head`` (file name as a hint for text)."""
    for magic, mime in SIGNATURES:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
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
        blob=blob, kind=kind, defaults={"storage_key": key, "mime_type": mime, "size": len(data), "created_at": timezone.now()}
    )


def _read_all(blob: Blob) -> bytes:
    return b"".join(storage.iter_blob(blob.storage_key))


def _thumbnail(blob: Blob, meta: dict) -> None:
    from PIL import Image

    with storage.open_blob(blob.storage_key) as stream:
        image = Image.open(io.BufferedReader(stream) if not hasattr(stream, "peek") else stream)
        meta.update({"width": image.width, "height": image.height, "format": image.format, "mode": image.mode})
        image.draft("RGB", (settings.RUNSTORE_THUMBNAIL_SIZE * 2,) * 2)  # JPEG: decode at a reduced scale
        image.thumbnail((settings.RUNSTORE_THUMBNAIL_SIZE,) * 2)
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA")
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
    _store(blob, "thumbnail", out.getvalue(), "image/png")


def _notebook_html(blob: Blob, meta: dict) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    with warnings.catch_warnings():
        # Notebooks from older tools lack cell ids; nbformat fills them in and warns.
        warnings.simplefilter("ignore")
        notebook = nbformat.reads(_read_all(blob).decode("utf-8"), as_version=4)
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


def video_metadata(head: bytes) -> dict:
    """Duration and frame size from an MP4/QuickTime header (``moov`` must be near the start)."""
    meta: dict = {}

    def walk(data: bytes, offset: int, end: int):
        while offset + 8 <= end:
            size, kind = struct.unpack(">I4s", data[offset : offset + 8])
            header = 8
            if size == 1 and offset + 16 <= end:
                size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
                header = 16
            elif size == 0:
                size = end - offset
            if size < header:
                return
            body = offset + header
            if kind in (b"moov", b"trak", b"mdia"):
                walk(data, body, min(offset + size, end))
            elif kind == b"mvhd" and body + 24 <= end:
                version = data[body]
                if version == 1 and body + 32 <= end:
                    timescale, duration = struct.unpack(">IQ", data[body + 20 : body + 32])
                else:
                    timescale, duration = struct.unpack(">II", data[body + 12 : body + 20])
                if timescale:
                    meta["duration_seconds"] = round(duration / timescale, 3)
            elif kind == b"tkhd" and body + 84 <= end:
                version = data[body]
                pos = body + (92 if version == 1 else 80)
                if pos + 8 <= end:
                    width, height = struct.unpack(">II", data[pos : pos + 8])
                    if width and height and "width" not in meta:
                        meta["width"], meta["height"] = width >> 16, height >> 16
            elif kind == b"ftyp":
                meta["brand"] = data[body : body + 4].decode("latin-1").strip()
            offset += size

    walk(head, 0, len(head))
    return meta


def process_blob(sha256: str) -> str:
    """Run every processing step for one blob; returns the resulting state."""
    blob = Blob.objects.filter(pk=sha256).first()
    if blob is None:
        return "missing"
    info, _ = BlobInfo.objects.get_or_create(blob=blob)
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
        info.error = "stored object is missing" if digest is None else f"stored content hashes to {digest} ({size} bytes)"
        info.processed_at = timezone.now()
        info.save()
        logger.error("blob %s: %s", blob.sha256, info.error)
        return info.state
    name = _name_of(blob)
    detected = sniff(head, name)
    meta: dict = {"verified": True}
    error = ""
    try:
        if detected.startswith("image/") and blob.size <= settings.RUNSTORE_PREVIEW_MAX_BYTES * 5:
            _thumbnail(blob, meta)
        elif detected == "application/x-ipynb+json" and blob.size <= settings.RUNSTORE_PREVIEW_MAX_BYTES:
            _notebook_html(blob, meta)
        elif (detected.startswith("text/") or detected in SOURCE_TYPES) and blob.size <= settings.RUNSTORE_PREVIEW_MAX_BYTES:
            _source_html(blob, name, meta)
        elif detected.startswith("video/") and detected != "video/webm":
            meta.update(video_metadata(_video_header(blob, head)))
    except Exception as exc:  # a broken image or notebook: the blob is fine, only the preview failed
        logger.warning("blob %s: no preview: %s", blob.sha256, exc)
        error = f"preview failed: {exc}"
    with transaction.atomic():
        info.detected_mime_type = detected
        info.metadata = meta
        info.error = error
        info.state = BlobState.READY
        info.processed_at = timezone.now()
        info.save()
        if blob.mime_type == "application/octet-stream" and detected != blob.mime_type:
            Blob.objects.filter(pk=blob.pk).update(mime_type=detected)
    return info.state


def _video_header(blob: Blob, head: bytes) -> bytes:
    """The first 64 KiB, plus the ``moov`` box when it sits at the end of the file."""
    meta = video_metadata(head)
    if "duration_seconds" in meta or blob.size <= len(head):
        return head
    offset = 0
    with storage.open_blob(blob.storage_key) as stream:
        while offset + 8 <= blob.size:
            stream.seek(offset)
            header = stream.read(16)
            size, kind = struct.unpack(">I4s", header[:8])
            if size == 1:
                size = struct.unpack(">Q", header[8:16])[0]
            if kind == b"moov":
                stream.seek(offset)
                return stream.read(min(size, 8 * 1024 * 1024))
            if size < 8:
                break
            offset += size
    return head


def enqueue(sha256: str) -> None:
    """Process the blob after the current transaction commits (broker failures are logged)."""

    def send():
        from .tasks import process_blob as task

        task.delay(sha256)

    transaction.on_commit(send, robust=True)


def sweep(limit: int = 1000) -> int:
    pending = list(Blob.objects.filter(info__isnull=True).values_list("pk", flat=True)[:limit])
    pending += list(BlobInfo.objects.filter(state=BlobState.PENDING).values_list("blob_id", flat=True)[:limit])
    for sha in pending:
        process_blob(sha)
    return len(pending)


def blob_summary(blob: Blob) -> dict:
    info = BlobInfo.objects.filter(blob=blob).first()
    return {
        "state": info.state if info else BlobState.PENDING,
        "detected_mime_type": info.detected_mime_type if info else None,
        "metadata": info.metadata if info else {},
        "error": (info.error or None) if info else None,
        "previews": sorted(BlobPreview.objects.filter(blob=blob).values_list("kind", flat=True)),
    }

