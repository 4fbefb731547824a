"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS): MessagePack responses are checked
against the schema like JSON ones, decoded as the API's own clients decode them."""

import msgpack
import schemathesis


@schemathesis.deserializer("application/msgpack")
def deserialize_msgpack(ctx, response):
    return msgpack.unpackb(response.content, raw=False, timestamp=3)
