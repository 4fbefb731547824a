import json

import msgpack
from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError


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
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON body is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
        except json.JSONDecodeError as exc:
            raise ParseError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise ParseError("JSON body is nested too deeply") from None


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
