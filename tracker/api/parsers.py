import json
import re

import msgpack
from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from .errors import ApiError

# A \uD800-\uDFFF escape: only then can json.loads produce a lone surrogate, which no database stores.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate(data, where: str = "") -> str | None:
    """The JSON path of the first string (or key) holding a lone surrogate, else None."""
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return where or "body"
        return None
    if isinstance(data, dict):
        for key, value in data.items():
            found = _lone_surrogate(key, f"{where}.<key>" if where else "<key>")
            if found:
                return found
            found = _lone_surrogate(value, f"{where}.{key}" if where else str(key))
            if found:
                return found
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found = _lone_surrogate(value, f"{where}[{index}]")
            if found:
                return found
    return None


def read_limited(stream, limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        from rest_framework.exceptions import APIException

        exc = APIException(f"request body is larger than {limit} bytes")
        exc.status_code = 413
        exc.default_code = "body_too_large"
        raise exc
    return data


class JSONParser(parsers.JSONParser):
    """JSON that also accepts the NaN, Infinity and -Infinity literals Python's json writes."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = read_limited(stream, settings.RUNSTORE_MAX_BATCH_BYTES)
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON body is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
        except json.JSONDecodeError as exc:
            raise ParseError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except ValueError as exc:  # e.g. an integer of more than 4,300 digits
            raise ParseError(f"malformed JSON: {exc}") from None
        except RecursionError:
            raise ParseError("JSON body is nested too deeply") from None
        if _SURROGATE_ESCAPE.search(raw):
            where = _lone_surrogate(data)
            if where:
                raise ApiError(
                    400, "invalid", f"{where}: contains a lone surrogate (U+D800-U+DFFF without its pair)", field=where
                )
        return data


class MessagePackParser(parsers.BaseParser):
    media_type = "application/msgpack"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = read_limited(stream, settings.RUNSTORE_MAX_BATCH_BYTES)
        try:
            return msgpack.unpackb(raw, raw=False, strict_map_key=True, timestamp=3)
        except msgpack.ExtraData:
            raise ParseError("malformed MessagePack: extra bytes after the body") from None
        except (ValueError, msgpack.UnpackException, TypeError, RecursionError) as exc:
            raise ParseError(f"malformed MessagePack: {exc}") from None
