"""The raw upload body read straight from gunicorn's socket (runs.uploads.iter_body): the exact bytes,
also those gunicorn had buffered with the headers, and nothing of the next request on the connection."""

import hashlib
import os
import socket
import threading

import pytest
from django.test import RequestFactory
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader

from runs.errors import ApiError
from runs.uploads import iter_body


def _gunicorn_request(payload: bytes, *, buffered: bytes, declared: int, then: bytes = b""):
    """A Django request whose wsgi.input is gunicorn's own reader over a socket; ``buffered`` plays the
    bytes gunicorn received with the headers, the rest arrives through the socket."""
    server, client = socket.socketpair()
    unreader = SocketUnreader(server)
    unreader.unread(buffered)
    reader = LengthReader(unreader, declared)
    request = RequestFactory().put("/upload", content_type="application/octet-stream")
    request.META["wsgi.input"] = Body(reader)
    sender = threading.Thread(target=lambda: (client.sendall(payload + then), client.shutdown(socket.SHUT_WR)))
    sender.start()
    return request, reader, unreader, sender, (server, client)


def _read_all(request) -> bytes:
    return b"".join(bytes(chunk) for chunk in iter_body(request, chunk_size=64 * 1024))


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 3 * 1024 * 1024 + 7])
def test_a_body_from_gunicorn_arrives_whole_and_the_next_request_stays(size):
    body = os.urandom(size)
    head, rest = body[:1000], body[1000:]
    following = b"GET /next HTTP/1.1\r\n\r\n"
    buffered = head + (following if not rest else b"")
    request, reader, unreader, sender, sockets = _gunicorn_request(
        rest, buffered=buffered, declared=len(body), then=following if rest else b""
    )
    try:
        got = _read_all(request)
        sender.join()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()
        assert reader.length == 0  # gunicorn has nothing of this body left to drain
        assert unreader.read(len(following)) == following  # the next request is untouched
    finally:
        for s in sockets:
            s.close()


def test_a_body_cut_short_is_a_clear_error():
    request, reader, _, sender, sockets = _gunicorn_request(b"x" * 10, buffered=b"", declared=100)
    try:
        with pytest.raises(ApiError, match="ended before its Content-Length"):
            _read_all(request)
        sender.join()
    finally:
        for s in sockets:
            s.close()


def test_an_upload_refused_midway_leaves_the_rest_for_gunicorn_to_drain():
    request, reader, _, sender, sockets = _gunicorn_request(os.urandom(300_000), buffered=b"", declared=300_000)
    sockets[0].settimeout(30)
    try:
        chunks = iter_body(request, chunk_size=64 * 1024)
        first = len(next(chunks))
        chunks.close()  # the view stops reading (e.g. the file passed the upload limit)
        assert reader.length == 300_000 - first
        drained = 0
        while drained < reader.length:  # what gunicorn does before it parses the next request
            drained += len(sockets[0].recv(65536))
        assert drained == 300_000 - first
        sender.join()
    finally:
        for s in sockets:
            s.close()


def test_any_other_server_is_read_through_the_request():
    request = RequestFactory().put("/upload", data=b"abc" * 1000, content_type="application/octet-stream")
    assert _read_all(request) == b"abc" * 1000
