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
from runs.uploads import iter_body, read_body_from_socket


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


def _multipart(payload: bytes, boundary: str = "b0undary") -> bytes:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="sha256"\r\n\r\n{hashlib.sha256(payload).hexdigest()}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="model.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return head.encode() + payload + f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.parametrize("size", [5, 3 * 1024 * 1024 + 11])
def test_a_multipart_upload_from_gunicorn_is_parsed_straight_from_the_socket(size):
    # The native upload endpoint's multipart body: Django's parser reads it through read_body_from_socket,
    # whole, hashed on the way, and leaves the next request on the connection to gunicorn.
    payload = os.urandom(size)
    body = _multipart(payload)
    following = b"GET /next HTTP/1.1\r\n\r\n"
    cut = min(700, len(body) // 2)
    request, reader, unreader, sender, sockets = _gunicorn_request(
        body[cut:], buffered=body[:cut], declared=len(body), then=following
    )
    request.method = "POST"
    request.META["CONTENT_TYPE"] = "multipart/form-data; boundary=b0undary"
    request.META["CONTENT_LENGTH"] = str(len(body))
    request.content_type, request.content_params = "multipart/form-data", {"boundary": "b0undary"}
    received = []
    real = unreader.sock
    unreader.sock = type("Sock", (), {"recv_into": lambda self, buf, n: received.append(n) or real.recv_into(buf, n)})()
    try:
        read_body_from_socket(request)
        uploaded = request.FILES["file"]
        sender.join()
        with uploaded:
            assert uploaded.read() == payload and uploaded.size == size
        assert uploaded.sha256 == hashlib.sha256(payload).hexdigest() == request.POST["sha256"]
        unreader.sock = real
        assert reader.length == 0 and unreader.read(len(following)) == following
        assert all(n <= 1024 * 1024 for n in received) and (size < 1024 * 1024 or max(received) == 1024 * 1024)
    finally:
        for s in sockets:
            s.close()


def test_a_multipart_upload_under_any_other_server_is_parsed_as_before():
    payload = b"abc" * 1000
    request = RequestFactory().post(
        "/upload", data=_multipart(payload), content_type="multipart/form-data; boundary=b0undary"
    )
    read_body_from_socket(request)
    with request.FILES["file"] as uploaded:
        assert uploaded.read() == payload
