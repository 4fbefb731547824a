"""A tiny HTTP forwarder in front of the real server that injects 429/500 answers or refuses service."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FaultProxy:
    """Forwards to ``target``. ``fail_batches`` answers the next N batch requests with ``status``
    (429 and 503 carry ``Retry-After``; ``error`` replaces the body's error object, ``headers`` are
    added, as a server's quotas answer); ``down`` answers every request with 503; ``rewrite``
    changes response bodies (a hostile or broken server)."""

    def __init__(
        self,
        target: str,
        *,
        status: int = 500,
        fail_batches: int = 0,
        retry_after: float | None = None,
        fail_suffix: str = "/batch",
        rewrite: Callable[[str, bytes], bytes] | None = None,
        error: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.target = urlsplit(target)
        self.status = status
        self.fail_batches = fail_batches
        self.retry_after = retry_after
        self.down = False
        self.fail_suffix = fail_suffix
        self.rewrite = rewrite  # (request path, response body) -> the body the client gets
        self.error = error
        self.headers = dict(headers or {})
        self.log: list[tuple[float, str, int]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    inject = None
                    outage = proxy.down
                    if outage:
                        inject = 503
                    elif proxy.fail_batches > 0 and self.path.split("?")[0].endswith(proxy.fail_suffix):
                        proxy.fail_batches -= 1
                        inject = proxy.status
                if inject is not None:
                    proxy.log.append((time.monotonic(), self.path, inject))
                    error = {"status": inject, "code": "injected", "message": "injected fault"}
                    if proxy.error is not None and not outage:
                        error = {"status": inject, **proxy.error}
                    payload = json.dumps({"error": error}).encode()
                    self.send_response(inject)
                    if inject in (429, 503) and proxy.retry_after is not None:
                        self.send_header("Retry-After", str(proxy.retry_after))
                    if not outage:
                        for key, value in proxy.headers.items():
                            self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                connection = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                if proxy.rewrite is not None:
                    data = proxy.rewrite(self.path, data)
                proxy.log.append((time.monotonic(), self.path, response.status))
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
