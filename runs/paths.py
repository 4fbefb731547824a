"""Attribute paths: ``namespace/sub/name``."""

import unicodedata

MAX_PATH_LENGTH = 512
MAX_SEGMENT_LENGTH = 128
MAX_DEPTH = 32

# sys/* fields the client may write; the rest of sys/ is owned by the server.
WRITABLE_SYS_PATHS = {"sys/name", "sys/description", "sys/tags", "sys/failure", "sys/hostname", "sys/group_tags"}
RUN_COLUMN_PATHS = {"sys/name": "name", "sys/description": "description"}


class PathError(ValueError):
    pass


def validate_path(path) -> str:
    """Return ``path`` if it is a valid attribute path, else raise PathError with the reason."""
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
        for char in segment:
            if unicodedata.category(char) in ("Cc", "Cs", "Cn"):
                raise PathError(f"contains the control or invalid character {char!r} in segment {index}")
    return path


def is_writable(path: str) -> bool:
    return not path.startswith("sys/") or path in WRITABLE_SYS_PATHS
