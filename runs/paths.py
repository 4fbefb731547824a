"""Attribute paths: ``namespace/sub/name``."""

import unicodedata

from . import sysfields

MAX_PATH_LENGTH = 512
MAX_SEGMENT_LENGTH = 128
MAX_DEPTH = 32

# sys/* fields the client may write; the rest of sys/ is owned by the server.
WRITABLE_SYS_PATHS = sysfields.WRITABLE_PATHS
# writable sys fields that are run columns (a batch sets the column)
RUN_COLUMN_PATHS = {f.path: f.column for f in sysfields.SYS_FIELDS if f.writable and f.column}


class PathError(ValueError):
    pass


def validate_path(path, *, write: bool = False) -> str:
    """Return ``path`` if it is a valid attribute path, else raise PathError with the reason.

    ``write``: also refuse the segments ``.`` and ``..`` (a field path names files in downloads
    and exports); reads accept them so fields stored before the rule stay readable."""
    if not isinstance(path, str):
        raise PathError(f"must be a string, not {type(path).__name__}")
    if not path:
        raise PathError("must not be empty")
    if len(path) > MAX_PATH_LENGTH:
        raise PathError(f"is {len(path)} characters long; the limit is {MAX_PATH_LENGTH}")
    segments = path.split("/")
    if len(segments) > MAX_DEPTH:
        raise PathError(f"has {len(segments)} segments; the limit is {MAX_DEPTH}")
    for index, segment in enumerate(segments):
        if not segment:
            raise PathError(f"has an empty segment at position {index} (leading, trailing or double '/')")
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise PathError(f"segment {index} is longer than {MAX_SEGMENT_LENGTH} characters")
        if segment != segment.strip():
            raise PathError(f"segment {index} starts or ends with white space")
        if write and segment in (".", ".."):
            raise PathError(f"segment {index} is {segment!r}; '.' and '..' are not field names")
        for char in segment:
            if unicodedata.category(char) in ("Cc", "Cs", "Cn"):
                raise PathError(f"contains the control or invalid character {char!r} in segment {index}")
    return path


def _bad_char(text: str) -> str | None:
    for char in text:
        if char in "\\\x00" or unicodedata.category(char) in ("Cc", "Cs", "Cn"):
            return char
    return None


def file_name_error(name: str) -> str | None:
    """Why ``name`` is not a plain base name a client can safely write into a folder, or None."""
    if name in (".", ".."):
        return f"{name!r} is not a file name"
    if "/" in name:
        return "must be a plain file name without '/'"
    char = _bad_char(name)
    if char is not None:
        return f"contains the character {char!r} ('\\', NUL and control characters are not allowed)"
    return None


def relpath_error(relpath: str) -> str | None:
    """Why ``relpath`` is not a normalised relative POSIX path inside its folder, or None."""
    if not relpath:
        return "must not be empty"
    if relpath.startswith("/"):
        return "must be relative (no leading '/')"
    char = _bad_char(relpath)
    if char is not None:
        return f"contains the character {char!r} ('\\', NUL and control characters are not allowed)"
    for index, segment in enumerate(relpath.split("/")):
        if segment in ("", ".", ".."):
            what = "an empty segment (trailing or double '/')" if not segment else f"the segment {segment!r}"
            return f"must be a normalised relative path; segment {index} is {what}"
    return None


def _safe_segment(segment: str) -> str:
    segment = "".join("_" if _bad_char(c) else c for c in segment)
    return {".": "_", "..": "__"}.get(segment, segment)


def safe_file_name(name: str, fallback: str = "file") -> str:
    """A plain base name for ``name`` (for names stored before the rules): the last part of a path,
    control characters and '\\' replaced; ``fallback`` when nothing usable is left."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _safe_segment(base) if base not in (".", "..") else ""
    return base or _safe_segment(fallback)


def entry_file_name(entry, path: str) -> str:
    """The name a file of field ``path`` is served under: its own name, else its relpath's last part,
    else the field's last path segment; always a plain base name (:func:`safe_file_name`)."""
    return safe_file_name(entry.name or entry.relpath, fallback=path.rsplit("/", 1)[-1])


def safe_relpath(relpath: str) -> str:
    """A normalised relative POSIX path for ``relpath`` (for paths stored before the rules): empty and
    '.' segments dropped, '..' becomes '__', control characters and '\\' become '_'."""
    segments = [s for s in (relpath or "").split("/") if s not in ("", ".")]
    return "/".join(_safe_segment(s) for s in segments)


def is_writable(path: str) -> bool:
    return not path.startswith("sys/") or path in WRITABLE_SYS_PATHS
