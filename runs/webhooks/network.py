"""Outgoing webhook requests behind the SSRF guard.

A URL is ``http`` or ``https`` only. Its host is resolved once; every address it resolves to must be
a public one (``ipaddress``' ``is_global``, and not multicast): loopback, private (RFC 1918, fc00::/7),
shared (100.64/10), link-local (169.254/16 with the cloud metadata address, fe80::/10), multicast,
unspecified and reserved ranges are refused, unless inside a network of
RUNSTORE_WEBHOOK_ALLOWED_NETWORKS. The connection then goes to the checked address itself (the
``Host`` header and TLS SNI/certificate check carry the name), so a second DNS answer cannot redirect
it (no rebinding race); redirects are never followed (a 3xx is the answer, recorded as a failure).
"""

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

RESPONSE_EXCERPT = 1024  # bytes of the receiver's answer kept in the delivery log


class UnsafeURL(ValueError):
    """A URL the server refuses to call: its message says why (shown to whoever saves the URL)."""


@dataclass
class Target:
    scheme: str
    host: str  # the name as written (no brackets for IPv6)
    port: int
    path: str  # path and query
    address: Address  # the checked address the connection goes to

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass
class Response:
    status: int | None
    latency_ms: int
    excerpt: str = ""
    error: str = ""


def _allowed_networks():
    return [ipaddress.ip_network(n, strict=False) for n in settings.RUNSTORE_WEBHOOK_ALLOWED_NETWORKS]


def address_allowed(address: Address) -> bool:
    """Whether requests may go to ``address``: a public unicast address, or one the admin allowed."""
    candidates: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)  # ::ffff:127.0.0.1 is 127.0.0.1
    for network in _allowed_networks():
        if any(c.version == network.version and c in network for c in candidates):
            return True
    return all(c.is_global and not c.is_multicast for c in candidates)


def parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL; UnsafeURL naming what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL("only http:// and https:// URLs may be called")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("credentials in the URL are not allowed (use the secret to authenticate deliveries)")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def resolve(url: str) -> Target:
    """Check ``url`` and resolve its host to one allowed address; UnsafeURL when any address it
    resolves to is not allowed (or it resolves to none)."""
    scheme, host, port, path = parse(url)
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise UnsafeURL(f"the host {host!r} does not resolve") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise UnsafeURL(f"the host {host!r} does not resolve")
    refused = [a for a in addresses if not address_allowed(a)]
    if refused:
        raise UnsafeURL(
            f"the host {host!r} is (or resolves to) {refused[0]}, a loopback, private, link-local or reserved "
            "address; an administrator may allow its network in RUNSTORE_WEBHOOK_ALLOWED_NETWORKS"
        )
    return Target(scheme, host, port, path, addresses[0])


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Response:
    """POST ``body`` to ``url`` at its checked address; never raises for network trouble (the
    Response's ``error`` says what happened), raises UnsafeURL before connecting anywhere refused."""
    target = resolve(url)
    ip = str(target.address)
    kwargs: dict = {"timeout": urllib3.Timeout(connect=timeout, read=timeout), "retries": False, "maxsize": 1}
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            ip,
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            **kwargs,
        )
    else:
        pool = urllib3.HTTPConnectionPool(ip, target.port, **kwargs)
    started = time.monotonic()
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": target.host_header},
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            excerpt = response.read(RESPONSE_EXCERPT, decode_content=False) or b""
        finally:
            response.release_conn()
        latency = int((time.monotonic() - started) * 1000)
        return Response(response.status, latency, excerpt.decode("utf-8", "replace"))
    except urllib3.exceptions.TimeoutError:
        return Response(None, int((time.monotonic() - started) * 1000), error=f"timed out after {timeout:g} s")
    except urllib3.exceptions.HTTPError as exc:
        return Response(None, int((time.monotonic() - started) * 1000), error=f"connection failed: {exc}"[:1000])
    finally:
        pool.close()
