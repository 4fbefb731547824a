import math

import msgpack
from rest_framework import renderers

_SPECIAL = {math.inf: "Infinity", -math.inf: "-Infinity"}


def jsonable(data):
    """Replace NaN and ±Inf, which JSON cannot carry, by the strings the API accepts back."""
    if isinstance(data, float):
        if data != data:
            return "NaN"
        return _SPECIAL.get(data, data)
    if isinstance(data, dict):
        return {k: jsonable(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        if data and all(type(v) is float and math.isfinite(v) for v in data):
            return data
        return [jsonable(v) for v in data]
    return data


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        return super().render(jsonable(data), accepted_media_type, renderer_context)


def _default(obj):
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


class MessagePackRenderer(renderers.BaseRenderer):
    media_type = "application/msgpack"
    format = "msgpack"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return msgpack.packb(data, default=_default, use_bin_type=True, datetime=False)
