"""Streamed file responses with HTTP Range support (single ranges)."""

import re

from django.http import HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _chunks(fileobj, start: int, length: int):
    try:
        fileobj.seek(start)
        remaining = length
        while remaining > 0:
            data = fileobj.read(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    finally:
        fileobj.close()


def ranged_response(
    request, fileobj, *, size: int, content_type: str, filename: str, inline: bool = False, csp: str | None = None
):
    start, end, status = 0, size - 1, 200
    header = request.headers.get("Range", "").strip()
    if header:
        match = _RANGE.match(header)
        if match and (match.group(1) or match.group(2)):
            first, last = match.groups()
            if first:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
            else:
                start = max(0, size - int(last))
            if start >= size or start > end:
                fileobj.close()
                refused = HttpResponse(status=416)
                refused["Content-Range"] = f"bytes */{size}"
                return refused
            status = 206
    length = end - start + 1 if size else 0
    response = StreamingHttpResponse(_chunks(fileobj, start, length), status=status, content_type=content_type)
    # The generator closes the file once iterated; this closes it when the body is never read.
    response._resource_closers.append(fileobj.close)  # type: ignore[attr-defined]  # Django's own hook, not in the stubs
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    disposition = content_disposition_header(not inline, filename or "file")
    if disposition:  # always, with a file name
        response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"
    if csp:
        response["Content-Security-Policy"] = csp
    return response
